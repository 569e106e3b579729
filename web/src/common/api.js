// api.js - the pages' only way to the server: same-origin fetch, JSON in and out, and
// Server-Sent Events read with fetch() so that `Authorization: Bearer` can be sent (the
// browser's EventSource cannot send headers, and a token never goes in a URL).

/** {status, body, headers}; body is the parsed JSON or null. Network errors throw. */
export async function api(path, { method = 'GET', token = null, body = undefined, headers = {}, signal } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method, headers: h, signal, cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let json = null;
  if ((response.headers.get('Content-Type') || '').startsWith('application/json')) {
    try { json = await response.json(); } catch { json = null; }
  }
  return { status: response.status, body: json, headers: response.headers };
}

/**
 * Reads an SSE stream at path; calls onData(parsed JSON) for each `data:` message. Resolves
 * with 'ended' when the server ends the stream, or {status} when the answer was not a stream
 * (404: no such route on this server; 401/403). Rejects on a network error or abort.
 */
export async function readStream(path, { token = null, signal, onData, onOpen }) {
  const headers = { Accept: 'text/event-stream' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { headers, signal, cache: 'no-store' });
  const type = response.headers.get('Content-Type') || '';
  if (!response.ok || !type.startsWith('text/event-stream') || !response.body) {
    try { await response.body?.cancel(); } catch { /* nothing to release */ }
    return { status: response.status };
  }
  if (onOpen) onOpen();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return 'ended';
    buffer += value;
    let newline;
    while ((newline = buffer.search(/\r\n|\n|\r/)) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1));
      if (line === '') {
        if (data.length > 0) {
          let parsed = null;
          try { parsed = JSON.parse(data.join('\n')); } catch { parsed = null; }
          data = [];
          if (parsed !== null) onData(parsed);
        }
      } else if (line.startsWith('data:')) {
        data.push(line.slice(line[5] === ' ' ? 6 : 5));
      } // comments (": keep-alive"), event:, id: and retry: lines are not used
    }
    if (buffer.length > 1 << 20) throw new Error('SSE line longer than 1 MiB');
  }
}

export const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
});

/**
 * The server's configuration: GET /v1/config, or, on a server without it, what can be probed
 * (demo: /v1/demo/token exists; challenge: /v1/challenge answers).
 */
export async function loadConfig() {
  try {
    const answer = await api('/v1/config');
    if (answer.status === 200 && answer.body) return answer.body;
  } catch { /* probed below */ }
  const [demo, challenge] = await Promise.all([
    api('/v1/demo/token', { method: 'POST', body: { customer: 'probe', role: 'buyer' } }).then((a) => a.status === 200, () => false),
    api('/v1/challenge').then((a) => a.status === 200, () => false),
  ]);
  return { demo, challenge, payment_url: null, version: null };
}

/**
 * Follows a live JSON view: the SSE stream at streamPath when the server has it, else polls
 * pollPath every pollMs. onData gets every new view. Reconnects after a drop (1 s, doubling
 * to 15 s). Returns a stop function.
 */
export function follow({ streamPath, pollPath, pollMs = 2000, token = null, onData, onState }) {
  const controller = new AbortController();
  const { signal } = controller;
  (async () => {
    let backoff = 1000;
    let hasStream = Boolean(streamPath);
    while (!signal.aborted) {
      try {
        if (hasStream) {
          const outcome = await readStream(streamPath, {
            token, signal, onData, onOpen: () => { backoff = 1000; onState?.('live'); },
          });
          if (outcome !== 'ended' && (outcome.status === 404 || outcome.status === 405)) {
            hasStream = false; // an older server: poll instead
            continue;
          }
          if (outcome !== 'ended' && outcome.status >= 400 && outcome.status < 500) {
            onState?.('refused', outcome.status);
            return;
          }
        } else {
          const answer = await api(pollPath, { token, signal });
          if (answer.status === 200) { onData(answer.body); onState?.('polling'); backoff = 1000; }
          else if (answer.status >= 400 && answer.status < 500) { onState?.('refused', answer.status); return; }
          await sleep(pollMs, signal);
          continue;
        }
      } catch {
        if (signal.aborted) return;
      }
      onState?.('reconnecting');
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 15000);
    }
  })();
  return () => controller.abort();
}
