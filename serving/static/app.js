// The page's wiring: after each stroke (debounced) the drawing is preprocessed in the browser
// (preprocess.js) and its 784 bytes are POSTed to /v1/predict as application/octet-stream;
// the answer fills the label, the ten bars and the round-trip latency. The feedback buttons
// appear only when the service returns a prediction_id (its feedback API), and send
// {"feedback": [{"prediction_id", "label"}]} to /v1/feedback. Every API call goes through
// auth.js, which adds the tab's API key when there is one and opens the key panel on a 401.

import { KeyPanel, apiFetch, onUnauthorized } from "./auth.js";
import { Monitor } from "./monitor.js";
import { Pad } from "./pad.js";
import { SIZE, alphaOf, toMnist } from "./preprocess.js";

export const DEBOUNCE_MS = 150;
const DASH = "\u2013";
const $ = (id) => document.getElementById(id);

const ui = {
  prediction: $("prediction"),
  detail: $("answer-detail"),
  bars: $("probabilities"),
  preview: $("preview"),
  feedback: $("feedback"),
  feedbackButtons: $("feedback-buttons"),
  feedbackStatus: $("feedback-status"),
};

let generation = 0; // bumped by Clear: answers to an erased drawing are dropped
let timer = null;
let inFlight = null;
let last = null; // the last prediction shown
let drawn = 0; // strokes of the current drawing (0: nothing to ask about)

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

function buildBars() {
  for (let digit = 0; digit < 10; digit++) {
    const meter = element("div", {
      class: "meter", role: "meter", "aria-label": `Digit ${digit}`,
      "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0",
      "data-testid": `probability-${digit}`,
    });
    meter.append(element("span", { class: "fill" }));
    const row = element("li");
    row.append(element("span", { class: "digit", "aria-hidden": "true" }, String(digit)), meter,
      element("span", { class: "percent", "aria-hidden": "true" }, "0%"));
    ui.bars.append(row);
  }
}

function buildFeedbackButtons() {
  for (let digit = 0; digit < 10; digit++) {
    const button = element("button", {
      type: "button", "data-testid": `feedback-${digit}`, "data-label": String(digit),
      "aria-label": `The right answer was ${digit}`, "aria-pressed": "false",
    }, String(digit));
    button.addEventListener("click", () => sendFeedback(digit));
    ui.feedbackButtons.append(button);
  }
}

function showBars(probabilities) {
  ui.bars.querySelectorAll("li").forEach((row, digit) => {
    const p = probabilities === null ? 0 : probabilities[digit];
    const percent = (p * 100).toFixed(p >= 0.995 || p < 0.005 ? 0 : 1);
    row.querySelector(".fill").style.width = `${(p * 100).toFixed(2)}%`;
    const meter = row.querySelector(".meter");
    meter.setAttribute("aria-valuenow", percent);
    meter.setAttribute("aria-valuetext", `${percent}%`);
    row.querySelector(".percent").textContent = `${percent}%`;
    row.classList.toggle("top", probabilities !== null && digit === last?.label);
  });
}

function showPreview(pixels) {
  const context = ui.preview.getContext("2d");
  const image = context.createImageData(SIZE, SIZE);
  for (let i = 0; i < SIZE * SIZE; i++) {
    const v = pixels === null ? 0 : pixels[i];
    image.data.set([v, v, v, 255], 4 * i);
  }
  context.putImageData(image, 0, 0);
}

function hideFeedback() {
  ui.feedback.hidden = true;
  ui.feedbackStatus.textContent = "";
}

function reset() {
  clearTimeout(timer);
  inFlight?.abort();
  generation++;
  last = null;
  drawn = 0;
  ui.prediction.textContent = DASH;
  ui.prediction.classList.remove("stale");
  delete ui.prediction.dataset.strokes;
  ui.detail.textContent = "Draw a digit to ask the model.";
  showBars(null);
  showPreview(null);
  hideFeedback();
}

function showAnswer(body, milliseconds, strokes) {
  const prediction = body.predictions[0];
  last = prediction;
  const confidence = (prediction.confidence * 100).toFixed(1);
  ui.prediction.textContent = String(prediction.label);
  ui.prediction.append(element("span", { class: "visually-hidden" },
    ` is the model's answer, ${confidence}% sure`));
  ui.prediction.dataset.strokes = String(strokes);
  ui.prediction.classList.remove("stale");
  ui.detail.replaceChildren(`${confidence}% sure \u00b7 `,
    element("span", { "data-testid": "latency" }, `${milliseconds.toFixed(1)} ms`),
    ` round trip \u00b7 ${body.model.name} v${body.model.version}`);
  showBars(prediction.probabilities);
  if (typeof prediction.prediction_id === "string") {
    ui.feedbackButtons.querySelectorAll("button").forEach((button) => {
      button.setAttribute("aria-pressed", "false");
      button.disabled = false;
    });
    ui.feedbackStatus.textContent = "";
    ui.feedback.hidden = false;
    monitor.enableQuality();
  } else {
    hideFeedback();
  }
}

function showProblem(text) {
  ui.prediction.classList.remove("stale");
  ui.detail.textContent = text;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    return body?.error?.message ?? response.statusText;
  } catch {
    return response.statusText;
  }
}

async function predict(strokes) {
  const pixels = toMnist(alphaOf(pad.imageData()), pad.canvas.width, pad.canvas.height);
  if (pixels === null) return;
  showPreview(pixels);
  inFlight?.abort();
  const controller = new AbortController();
  inFlight = controller;
  const mine = generation;
  const started = performance.now();
  let response;
  let body = null;
  try {
    response = await apiFetch("/v1/predict", {
      method: "POST",
      headers: { "Content-Type": "application/octet-stream" },
      body: pixels,
      cache: "no-store",
      signal: controller.signal,
    });
    if (response.ok) body = await response.json();
  } catch (error) {
    if (error.name !== "AbortError" && mine === generation) {
      showProblem(`Cannot reach the service: ${error.message}`);
    }
    return;
  }
  const milliseconds = performance.now() - started;
  if (mine !== generation || controller.signal.aborted) return;
  if (!response.ok) {
    showProblem(`The service answered ${response.status}: ${await errorMessage(response)}`);
    return;
  }
  showAnswer(body, milliseconds, strokes);
}

async function sendFeedback(label) {
  const prediction = last;
  if (typeof prediction?.prediction_id !== "string") return;
  const buttons = [...ui.feedbackButtons.querySelectorAll("button")];
  buttons.forEach((button) => { button.disabled = true; });
  ui.feedbackStatus.textContent = "Sending\u2026";
  let text;
  try {
    const response = await apiFetch("/v1/feedback", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ feedback: [{ prediction_id: prediction.prediction_id, label }] }),
      cache: "no-store",
    });
    if (response.ok) {
      buttons[label].setAttribute("aria-pressed", "true");
      text = `Thanks: recorded as ${label}.`;
      monitor.poke();
    } else {
      text = `The service answered ${response.status}: ${await errorMessage(response)}`;
    }
  } catch (error) {
    text = `Cannot reach the service: ${error.message}`;
  }
  if (last === prediction) {
    ui.feedbackStatus.textContent = text;
    buttons.forEach((button) => { button.disabled = false; });
  }
}

buildBars();
buildFeedbackButtons();
const monitor = new Monitor(document.querySelector("[data-testid=monitor]"));
const pad = new Pad($("pad"), {
  onStroke(strokes) {
    drawn = strokes;
    clearTimeout(timer);
    ui.prediction.classList.add("stale");
    timer = setTimeout(() => predict(strokes), DEBOUNCE_MS);
  },
  onClear: reset,
});
$("clear").addEventListener("click", () => pad.clear());
const keys = new KeyPanel($("key-panel"), {
  // A key entered or forgotten: ask again about the drawing on the pad, refresh the monitor.
  onChange() {
    if (drawn > 0) predict(drawn);
    monitor.discover();
    monitor.poke();
  },
});
onUnauthorized(() => keys.ask());
reset();
monitor.start();
