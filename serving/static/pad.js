// The drawing pad: pointer events (mouse, pen and touch alike) draw round strokes on a
// transparent canvas, so the ink is simply the canvas's alpha channel. Strokes are kept in
// coordinates relative to the pad (0..1) and redrawn when its size changes (phone rotation,
// zoom), because resizing a canvas erases it.

/** Brush width as a fraction of the pad's width: about an MNIST pen stroke once scaled. */
export const BRUSH_FRACTION = 0.075;
const INK = "#16181d";

export class Pad {
  /** `onStroke(count)` runs after each finished stroke; `onClear()` after the pad is cleared. */
  constructor(canvas, { onStroke, onClear }) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d", { willReadFrequently: true });
    this.onStroke = onStroke;
    this.onClear = onClear;
    this.strokes = [];
    this.current = null;
    this.pointerId = null;
    canvas.addEventListener("pointerdown", (event) => this.down(event));
    canvas.addEventListener("pointermove", (event) => this.move(event));
    canvas.addEventListener("pointerup", (event) => this.up(event));
    canvas.addEventListener("pointercancel", (event) => this.up(event));
    canvas.addEventListener("keydown", (event) => {
      if (["Delete", "Backspace", "Escape"].includes(event.key)) {
        event.preventDefault();
        this.clear();
      }
    });
    new ResizeObserver(() => this.fit()).observe(canvas);
    this.fit();
  }

  /** Match the backing store to the displayed size (times the device pixel ratio); redraw. */
  fit() {
    const size = Math.max(1, Math.round(this.canvas.clientWidth * (window.devicePixelRatio || 1)));
    if (size === this.canvas.width && size === this.canvas.height) return;
    this.canvas.width = size;
    this.canvas.height = size;
    for (const stroke of this.strokes) this.drawStroke(stroke);
  }

  /** The event's position in the drawing area (inside the border), 0..1 on both axes. */
  point(event) {
    const { canvas } = this;
    const rect = canvas.getBoundingClientRect();
    return [
      (event.clientX - rect.left - canvas.clientLeft) / canvas.clientWidth,
      (event.clientY - rect.top - canvas.clientTop) / canvas.clientHeight,
    ];
  }

  segment(from, to) {
    const { context: c, canvas } = this;
    c.lineWidth = BRUSH_FRACTION * canvas.width;
    c.lineCap = "round";
    c.lineJoin = "round";
    c.strokeStyle = INK;
    c.beginPath();
    c.moveTo(from[0] * canvas.width, from[1] * canvas.height);
    c.lineTo(to[0] * canvas.width, to[1] * canvas.height);
    c.stroke();
  }

  drawStroke(points) {
    this.segment(points[0], points[0]); // a dot for a tap
    for (let i = 1; i < points.length; i++) this.segment(points[i - 1], points[i]);
  }

  down(event) {
    if (this.pointerId !== null || event.button > 0) return;
    event.preventDefault();
    this.canvas.setPointerCapture(event.pointerId);
    this.pointerId = event.pointerId;
    this.current = [this.point(event)];
    this.segment(this.current[0], this.current[0]);
  }

  move(event) {
    if (event.pointerId !== this.pointerId) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const e of events.length > 0 ? events : [event]) {
      const next = this.point(e);
      this.segment(this.current[this.current.length - 1], next);
      this.current.push(next);
    }
  }

  up(event) {
    if (event.pointerId !== this.pointerId) return;
    this.pointerId = null;
    this.strokes.push(this.current);
    this.current = null;
    this.canvas.dataset.strokes = String(this.strokes.length);
    this.onStroke(this.strokes.length);
  }

  clear() {
    this.strokes = [];
    this.current = null;
    this.pointerId = null;
    this.context.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.canvas.dataset.strokes = "0";
    this.onClear();
  }

  /** The ink as an ImageData (alpha channel = ink). */
  imageData() {
    return this.context.getImageData(0, 0, this.canvas.width, this.canvas.height);
  }
}
