// HDR-style latency histogram: log-linear buckets with 2 significant decimal digits
// (256 linear sub-buckets per power of two, so every bucket is within 1/128 of its
// value), from 1 µs to 60 s. Values are recorded in microseconds.

const SUB_BITS = 8; // 256 sub-buckets: 2 significant digits (HdrHistogram's choice)
const SUB = 1 << SUB_BITS;
const HALF = SUB >> 1;
const MAX_US = 60_000_000;
const BUCKETS = SUB + (31 - Math.clz32(MAX_US) - SUB_BITS + 2) * HALF;

function indexOf(us) {
  if (us < SUB) return us;
  const shift = 31 - Math.clz32(us) - (SUB_BITS - 1); // us >> shift lies in [HALF, SUB)
  return SUB + (shift - 1) * HALF + ((us >> shift) - HALF);
}

function valueAt(index) {
  if (index < SUB) return index;
  const shift = Math.floor((index - SUB) / HALF) + 1;
  const sub = ((index - SUB) % HALF) + HALF;
  return ((sub + 1) << shift) - 1; // the bucket's highest value: percentiles never flatter
}

export class Histogram {
  constructor() {
    this.counts = new Float64Array(BUCKETS);
    this.total = 0;
    this.maxUs = 0;
    this.sumUs = 0;
  }

  /** Record a latency given in milliseconds (clamped to [1 µs, 60 s]). */
  recordMs(ms) {
    let us = Math.round(ms * 1000);
    if (!(us >= 1)) us = 1; // also NaN
    if (us > MAX_US) us = MAX_US;
    this.counts[indexOf(us)] += 1;
    this.total += 1;
    this.sumUs += us;
    if (us > this.maxUs) this.maxUs = us;
  }

  /** The value (ms) at or below which `q` of the recorded values lie. */
  quantileMs(q) {
    if (this.total === 0) return null;
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(valueAt(i), this.maxUs) / 1000;
    }
    return this.maxUs / 1000;
  }

  summary() {
    return {
      count: this.total,
      p50_ms: this.quantileMs(0.5),
      p99_ms: this.quantileMs(0.99),
      p999_ms: this.quantileMs(0.999),
      max_ms: this.total ? this.maxUs / 1000 : null,
      mean_ms: this.total ? this.sumUs / this.total / 1000 : null,
    };
  }
}
