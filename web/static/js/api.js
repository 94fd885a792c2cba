// The client side of the BFF contract, in one place: sign-in, GraphQL queries
// and mutations with idempotency keys and retries, and the live event stream.
// The real web and mobile apps follow the same rules.

/** Retry policy: exponential backoff with full jitter. */
export const RETRY = { baseMs: 250, capMs: 5000, maxTries: 5 };

/** HTTP statuses worth retrying with the same request (and the same key). */
const RETRYABLE_STATUS = new Set([409, 429, 503]);

/** Event names sent by GET /events (streaming.md). */
export const EVENT_NAMES = [
  'order.placed', 'payment.requested', 'payment.succeeded', 'payment.failed',
  'order.address_updated', 'order.shipped', 'order.delivered', 'order.cancelled',
];

/** An error as the BFF reports it: code, message, requestId, retryable. */
export class ApiError extends Error {
  constructor(message, { code = 'INTERNAL', requestId = '', retryable = false, retryAfterSeconds,
    status = 0, extensions = {} } = {}) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.requestId = requestId;
    this.retryable = retryable;
    this.retryAfterSeconds = retryAfterSeconds;
    this.status = status;
    this.extensions = extensions;
  }
}

/** Full jitter: a random delay in [0, min(cap, base * 2^attempt)). attempt counts from 0. */
export function backoffDelay(attempt, policy = RETRY, random = Math.random) {
  return Math.floor(random() * Math.min(policy.capMs, policy.baseMs * 2 ** attempt));
}

/** The wait before retrying after err: the jittered backoff, but never less than the server's Retry-After. */
export function retryDelay(err, attempt, policy = RETRY, random = Math.random) {
  const backoff = backoffDelay(attempt, policy, random);
  const hintMs = Number.isFinite(err.retryAfterSeconds) ? err.retryAfterSeconds * 1000 : 0;
  return Math.max(backoff, hintMs);
}

/** Whether repeating the same request can succeed. */
export function isRetryable(err) {
  return err.retryable === true || RETRYABLE_STATUS.has(err.status);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function retryAfterHeader(res) {
  const v = res.headers.get('Retry-After');
  if (v == null) return undefined;
  const secs = Number(v);
  if (Number.isFinite(secs)) return secs;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - Date.now()) / 1000);
}

/** Turns one HTTP response into data or an ApiError. */
async function readResponse(res) {
  const requestId = res.headers.get('X-Request-ID') || '';
  const retryAfterSeconds = retryAfterHeader(res);
  let body = null;
  try { body = await res.json(); } catch { /* not JSON: judged by status below */ }
  const first = body && Array.isArray(body.errors) && body.errors[0];
  if (first) {
    const ext = first.extensions || {};
    throw new ApiError(first.message || 'request failed', {
      code: ext.code || 'INTERNAL',
      requestId: ext.requestId || requestId,
      retryable: body.errors.some((e) => e.extensions && e.extensions.retryable === true),
      retryAfterSeconds: ext.retryAfterSeconds ?? retryAfterSeconds,
      status: res.status,
      extensions: ext,
    });
  }
  if (!res.ok) {
    throw new ApiError(`HTTP ${res.status} ${res.statusText || ''}`.trim(), {
      code: res.status === 401 ? 'UNAUTHENTICATED' : `HTTP_${res.status}`,
      requestId, retryAfterSeconds, status: res.status,
    });
  }
  return body;
}

/**
 * Sends one request, repeating it on retryable failures (same body, same
 * headers, so a mutation reuses its Idempotency-Key).
 * opts: fetch, sleep, random, policy, onRetry(err, attempt, delayMs).
 */
export async function request(url, init, opts = {}) {
  const doFetch = opts.fetch || globalThis.fetch.bind(globalThis);
  const wait = opts.sleep || sleep;
  const policy = opts.policy || RETRY;
  for (let attempt = 0; ; attempt++) {
    let err;
    try {
      const res = await doFetch(url, init);
      return await readResponse(res);
    } catch (e) {
      err = e instanceof ApiError ? e
        : new ApiError(`network error: ${e.message}`, { code: 'NETWORK', retryable: true });
    }
    if (!isRetryable(err) || attempt + 1 >= policy.maxTries) throw err;
    const delay = retryDelay(err, attempt, policy, opts.random);
    if (opts.onRetry) opts.onRetry(err, attempt + 1, delay);
    await wait(delay);
  }
}

const HEADERS = {
  'Content-Type': 'application/json',
  Accept: 'application/json',
  'X-Requested-With': 'bff-web',
  // The persisted-operation manifest of this app (internal/persisted/manifests/web/1.json,
  // `make manifest`): in production only its documents run.
  'apollographql-client-name': 'web',
  'apollographql-client-version': '1',
};

/** Runs a GraphQL query and returns its data (throws ApiError on any error). */
export async function query(document, variables = {}, opts = {}) {
  const body = await request('/graphql', {
    method: 'POST', credentials: 'same-origin', headers: HEADERS,
    body: JSON.stringify({ query: document, variables }),
  }, opts);
  return body.data;
}

// Keys of mutations whose outcome is unknown (retries exhausted on a retryable
// failure), by request fingerprint: the user's next identical attempt is a
// retry of the same request and reuses the key, so it cannot act twice.
const unsettledKeys = new Map();

/**
 * Runs a GraphQL mutation with a fresh Idempotency-Key, reused on every retry
 * of this call (and on a repeat of an identical call whose outcome stayed
 * unknown), so the server performs the mutation at most once.
 */
export async function mutate(document, variables = {}, opts = {}) {
  const fingerprint = JSON.stringify([document, variables]);
  const key = opts.idempotencyKey || unsettledKeys.get(fingerprint) || globalThis.crypto.randomUUID();
  unsettledKeys.set(fingerprint, key);
  try {
    const body = await request('/graphql', {
      method: 'POST', credentials: 'same-origin',
      headers: { ...HEADERS, 'Idempotency-Key': key },
      body: JSON.stringify({ query: document, variables }),
    }, opts);
    unsettledKeys.delete(fingerprint);
    return body.data;
  } catch (err) {
    if (!isRetryable(err)) unsettledKeys.delete(fingerprint);
    throw err;
  }
}

/** Signs in as a demo user; the server sets the HttpOnly session cookie. */
export async function signIn(email, opts = {}) {
  const body = await request('/session', {
    method: 'POST', credentials: 'same-origin', headers: HEADERS, body: JSON.stringify({ email }),
  }, opts);
  return body.user;
}

/** Signs out (clears the session cookie). */
export async function signOut(opts = {}) {
  await request('/session', { method: 'DELETE', credentials: 'same-origin', headers: HEADERS }, opts);
}

/**
 * Follows GET /events?stream=… from lastEventId (when given). Calls
 * onEvent(name, data, id) for each order event, onReset(reason) on "reset",
 * onState('live' | 'reconnecting' | 'closed', {reopened}) on connection
 * changes. EventSource reconnects by itself with Last-Event-ID; 'closed'
 * means it gave up (e.g. 401/404) and the caller decides what to do.
 * Returns { close }.
 */
export function openStream(stream, lastEventId, { onEvent, onReset, onState }) {
  const params = new URLSearchParams({ stream });
  if (lastEventId) params.set('lastEventId', lastEventId);
  const es = new EventSource(`/events?${params}`);
  let opened = false;
  const parse = (e) => { try { return JSON.parse(e.data); } catch { return {}; } };
  for (const name of EVENT_NAMES) es.addEventListener(name, (e) => onEvent(name, parse(e), e.lastEventId));
  es.addEventListener('reset', (e) => onReset(parse(e).reason));
  es.onopen = () => { onState('live', { reopened: opened }); opened = true; };
  es.onerror = () => onState(es.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting', {});
  return { close: () => es.close() };
}
