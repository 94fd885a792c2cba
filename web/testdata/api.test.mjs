// Unit tests of the retry and idempotency rules in static/js/api.js.
// Run: node --test web/testdata/ (the Go test TestAPIModule runs it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, retryDelay, mutate, query, RETRY } from '../static/js/api.js';

/** A fake fetch answering from a script of [status, body, headers] and recording requests. */
function fakeFetch(script) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, init });
    const step = script[Math.min(calls.length - 1, script.length - 1)];
    if (step instanceof Error) throw step;
    const [status, body, headers = {}] = step;
    return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });
  };
  return { fetch, calls };
}

const errorBody = (code, ext = {}) => ({
  data: null,
  errors: [{ message: code.toLowerCase(), extensions: { code, requestId: 'req-1', retryable: false, ...ext } }],
});
const ok = { data: { payOrder: { order: { id: 'o1', version: 3 } } } };

test('backoff is full jitter within the exponential cap', () => {
  for (let attempt = 0; attempt < 8; attempt++) {
    const ceiling = Math.min(RETRY.capMs, RETRY.baseMs * 2 ** attempt);
    assert.equal(backoffDelay(attempt, RETRY, () => 0), 0);
    assert.equal(backoffDelay(attempt, RETRY, () => 0.999999), ceiling - 1);
    const d = backoffDelay(attempt);
    assert.ok(d >= 0 && d < ceiling, `attempt ${attempt}: ${d} not in [0, ${ceiling})`);
  }
  assert.equal(backoffDelay(20, RETRY, () => 0.5), RETRY.capMs / 2);
});

test('Retry-After is a floor under the jittered delay', () => {
  assert.equal(retryDelay({ retryAfterSeconds: 2 }, 0, RETRY, () => 0.5), 2000);
  assert.equal(retryDelay({}, 3, RETRY, () => 0.5), 1000);
});

test('a mutation retries IN_USE, RATE_LIMITED and network failures with one idempotency key', async () => {
  const { fetch, calls } = fakeFetch([
    [409, errorBody('IDEMPOTENCY_KEY_IN_USE', { retryable: true }), { 'Retry-After': '1' }],
    new TypeError('failed to fetch'),
    [429, errorBody('RATE_LIMITED', { retryable: true, retryAfterSeconds: 3 })],
    [200, ok],
  ]);
  const waits = [];
  const data = await mutate('mutation PayOrder { x }', { id: 'o1' }, { fetch, sleep: async (ms) => waits.push(ms), random: () => 0 });
  assert.equal(data.payOrder.order.version, 3);
  assert.equal(calls.length, 4);
  const keys = calls.map((c) => c.init.headers['Idempotency-Key']);
  assert.match(keys[0], /^[0-9a-f-]{36}$/);
  assert.deepEqual(new Set(keys).size, 1, 'every retry reuses the key');
  assert.deepEqual(waits, [1000, 0, 3000], 'Retry-After honoured, jitter otherwise');
  for (const c of calls) assert.equal(c.init.headers['X-Requested-With'], 'bff-web');
});

test('each new mutation gets a fresh key', async () => {
  const { fetch, calls } = fakeFetch([[200, ok]]);
  await mutate('mutation A { x }', { n: 1 }, { fetch });
  await mutate('mutation A { x }', { n: 1 }, { fetch });
  assert.notEqual(calls[0].init.headers['Idempotency-Key'], calls[1].init.headers['Idempotency-Key']);
});

test('an identical mutation after exhausted retries reuses the unsettled key', async () => {
  const { fetch, calls } = fakeFetch([[503, errorBody('UNAVAILABLE', { retryable: true })]]);
  const opts = { fetch, sleep: async () => {} };
  await assert.rejects(mutate('mutation B { x }', { n: 2 }, opts), { code: 'UNAVAILABLE' });
  assert.equal(calls.length, RETRY.maxTries, 'stops after maxTries');
  await assert.rejects(mutate('mutation B { x }', { n: 2 }, opts));
  assert.equal(new Set(calls.map((c) => c.init.headers['Idempotency-Key'])).size, 1);
});

test('CONFLICT is not retried and keep their extensions', async () => {
  const { fetch, calls } = fakeFetch([[200, errorBody('CONFLICT', { currentVersion: 4, currentStatus: 'PAID' })]]);
  await assert.rejects(mutate('mutation C { x }', {}, { fetch, sleep: async () => assert.fail('slept') }), (err) => {
    assert.equal(err.code, 'CONFLICT');
    assert.equal(err.requestId, 'req-1');
    assert.equal(err.extensions.currentStatus, 'PAID');
    assert.equal(err.extensions.currentVersion, 4);
    return true;
  });
  assert.equal(calls.length, 1);
});

test('queries carry no idempotency key and take the request id from the header when absent', async () => {
  const { fetch, calls } = fakeFetch([[401, { message: 'no' }, { 'X-Request-ID': 'hdr-9' }]]);
  await assert.rejects(query('{ viewer { id } }', {}, { fetch }), { code: 'UNAUTHENTICATED', requestId: 'hdr-9' });
  assert.equal(calls[0].init.headers['Idempotency-Key'], undefined);
});
