// The live monitor panel: every POLL_MS it scrapes GET /metrics, keeps the scrapes of the last
// WINDOW_MS and shows the differences (metrics.js). The model comes from GET /v1/models; live
// accuracy from GET /v1/quality, asked only once the service is known to have it (its OpenAPI
// document lists it, or a prediction carried a prediction_id), so the page never causes 404s.
// Calls go through auth.js (the tab's API key, if any).

import { apiFetch } from "./auth.js";
import { parsePrometheus, summarise } from "./metrics.js";

export const POLL_MS = 2000;
export const WINDOW_MS = 10000;
const PSI_WARN = 0.1;
const PSI_ALERT = 0.25;
/** Below this many images, sampling noise alone (PSI ~ 9/n over 10 bins) reaches PSI_WARN. */
const MIN_DRIFT_IMAGES = 100;
const QUALITY_PATH = "/v1/quality";
const DASH = "\u2013";

async function getJson(path) {
  const response = await apiFetch(path, { cache: "no-store" });
  return { status: response.status, body: response.ok ? await response.json() : null };
}

function number(value, digits) {
  return value === null || !Number.isFinite(value) ? DASH : value.toFixed(digits);
}

function milliseconds(seconds) {
  if (seconds === null || !Number.isFinite(seconds)) return DASH;
  const ms = seconds * 1000;
  return `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
}

export class Monitor {
  constructor(root) {
    this.root = root;
    this.field = (name) => root.querySelector(`#m-${name}`);
    this.status = root.querySelector("#monitor-status");
    this.snapshots = [];
    this.model = null; // the /v1/models entry once read
    this.quality = false; // whether to ask /v1/quality
    this.metrics = true; // false once /metrics answered 404 (SERVING_METRICS_ENABLED=false)
    this.timer = null;
    this.busy = false; // a refresh is running
    this.again = false; // poked while busy
  }

  start() {
    this.discover();
    this.tick();
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) return;
      this.snapshots = []; // rates over the hidden time would mean nothing
      this.poke();
    });
  }

  /** Refresh now (e.g. right after a feedback click) instead of waiting for the next tick. */
  poke() {
    clearTimeout(this.timer);
    this.tick();
  }

  enableQuality() {
    this.quality = true;
  }

  async discover() {
    try {
      const { body } = await getJson("/schema/openapi.json");
      if (body?.paths && QUALITY_PATH in body.paths) this.enableQuality();
    } catch {
      // No OpenAPI document: accuracy appears once a prediction carries a prediction_id.
    }
  }

  /** One refresh, then the next is scheduled; a poke during a refresh runs one more after it. */
  async tick() {
    clearTimeout(this.timer);
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    try {
      await this.refresh();
    } catch (error) {
      this.status.textContent = `Cannot reach the service (${error.message}).`;
    } finally {
      this.busy = false;
    }
    if (this.again) {
      this.again = false;
      this.tick();
    } else if (!document.hidden) {
      this.timer = setTimeout(() => this.tick(), POLL_MS);
    }
  }

  async refresh() {
    if (this.model === null) {
      const { body } = await getJson("/v1/models");
      if (body?.models?.length) this.model = body.models[0];
    }
    const response = this.metrics ? await apiFetch("/metrics", { cache: "no-store" }) : null;
    const now = performance.now();
    if (response === null || !response.ok) {
      if (response?.status === 404) this.metrics = false; // switched off: stop asking
      this.status.textContent = this.metrics
        ? `No metrics: /metrics answered ${response.status}.`
        : "This service does not publish metrics (/metrics is off).";
      this.showModel(null);
    } else {
      const samples = parsePrometheus(await response.text());
      this.snapshots.push({ time: now, samples });
      while (this.snapshots.length > 1 && this.snapshots[1].time <= now - WINDOW_MS) {
        this.snapshots.shift();
      }
      const oldest = this.snapshots[0];
      const older = oldest.time < now ? oldest : null;
      const seconds = older === null ? 0 : (now - older.time) / 1000;
      this.show(summarise(samples, older?.samples ?? null, seconds), seconds);
      this.showRollout(samples);
    }
    if (this.quality) await this.refreshQuality();
  }

  show(summary, seconds) {
    this.showModel(summary.model);
    this.field("rps").textContent = number(summary.requestsPerSecond, 2);
    this.field("p50").textContent = milliseconds(summary.p50Seconds);
    this.field("p95").textContent = milliseconds(summary.p95Seconds);
    this.field("batch").textContent = number(summary.meanBatchSize, 2);
    const drift = this.field("drift");
    const psi = summary.driftPsi;
    drift.className = "";
    if (psi === null) {
      drift.textContent = DASH;
    } else {
      const images = summary.driftImages ?? 0;
      const level = images < MIN_DRIFT_IMAGES ? "few"
        : psi > PSI_ALERT ? "shifted" : psi > PSI_WARN ? "moderate" : "stable";
      drift.textContent = level === "few" ? psi.toFixed(2) : `${psi.toFixed(2)} ${level}`;
      drift.classList.add(`drift-${level}`);
      const note = document.createElement("small");
      note.textContent = level === "few"
        ? `only ${images} images: too few to judge`
        : `over the last ${images} images`;
      drift.append(" ", note);
    }
    const time = new Date().toLocaleTimeString();
    this.status.textContent = seconds > 0
      ? `Updated ${time}; over the last ${seconds.toFixed(0)} s.`
      : `Updated ${time}; rates from the next update.`;
  }

  /** One line while a model rollout runs (docs/rollout.md), from the scrape's rollout gauges:
   * the candidate against stable, the rows compared and their agreement. Hidden otherwise. */
  showRollout(samples) {
    const row = this.root.querySelector("#m-rollout-row");
    const value = (name) => samples.find((sample) => sample.name === name)?.value;
    if (value("inference_rollout_running") !== 1) {
      row.hidden = true;
      return;
    }
    const versions = {};
    for (const sample of samples) {
      if (sample.name === "inference_rollout_rows") versions[sample.labels.role] = sample;
    }
    const { stable, candidate } = versions;
    if (stable === undefined || candidate === undefined) {
      row.hidden = true;
      return;
    }
    const share = value("inference_rollout_canary_share");
    const mode = share > 0 ? `canary ${(share * 100).toFixed(0)}%` : "shadow";
    const agreement = value("inference_rollout_agreement");
    const agreed = Number.isFinite(agreement) ? `, ${(agreement * 100).toFixed(1)}% agree` : "";
    this.field("rollout").textContent = `v${candidate.labels.version} (${mode}) against ` +
      `v${stable.labels.version}: ${candidate.value} rows${agreed}`;
    row.hidden = false;
  }

  showModel(fromMetrics) {
    const model = this.model ?? fromMetrics;
    if (model === null) return;
    this.field("model").textContent = `${model.name} v${model.version} (${model.variant})`;
    const accuracy = this.model?.test_accuracy?.[model.variant === "int8" ? "onnx_int8" : "onnx"];
    if (Number.isFinite(accuracy)) {
      this.field("test-accuracy").textContent = `${(accuracy * 100).toFixed(1)}%`;
    }
  }

  async refreshQuality() {
    const row = this.root.querySelector("#m-accuracy-row");
    const { status, body } = await getJson(QUALITY_PATH);
    if (status !== 200 || body === null) {
      this.quality = false;
      row.hidden = true;
      return;
    }
    const labelled = Number(body.labelled ?? 0);
    this.field("accuracy").textContent = labelled > 0 && Number.isFinite(body.accuracy)
      ? `${(body.accuracy * 100).toFixed(1)}% of ${labelled} labelled`
      : "no labelled predictions yet";
    row.hidden = false;
  }
}
