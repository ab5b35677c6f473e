/** Summary statistics for repeated timing samples. */

export interface Summary {
  /** Number of samples. */
  n: number;
  median: number;
  min: number;
  max: number;
  mean: number;
  /** Interquartile range relative to the median, in percent. */
  iqrPct: number;
  /** (max - min) / median, in percent. */
  rangePct: number;
}

function quantile(sorted: number[], q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) throw new RangeError("no samples");
  const s = [...samples].sort((a, b) => a - b);
  const median = quantile(s, 0.5);
  return {
    n: s.length,
    median,
    min: s[0],
    max: s[s.length - 1],
    mean: s.reduce((a, b) => a + b, 0) / s.length,
    iqrPct: ((quantile(s, 0.75) - quantile(s, 0.25)) / median) * 100,
    rangePct: ((s[s.length - 1] - s[0]) / median) * 100,
  };
}

/** "12.3 M/s" style formatting of a rate. */
export function fmtRate(perSecond: number): string {
  if (perSecond >= 1e9) return `${(perSecond / 1e9).toFixed(2)} G/s`;
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(2)} M/s`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(2)} k/s`;
  return `${perSecond.toFixed(1)} /s`;
}
