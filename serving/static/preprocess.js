// Drawing -> the 28x28 image the model was trained on, made the way the MNIST digits were:
// crop the ink's bounding box, scale it to fit 20x20 keeping its aspect ratio (area averaging
// gives the grey levels), then move its centre of mass to the centre of a 28x28 frame.
// White ink (255) on black (0), row-major: exactly the 784 bytes /v1/predict accepts.
//
// Pure functions on plain arrays, so tests can run them on synthetic input (see
// tests/serving/static/test_preprocess.py, which also checks them against a NumPy version).

export const SIZE = 28;
export const BOX = 20;
/** Alpha above this counts as ink when finding the bounding box (ignores faint specks). */
export const INK_THRESHOLD = 16;

/** The smallest box holding every ink pixel, or null for an empty drawing. */
export function boundingBox(ink, width, height, threshold = INK_THRESHOLD) {
  let left = width, right = -1, top = height, bottom = -1;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (let x = 0; x < width; x++) {
      if (ink[row + x] > threshold) {
        if (x < left) left = x;
        if (x > right) right = x;
        if (y < top) top = y;
        if (y > bottom) bottom = y;
      }
    }
  }
  if (right < 0) return null;
  return { left, top, width: right - left + 1, height: bottom - top + 1 };
}

/**
 * Weights of an area-averaging resize along one axis: target cell i covers source interval
 * [i * n / m, (i + 1) * n / m); each source cell contributes its overlap, divided by the length.
 */
export function areaWeights(n, m) {
  const step = n / m;
  const cells = [];
  for (let i = 0; i < m; i++) {
    const start = i * step, end = (i + 1) * step;
    const weights = [];
    for (let k = Math.floor(start); k < Math.min(n, Math.ceil(end)); k++) {
      const overlap = Math.min(end, k + 1) - Math.max(start, k);
      if (overlap > 0) weights.push([k, overlap / step]);
    }
    cells.push(weights);
  }
  return cells;
}

/** Area-average resize of a box of `ink` (values 0..255) to outWidth x outHeight floats in [0, 1]. */
export function resizeArea(ink, width, box, outWidth, outHeight) {
  const wx = areaWeights(box.width, outWidth);
  const wy = areaWeights(box.height, outHeight);
  // Rows first: box.height x outWidth, then columns.
  const rows = new Float64Array(box.height * outWidth);
  for (let y = 0; y < box.height; y++) {
    const src = (box.top + y) * width + box.left;
    for (let i = 0; i < outWidth; i++) {
      let sum = 0;
      for (const [k, w] of wx[i]) sum += ink[src + k] * w;
      rows[y * outWidth + i] = sum;
    }
  }
  const out = new Float64Array(outWidth * outHeight);
  for (let j = 0; j < outHeight; j++) {
    for (let i = 0; i < outWidth; i++) {
      let sum = 0;
      for (const [k, w] of wy[j]) sum += rows[k * outWidth + i] * w;
      out[j * outWidth + i] = sum / 255;
    }
  }
  return out;
}

/**
 * Centre of mass of a width x height float image, in pixel indices: MNIST puts it on the
 * centre of pixel (14, 14) (measured on its test set), not between pixels 13 and 14.
 */
export function centreOfMass(image, width, height) {
  let total = 0, sx = 0, sy = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = image[y * width + x];
      total += v;
      sx += v * x;
      sy += v * y;
    }
  }
  return total > 0 ? { x: sx / total, y: sy / total } : { x: (width - 1) / 2, y: (height - 1) / 2 };
}

/**
 * `ink`: intensities 0..255 (e.g. the canvas alpha channel), row-major width x height.
 * Returns 784 bytes (Uint8Array), or null when nothing is drawn.
 */
export function toMnist(ink, width, height) {
  const box = boundingBox(ink, width, height);
  if (box === null) return null;
  const scale = BOX / Math.max(box.width, box.height);
  const w = Math.max(1, Math.round(box.width * scale));
  const h = Math.max(1, Math.round(box.height * scale));
  const small = resizeArea(ink, width, box, w, h);
  const com = centreOfMass(small, w, h);
  const dx = Math.round(SIZE / 2 - com.x);
  const dy = Math.round(SIZE / 2 - com.y);
  const pixels = new Uint8Array(SIZE * SIZE);
  for (let y = 0; y < h; y++) {
    const ty = y + dy;
    if (ty < 0 || ty >= SIZE) continue;
    for (let x = 0; x < w; x++) {
      const tx = x + dx;
      if (tx < 0 || tx >= SIZE) continue;
      pixels[ty * SIZE + tx] = Math.round(Math.min(1, small[y * w + x]) * 255);
    }
  }
  return pixels;
}

/** The alpha channel of an RGBA ImageData: strokes are drawn on a transparent canvas. */
export function alphaOf(imageData) {
  const { data, width, height } = imageData;
  const alpha = new Uint8ClampedArray(width * height);
  for (let i = 0; i < alpha.length; i++) alpha[i] = data[4 * i + 3];
  return alpha;
}
