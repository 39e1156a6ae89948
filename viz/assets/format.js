// Numbers as people read them. The API sends integer microseconds relative to the
// trace's start; these turn them into "830 µs", "1.24 ms", "2.50 s".

export function duration(us) {
  if (us < 1000) return `${us} µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(us < 10_000 ? 2 : 1)} ms`;
  return `${(us / 1_000_000).toFixed(2)} s`;
}

/** A difference, signed: "+300 µs", "−1.20 ms", "±0". */
export function diff(us) {
  if (us === 0) return '±0';
  return (us > 0 ? '+' : '−') + duration(Math.abs(us));
}

/** A moment after the trace's start: "+1.24 ms". */
export function offset(us) {
  return `+${duration(us)}`;
}

/** A wall-clock time from Unix milliseconds, in the reader's own time zone. */
export function when(unixMs) {
  return new Date(unixMs).toLocaleString();
}
