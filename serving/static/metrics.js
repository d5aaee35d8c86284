// The live monitor's numbers, computed in the page from two scrapes of GET /metrics (the
// Prometheus text format), so the service needs no extra endpoint: rates are differences of
// counters over the time between the scrapes, quantiles are estimated from histogram buckets
// the way Prometheus's histogram_quantile() does. Metric names: serving/observability/.

export const PREDICT_ROUTE = "/v1/predict";
export const NAMES = {
  requests: "inference_http_requests_total",
  latency: "inference_http_request_duration_seconds",
  batchRows: "inference_batch_size_rows",
  driftPsi: "inference_drift_psi_max",
  driftImages: "inference_drift_window_images",
  model: "inference_model_info",
};

function parseValue(text) {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  if (text === undefined || text === "") return NaN;
  return Number(text);
}

/** One sample line -> {name, labels, value}, or null for a line that is not a sample. */
export function parseSample(line) {
  const head = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (head === null) return null;
  const labels = {};
  let i = head[0].length;
  const skipSpaces = () => { while (line[i] === " " || line[i] === "\t") i++; };
  if (line[i] === "{") {
    i++;
    for (;;) {
      skipSpaces();
      if (line[i] === "}") { i++; break; }
      const key = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i));
      if (key === null) return null;
      i += key[0].length;
      skipSpaces();
      if (line[i] !== "=") return null;
      i++;
      skipSpaces();
      if (line[i] !== '"') return null;
      i++;
      let value = "";
      while (i < line.length && line[i] !== '"') {
        if (line[i] === "\\") {
          const escaped = line[i + 1];
          value += escaped === "n" ? "\n" : escaped;
          i += 2;
        } else {
          value += line[i++];
        }
      }
      if (line[i] !== '"') return null;
      i++;
      labels[key[0]] = value;
      skipSpaces();
      if (line[i] === ",") i++;
    }
  }
  const fields = line.slice(i).trim().split(/\s+/);
  return { name: head[0], labels, value: parseValue(fields[0]) };
}

/** The text exposition -> a list of samples (comments and blank lines skipped). */
export function parsePrometheus(text) {
  const samples = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const sample = parseSample(line);
    if (sample !== null) samples.push(sample);
  }
  return samples;
}

function matches(sample, name, labels) {
  if (sample.name !== name) return false;
  for (const [key, value] of Object.entries(labels)) {
    if (sample.labels[key] !== value) return false;
  }
  return true;
}

/** Sum of the samples called `name` whose labels include `labels`; null if there is none. */
export function total(samples, name, labels = {}) {
  let sum = null;
  for (const sample of samples) {
    if (matches(sample, name, labels)) sum = (sum ?? 0) + sample.value;
  }
  return sum;
}

/** A histogram summed over its other labels: {buckets: [[le, cumulative count]], count, sum}. */
export function histogram(samples, name, labels = {}) {
  const byBound = new Map();
  for (const sample of samples) {
    if (!matches(sample, `${name}_bucket`, labels)) continue;
    const le = parseValue(sample.labels.le);
    byBound.set(le, (byBound.get(le) ?? 0) + sample.value);
  }
  const buckets = [...byBound.entries()].sort((a, b) => a[0] - b[0]);
  return {
    buckets,
    count: total(samples, `${name}_count`, labels) ?? 0,
    sum: total(samples, `${name}_sum`, labels) ?? 0,
  };
}

/** newer - older for a counter; a counter that went down was reset (restart): newer itself. */
export function increase(newer, older) {
  if (newer === null) return null;
  if (older === null || newer < older) return newer;
  return newer - older;
}

/** Bucket-wise increase of a histogram between two scrapes (reset: the newer one). */
export function histogramIncrease(newer, older) {
  if (older === null) return newer;
  const before = new Map(older.buckets);
  const reset = newer.count < older.count
    || newer.buckets.some(([le, count]) => count < (before.get(le) ?? 0));
  if (reset) return newer;
  return {
    buckets: newer.buckets.map(([le, count]) => [le, count - (before.get(le) ?? 0)]),
    count: newer.count - older.count,
    sum: newer.sum - older.sum,
  };
}

/**
 * Prometheus's histogram_quantile(): find the bucket holding rank q * total and interpolate
 * linearly inside it; a rank in the +Inf bucket answers the largest finite bound.
 * `buckets`: [[upper bound, cumulative count]] sorted, ending with +Inf. NaN when empty.
 */
export function histogramQuantile(q, buckets) {
  if (buckets.length < 2 || buckets[buckets.length - 1][0] !== Infinity) return NaN;
  const count = buckets[buckets.length - 1][1];
  if (!(count > 0)) return NaN;
  const rank = q * count;
  let b = buckets.findIndex(([, cumulative]) => cumulative >= rank);
  if (b === buckets.length - 1) return buckets[buckets.length - 2][0];
  if (b === 0 && buckets[0][0] <= 0) return buckets[0][0];
  if (b < 0) b = buckets.length - 1;
  const start = b === 0 ? 0 : buckets[b - 1][0];
  const below = b === 0 ? 0 : buckets[b - 1][1];
  const inBucket = buckets[b][1] - below;
  return start + (buckets[b][0] - start) * ((rank - below) / inBucket);
}

/** The numbers the monitor shows, from two parsed scrapes `seconds` apart (`older` may be null). */
export function summarise(newer, older, seconds) {
  const route = { route: PREDICT_ROUTE };
  const requests = older === null ? null
    : increase(total(newer, NAMES.requests, route), total(older, NAMES.requests, route));
  const latency = older === null ? null
    : histogramIncrease(histogram(newer, NAMES.latency, route),
      histogram(older, NAMES.latency, route));
  const rows = older === null ? null
    : histogramIncrease(histogram(newer, NAMES.batchRows), histogram(older, NAMES.batchRows));
  const model = newer.find((sample) => sample.name === NAMES.model && sample.value > 0);
  const busy = latency !== null && latency.count > 0;
  return {
    requestsPerSecond: requests === null || !(seconds > 0) ? null : requests / seconds,
    p50Seconds: busy ? histogramQuantile(0.5, latency.buckets) : null,
    p95Seconds: busy ? histogramQuantile(0.95, latency.buckets) : null,
    meanBatchSize: rows !== null && rows.count > 0 ? rows.sum / rows.count : null,
    driftPsi: total(newer, NAMES.driftPsi),
    driftImages: total(newer, NAMES.driftImages),
    model: model === undefined ? null : { ...model.labels },
  };
}
