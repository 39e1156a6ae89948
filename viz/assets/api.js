// The JSON API, one function per call (see viz/src/api.rs for the server's side).
// Every failure becomes an Error whose message is the server's reason.

async function call(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

/** filter: {service, root, min_duration_us, max_duration_us, since_unix_ms, limit} */
export function listTraces(filter = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(filter)) {
    if (value !== undefined && value !== null && value !== '') query.set(key, value);
  }
  return call(`/api/traces?${query}`);
}

export const services = () => call('/api/services');
export const getTrace = (id) => call(`/api/traces/${encodeURIComponent(id)}`);
export const compareTraces = (a, b) =>
  call(`/api/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
export const exportUrl = (id) => `/api/traces/${encodeURIComponent(id)}/otlp`;

/** Imports an OTLP/JSON export (the text of a file); resolves to {trace_ids}. */
export function importOtlp(text) {
  return call('/api/traces', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: text,
  });
}
