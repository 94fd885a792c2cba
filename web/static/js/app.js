// The demo app: hash routes, pages, live updates. All server rules live in api.js.
import * as api from './api.js';
import * as Q from './queries.js';

const DEMO_USERS = [
  { email: 'alice@example.com', label: 'Alice (customer)' },
  { email: 'bob@example.com', label: 'Bob (customer)' },
  { email: 'staff@example.com', label: 'Staff' },
];
const STATUSES = ['PENDING_PAYMENT', 'PAID', 'SHIPPED', 'DELIVERED', 'CANCELLED'];
const PAGE_SIZE = 20;

const $ = (id) => document.getElementById(id);
const view = $('view');

/** h builds an element: attrs set attributes ("testid" → data-testid, "on…" → listeners, value/checked/disabled as properties). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'testid') el.dataset.testid = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value' || k === 'checked' || k === 'disabled') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  el.append(...children.flat().filter((c) => c != null && c !== false));
  return el;
}
const statusChip = (s, testid) => h('span', { class: `status status-${s}`, testid }, s);
const fmtTime = (t) => new Date(t).toLocaleString();
/** actorName shows who acted on order o: you, the customer, the payment provider, or staff. */
function actorName(actor, o) {
  if (viewer && actor === viewer.id) return 'you';
  if (actor === o.customer.id) return o.customer.name;
  if (/^[0-9a-f-]{36}$/i.test(actor)) return 'staff';
  return actor;
}

// ------------------------------------------------------------ app state

let viewer = null;
let generation = 0; // bumped on every navigation; stale async work checks it
let stream = null;

function closeStream() {
  if (stream) stream.close();
  stream = null;
  setBadge(null);
}

const BADGE_TEXT = { live: 'live', connecting: 'connecting…', reconnecting: 'reconnecting…' };

/** setBadge shows the state of the live stream: live, connecting, reconnecting, or nothing (null). */
function setBadge(state) {
  const b = $('live-badge');
  b.hidden = state == null;
  b.dataset.state = state || 'off';
  b.textContent = BADGE_TEXT[state] || 'offline';
  b.title = state === 'live' ? 'Updates arrive as they happen' : 'The live stream is down; it resumes where it stopped';
}

// ------------------------------------------------------------ banners

function showError(err, explanation = '') {
  const said = explanation ? `${explanation}Server: ${err.message}` : err.message;
  $('error-text').textContent = `${said}${err.code ? ` (${err.code})` : ''}`;
  $('error-request-id').textContent = err.requestId ? `requestId ${err.requestId}` : '';
  $('error').dataset.code = err.code || '';
  $('error').hidden = false;
}
function clearError() { $('error').hidden = true; }
$('error-close').addEventListener('click', clearError);

let noticeTimer;
function notice(text) {
  $('notice').textContent = text;
  $('notice').hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { $('notice').hidden = true; }, 6000);
}
const onRetry = (what) => (err, attempt, delay) =>
  notice(`${what}: ${err.code}, retrying (attempt ${attempt + 1}) in ${Math.round(delay)} ms…`);

/** Shows err; on UNAUTHENTICATED forgets the viewer and goes to the sign-in page. */
function handleError(err) {
  showError(err);
  if (err.code === 'UNAUTHENTICATED') {
    viewer = null;
    route();
  }
}

// ------------------------------------------------------------ live updates

/** coalesce wraps an async refresh so that overlapping calls run it at most once more. */
function coalesce(fn) {
  let running = null;
  let again = false;
  return () => {
    if (running) { again = true; return running; }
    running = (async () => {
      let result;
      do { again = false; result = await fn(); } while (again);
      return result;
    })().finally(() => { running = null; });
    return running;
  };
}

/**
 * follow streams name from lastEventId (the screen read's) and calls refresh
 * (which returns the screen's new lastEventId, if any) on each event, on
 * reset, and when the connection comes back. While the connection is down
 * EventSource reconnects by itself with Last-Event-ID (the badge says
 * "reconnecting"); a reset is answered by a refetch only: the stream stays
 * open and goes on live. A stream the browser gave up on (a non-200 answer,
 * e.g. 503 while an instance stops) is reopened after a backoff from the
 * last event it delivered, so no event is missed, and the screen is re-read.
 * onEvent(name, data, id) and onReset(reason), when given, see every
 * delivered event and reset.
 */
function follow(name, lastEventId, refresh, gen, onEvent, onReset) {
  let failures = 0;
  let lastSeen = lastEventId || '';
  const start = (fromId, first) => {
    if (gen !== generation) return;
    setBadge(first ? 'connecting' : 'reconnecting');
    const s = api.openStream(name, fromId, {
      onEvent: (ev, data, id) => {
        if (gen !== generation) return;
        if (id) lastSeen = id;
        if (onEvent) onEvent(ev, data, id);
        refresh();
      },
      onReset: (reason) => {
        if (gen !== generation) return;
        if (onReset) onReset(reason);
        refresh();
      },
      onState: (state, { reopened }) => {
        if (gen !== generation) return;
        if (state === 'live') {
          setBadge('live');
          failures = 0;
          // Without a resume point, or after a gap, the screen may be stale.
          if (reopened || !fromId) refresh();
        } else if (state === 'closed') {
          setBadge('reconnecting');
          s.close();
          setTimeout(async () => {
            if (gen !== generation) return;
            const screenId = await refresh();
            start(lastSeen || screenId || '', false);
          }, 500 + api.backoffDelay(failures++));
        } else {
          setBadge('reconnecting');
        }
      },
    });
    stream = s;
  };
  start(lastSeen, true);
}

// ------------------------------------------------------------ pages

function signInPage() {
  closeStream();
  const buttons = DEMO_USERS.map((u) => h('button', {
    type: 'button', id: `signin-${u.email}`, testid: `signin-${u.email.split('@')[0]}`,
    onclick: async (e) => {
      e.target.disabled = true;
      try {
        viewer = await api.signIn(u.email);
        clearError();
        if (location.hash.startsWith('#/signin')) location.hash = '#/'; else route();
      } catch (err) { showError(err); e.target.disabled = false; }
    },
  }, u.label));
  view.replaceChildren(h('h1', {}, 'Sign in'),
    h('div', { class: 'signin card', testid: 'signin' }, h('p', { class: 'muted' }, 'Pick a demo user:'), buttons));
}

function orderLink(o) {
  return h('a', { href: `#/order/${encodeURIComponent(o.id)}`, testid: `order-link-${o.number}` }, o.number);
}

function ordersTable(orders) {
  const staff = viewer && viewer.role === 'STAFF';
  return h('table', { testid: 'orders-table' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Order'), staff && h('th', {}, 'Customer'), h('th', {}, 'Status'),
      h('th', {}, 'Payment'), h('th', {}, 'Created'), h('th', { class: 'num' }, 'Total'))),
    h('tbody', {}, orders.map((o) => h('tr', { testid: `order-row-${o.number}` },
      h('td', {}, orderLink(o)), staff && h('td', {}, o.customer.email),
      h('td', {}, statusChip(o.status)), h('td', {}, statusChip(o.paymentStatus)),
      h('td', {}, fmtTime(o.createdAt)), h('td', { class: 'num' }, o.total.formatted)))));
}

const statusCounts = (counts) => h('ul', { class: 'chips', testid: 'status-counts' },
  counts.map((c) => h('li', { class: 'chip', testid: `count-${c.status}` }, `${c.status}: ${c.count}`)));

async function homePage(gen) {
  const refresh = coalesce(async () => {
    try {
      const s = (await api.query(Q.HOME_SCREEN)).homeScreen;
      if (gen !== generation) return;
      view.replaceChildren(
        h('h1', {}, `Hello, ${s.viewer.name}`),
        h('div', { class: 'grid' },
          h('div', { class: 'card' }, h('div', { class: 'muted' }, 'Open orders'), h('div', { class: 'stat', testid: 'open-orders' }, String(s.openOrders))),
          h('div', { class: 'card' }, h('div', { class: 'muted' }, 'Lifetime spend'), h('div', { class: 'stat', testid: 'lifetime-spend' }, s.lifetimeSpend.formatted)),
          h('div', { class: 'card' }, h('div', { class: 'muted' }, 'Role'), h('div', { class: 'stat' }, s.viewer.role))),
        h('h2', {}, 'Orders by status'), statusCounts(s.statusCounts),
        h('h2', {}, 'Recent orders'),
        s.recentOrders.length ? ordersTable(s.recentOrders) : h('p', { class: 'muted' }, 'No orders yet. ', h('a', { href: '#/shop' }, 'Place one.')));
    } catch (err) { handleError(err); }
  });
  await refresh();
  follow('orders', '', refresh, gen);
}

async function ordersPage(gen, params) {
  const status = STATUSES.includes(params.get('status')) ? params.get('status') : null;
  // Page size: ?first=N (1..100), else PAGE_SIZE.
  const pageSize = Math.min(100, Math.max(1, Math.trunc(Number(params.get('first'))) || PAGE_SIZE));
  let loaded = [];
  let pageInfo = { hasNextPage: false, endCursor: null };
  const filter = h('select', {
    testid: 'status-filter',
    onchange: (e) => {
      const q = new URLSearchParams();
      if (e.target.value) q.set('status', e.target.value);
      if (params.has('first')) q.set('first', String(pageSize));
      location.hash = q.size ? `#/orders?${q}` : '#/orders';
    },
  }, h('option', { value: '' }, 'All statuses'), STATUSES.map((s) => h('option', { value: s, selected: s === status }, s)));
  const counts = h('div');
  const list = h('div');
  const more = h('button', { type: 'button', class: 'secondary', testid: 'load-more', hidden: true, onclick: () => load(true) }, 'Load more');
  const total = h('span', { class: 'muted', testid: 'orders-total' });
  view.replaceChildren(h('h1', {}, 'Orders'), h('div', { class: 'actions' }, filter, total), counts, list, h('p', {}, more));

  // load(true) appends the next page; load(false) re-reads everything shown
  // so far. Loads run one at a time (a live refresh and "Load more" never
  // interleave), and a click on "Load more" while one is queued is ignored.
  let chain = Promise.resolve();
  let appending = false;
  const load = (append) => {
    if (append) {
      if (appending) return chain;
      appending = true;
      more.disabled = true;
    }
    chain = chain.then(async () => {
      try {
        const first = append ? pageSize : Math.min(100, Math.max(pageSize, loaded.length));
        const vars = { status, first, after: append ? pageInfo.endCursor : null };
        const s = (await api.query(Q.ORDERS_SCREEN, vars)).ordersScreen;
        if (gen !== generation) return;
        const nodes = s.orders.edges.map((e) => e.node);
        loaded = append ? loaded.concat(nodes) : nodes;
        pageInfo = s.orders.pageInfo;
        total.textContent = `${loaded.length} of ${s.orders.totalCount}`;
        counts.replaceChildren(statusCounts(s.statusCounts));
        list.replaceChildren(loaded.length ? ordersTable(loaded) : h('p', { class: 'muted', testid: 'no-orders' }, 'No orders.'));
        more.hidden = !pageInfo.hasNextPage;
      } catch (err) {
        handleError(err);
      } finally {
        if (append) { appending = false; more.disabled = false; }
      }
    });
    return chain;
  };
  const refresh = coalesce(() => load(false));
  await refresh();
  follow('orders', '', refresh, gen);
}

function addressFields(prefix, a = {}) {
  const field = (name, label, required = true) => h('label', {}, label,
    h('input', { name, testid: `${prefix}-${name}`, value: a[name] || '', required, maxlength: name === 'country' ? 2 : 200 }));
  return [field('name', 'Name'), field('line1', 'Address line 1'), field('line2', 'Address line 2', false),
    field('city', 'City'), field('postalCode', 'Postal code'), field('country', 'Country (ISO, e.g. US)')];
}

function readAddress(form) {
  const f = new FormData(form);
  const a = {};
  for (const k of ['name', 'line1', 'line2', 'city', 'postalCode', 'country']) a[k] = String(f.get(k) || '').trim();
  a.country = a.country.toUpperCase();
  if (!a.line2) a.line2 = null;
  return a;
}

/** What changed between two reads of an order, for the user. */
function describeChanges(before, after) {
  if (!before || !after) return '';
  const a = before.order;
  const b = after.order;
  const addr = (o) => JSON.stringify(o.shippingAddress);
  const out = [];
  if (a.status !== b.status) out.push(`status ${a.status} → ${b.status}`);
  if (a.paymentStatus !== b.paymentStatus) out.push(`payment ${a.paymentStatus} → ${b.paymentStatus}`);
  if (addr(a) !== addr(b)) out.push('the shipping address was changed');
  if ((a.trackingNumber || '') !== (b.trackingNumber || '')) out.push(`tracking number ${b.trackingNumber || 'removed'}`);
  if (a.version !== b.version) out.push(`version ${a.version} → ${b.version}`);
  return out.join(', ');
}

async function orderPage(gen, id) {
  let screen = null;
  let busy = false; // an action is in flight: its buttons stay disabled across live re-renders
  const root = h('div', { testid: 'order-page' });
  const log = h('ol', { class: 'eventlog', testid: 'event-log' });
  const logCard = h('details', { class: 'card', testid: 'event-log-card', open: true },
    h('summary', {}, 'Live events received by this page'), log);
  view.replaceChildren(root, logCard);
  const logEvent = (name, data, eventId) => {
    log.append(h('li', { 'data-event-id': eventId || '', 'data-event': name },
      h('code', {}, eventId || '—'), ` ${name} → ${data.status || data.toStatus || ''} · v${data.version ?? '?'}`));
  };
  const logReset = (reason) => {
    log.append(h('li', { 'data-event': 'reset', class: 'muted' },
      `reset (${reason || 'unknown'}): the resume point is outside the replay window; the page re-read the order`));
  };

  const refresh = coalesce(async () => {
    try {
      const s = (await api.query(Q.ORDER_SCREEN, { id })).orderScreen;
      if (gen !== generation) return undefined;
      if (!s) { root.replaceChildren(h('p', { testid: 'order-not-found' }, 'Order not found.')); return undefined; }
      screen = s;
      renderOrder(root, s, act, busy);
      return s.lastEventId;
    } catch (err) {
      handleError(err);
      if (err.code === 'NOT_FOUND' && gen === generation) root.replaceChildren(h('p', { testid: 'order-not-found' }, 'Order not found.'));
      return undefined;
    }
  });

  // act runs one action mutation against the version on screen. Its buttons
  // are disabled until it settles, so a double click sends one request; a
  // retry after a failure reuses the request's Idempotency-Key (api.mutate).
  async function act(what, document, vars) {
    if (busy) return;
    busy = true;
    root.querySelectorAll('[data-testid="actions"] button').forEach((b) => { b.disabled = true; });
    const before = screen;
    let conflict = null;
    try {
      await api.mutate(document, { id, expectedVersion: screen.order.version, ...vars }, { onRetry: onRetry(what) });
      clearError();
      notice(`${what}: done.`);
      root.querySelectorAll('[data-dirty]').forEach((i) => { delete i.dataset.dirty; });
    } catch (err) {
      const ext = err.extensions || {};
      if (err.code === 'CONFLICT') {
        conflict = err;
      } else if (err.code === 'INVALID_TRANSITION') {
        showError(err, `${what} is not possible now (status ${ext.currentStatus}). `);
      } else {
        handleError(err);
      }
    } finally {
      busy = false;
    }
    if (gen !== generation) return;
    await refresh();
    if (conflict && gen === generation) {
      // Refetched: tell the user what changed, and let them decide again.
      const ext = conflict.extensions || {};
      const changed = describeChanges(before, screen)
        || `it is now ${ext.currentStatus} (version ${ext.currentVersion})`;
      showError(conflict, `${what} was not done: the order changed meanwhile (${changed}). The page shows its current state; decide again. `);
    }
  }

  const lastEventId = await refresh();
  if (screen) follow(`order:${id}`, lastEventId, refresh, gen, logEvent, logReset);
}

function renderOrder(root, s, act, busy) {
  // Keep what the user is typing in action forms across live re-renders.
  const typed = new Map([...root.querySelectorAll('input[data-dirty]')].map((i) => [i.dataset.testid, i.value]));
  // ... and the focus and caret, so typing goes on in the new input.
  const focused = root.contains(document.activeElement) && document.activeElement.tagName === 'INPUT'
    ? { testid: document.activeElement.dataset.testid, start: document.activeElement.selectionStart, end: document.activeElement.selectionEnd }
    : null;
  const o = s.order;
  const a = o.shippingAddress;
  const can = new Set(s.availableActions);
  const actions = [];
  if (can.has('PAY')) {
    actions.push(h('button', { type: 'button', testid: 'action-PAY', onclick: () => act('Pay', Q.PAY_ORDER, {}) }, `Pay ${o.total.formatted}`));
  }
  if (can.has('CANCEL')) {
    actions.push(h('form', { class: 'inline', testid: 'cancel-form', onsubmit: (e) => {
      e.preventDefault();
      act('Cancel', Q.CANCEL_ORDER, { reason: new FormData(e.target).get('reason') || null });
    } }, h('input', { name: 'reason', placeholder: 'Reason (optional)', testid: 'cancel-reason' }),
    h('button', { type: 'submit', class: 'danger', testid: 'action-CANCEL' }, 'Cancel order')));
  }
  if (can.has('SHIP')) {
    actions.push(h('form', { class: 'inline', testid: 'ship-form', onsubmit: (e) => {
      e.preventDefault();
      act('Ship', Q.SHIP_ORDER, { trackingNumber: String(new FormData(e.target).get('trackingNumber')).trim() });
    } }, h('input', { name: 'trackingNumber', placeholder: 'Tracking number', required: true, testid: 'tracking-input' }),
    h('button', { type: 'submit', testid: 'action-SHIP' }, 'Ship')));
  }
  if (can.has('DELIVER')) {
    actions.push(h('button', { type: 'button', testid: 'action-DELIVER', onclick: () => act('Deliver', Q.DELIVER_ORDER, {}) }, 'Mark delivered'));
  }
  const addressForm = can.has('UPDATE_SHIPPING_ADDRESS') && h('form', { class: 'address', testid: 'address-form', onsubmit: (e) => {
    e.preventDefault();
    act('Update address', Q.UPDATE_ADDRESS, { address: readAddress(e.target) });
  } }, addressFields('address', a), h('button', { type: 'submit', class: 'secondary', testid: 'action-UPDATE_SHIPPING_ADDRESS' }, 'Change address'));

  root.replaceChildren(
    h('h1', {}, 'Order ', h('span', { testid: 'order-number' }, o.number), ' ', statusChip(o.status, 'order-status')),
    h('div', { class: 'grid' },
      h('div', { class: 'card' }, h('div', { class: 'muted' }, 'Payment'), statusChip(o.paymentStatus, 'payment-status')),
      h('div', { class: 'card' }, h('div', { class: 'muted' }, 'Total'), h('div', { class: 'stat', testid: 'order-total' }, o.total.formatted)),
      h('div', { class: 'card' }, h('div', { class: 'muted' }, 'Tracking number'), h('div', { testid: 'tracking-number' }, o.trackingNumber || '—')),
      h('div', { class: 'card' }, h('div', { class: 'muted' }, 'Customer'), h('div', {}, o.customer.name), h('div', { class: 'muted' }, `version ${o.version}`))),
    h('div', { class: 'card', testid: 'shipping-address' }, h('div', { class: 'muted' }, 'Ship to'),
      [a.name, a.line1, a.line2, `${a.postalCode} ${a.city}`, a.country].filter(Boolean).map((l) => h('div', {}, l))),
    h('table', { testid: 'order-lines' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Product'), h('th', { class: 'num' }, 'Qty'), h('th', { class: 'num' }, 'Unit'), h('th', { class: 'num' }, 'Total'))),
      h('tbody', {}, o.lines.map((l) => h('tr', {}, h('td', {}, l.product.name), h('td', { class: 'num' }, String(l.quantity)),
        h('td', { class: 'num' }, l.unitPrice.formatted), h('td', { class: 'num' }, l.total.formatted))))),
    h('h2', {}, 'Actions'),
    h('div', { class: 'card', testid: 'actions' },
      actions.length || addressForm ? [h('div', { class: 'actions' }, actions), addressForm]
        : h('p', { class: 'muted', testid: 'no-actions' }, 'Nothing to do on this order now.')),
    h('h2', {}, 'Timeline'),
    h('ol', { class: 'timeline card', testid: 'timeline' }, s.timeline.map((ev) => h('li', { testid: `timeline-${ev.type}` },
      h('strong', {}, ev.type), ` ${ev.fromStatus ? `${ev.fromStatus} → ` : ''}${ev.toStatus} · v${ev.version} · ${fmtTime(ev.at)} · ${actorName(ev.actor, o)}`))));

  if (busy) root.querySelectorAll('[data-testid="actions"] button').forEach((b) => { b.disabled = true; });
  for (const input of root.querySelectorAll('form input')) {
    if (typed.has(input.dataset.testid)) { input.value = typed.get(input.dataset.testid); input.dataset.dirty = '1'; }
    input.addEventListener('input', () => { input.dataset.dirty = '1'; });
    if (focused && input.dataset.testid === focused.testid) {
      input.focus();
      if (focused.start != null) input.setSelectionRange(focused.start, focused.end);
    }
  }
}

async function shopPage(gen) {
  const products = [];
  const rows = h('tbody');
  const more = h('button', { type: 'button', class: 'secondary', testid: 'products-more', hidden: true, onclick: () => load() }, 'More products');
  let after = null;
  const load = async () => {
    try {
      const c = (await api.query(Q.PRODUCTS, { first: 50, after })).products;
      if (gen !== generation) return;
      for (const { node: p } of c.edges) {
        products.push(p);
        const img = p.imageUrl && /^(\/|data:)/.test(p.imageUrl) ? h('img', { src: p.imageUrl, alt: '', class: 'product-img' }) : null;
        rows.append(h('tr', { testid: `product-${p.sku}` }, h('td', {}, img), h('td', {}, p.name), h('td', { class: 'muted' }, p.sku),
          h('td', { class: 'num' }, p.price.formatted),
          h('td', { class: 'num' }, h('input', { type: 'number', class: 'qty', min: 0, max: 99, value: '0', name: `qty-${p.id}`, testid: `qty-${p.sku}` }))));
      }
      after = c.pageInfo.endCursor;
      more.hidden = !c.pageInfo.hasNextPage;
    } catch (err) { handleError(err); }
  };
  const form = h('form', { testid: 'place-order-form', onsubmit: async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const lines = products.map((p) => ({ productId: p.id, quantity: Number(f.get(`qty-${p.id}`) || 0) })).filter((l) => l.quantity > 0);
    if (!lines.length) { notice('Pick at least one product.'); return; }
    const submit = form.querySelector('[data-testid="place-order"]');
    submit.disabled = true;
    try {
      const input = { lines, shippingAddress: readAddress(form), currency: 'USD' };
      const data = await api.mutate(Q.PLACE_ORDER, { input }, { onRetry: onRetry('Place order') });
      clearError();
      location.hash = `#/order/${encodeURIComponent(data.placeOrder.order.id)}`;
    } catch (err) {
      const field = err.extensions && err.extensions.field;
      handleError(field ? Object.assign(err, { message: `${err.message} [${field}]` }) : err);
      submit.disabled = false;
    }
  } },
  h('table', {}, h('thead', {}, h('tr', {}, h('th', {}), h('th', {}, 'Product'), h('th', {}, 'SKU'), h('th', { class: 'num' }, 'Price'), h('th', { class: 'num' }, 'Qty'))), rows),
  h('p', {}, more),
  h('h2', {}, 'Shipping address'),
  h('fieldset', { class: 'address card' }, addressFields('ship', { name: viewer.name, country: 'US' })),
  h('p', {}, h('button', { type: 'submit', testid: 'place-order' }, 'Place order (USD)')));
  view.replaceChildren(h('h1', {}, 'Catalogue'), form);
  await load();
}

// ------------------------------------------------------------ webhooks (staff)

const DELIVERY_STATUSES = ['PENDING', 'DELIVERED', 'FAILED', 'DEAD'];

/** webhooksPage lists the outbound webhook endpoints and each one's recent deliveries, with a redeliver button per delivery. */
async function webhooksPage(gen, params) {
  const status = DELIVERY_STATUSES.includes(params.get('status')) ? params.get('status') : null;
  const root = h('div', { testid: 'webhooks-page' }, h('h1', {}, 'Webhooks'));
  view.replaceChildren(root);
  let endpoints;
  try {
    endpoints = (await api.query(Q.WEBHOOK_ENDPOINTS)).webhookEndpoints;
  } catch (err) { handleError(err); return; }
  if (gen !== generation) return;
  const filter = h('p', { class: 'chips', testid: 'delivery-filter' }, h('a', { href: '#/webhooks' }, 'all'),
    DELIVERY_STATUSES.map((st) => h('a', { href: `#/webhooks?status=${st}`, testid: `filter-${st}` }, st.toLowerCase())));
  root.append(filter);
  if (endpoints.length === 0) {
    root.append(h('p', { class: 'muted', testid: 'no-endpoints' }, 'No endpoint is registered (createWebhookEndpoint).'));
    return;
  }
  for (const ep of endpoints) {
    const card = h('section', { class: 'card', testid: `endpoint-${ep.id}` },
      h('h2', {}, ep.url, ' ', statusChip(ep.enabled ? 'ENABLED' : 'DISABLED', 'endpoint-state')),
      ep.description ? h('p', { class: 'muted' }, ep.description) : null,
      h('p', { class: 'muted' }, `Events: ${ep.eventTypes.join(', ')}`),
      ep.disabledReason ? h('p', { class: 'status-FAILED', testid: 'disabled-reason' }, `Disabled: ${ep.disabledReason}`) : null,
      ep.failingSince ? h('p', { class: 'status-PENDING_PAYMENT', testid: 'failing-since' }, `Failing since ${fmtTime(ep.failingSince)}`) : null);
    root.append(card);
    const table = h('div', {}, h('p', { class: 'muted' }, 'Loading deliveries…'));
    card.append(table);
    const load = async () => {
      try {
        const conn = (await api.query(Q.WEBHOOK_DELIVERIES, { endpointId: ep.id, status, first: 20 })).webhookDeliveries;
        if (gen !== generation) return;
        table.replaceChildren(deliveriesTable(conn.edges.map((e) => e.node), load));
      } catch (err) { handleError(err); }
    };
    await load();
    if (gen !== generation) return;
  }
}

function deliveriesTable(deliveries, reload) {
  if (deliveries.length === 0) return h('p', { class: 'muted', testid: 'no-deliveries' }, 'No deliveries.');
  return h('table', { testid: 'deliveries-table' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Event'), h('th', {}, 'Type'), h('th', {}, 'Status'), h('th', { class: 'num' }, 'Attempts'),
      h('th', {}, 'Last answer'), h('th', {}, 'Next attempt'), h('th', {}, ''))),
    h('tbody', {}, deliveries.map((d) => h('tr', { testid: `delivery-${d.id}` },
      h('td', {}, h('code', {}, d.webhookId || '—')), h('td', {}, d.eventType),
      h('td', {}, statusChip(d.status, 'delivery-status')), h('td', { class: 'num' }, String(d.attempts)),
      h('td', {}, d.lastResponseCode != null ? String(d.lastResponseCode) : (d.lastError || '—')),
      h('td', {}, d.nextAttemptAt ? fmtTime(d.nextAttemptAt) : '—'),
      h('td', {}, h('button', {
        type: 'button', class: 'secondary', testid: 'redeliver',
        onclick: async (e) => {
          e.target.disabled = true;
          try {
            await api.mutate(Q.REDELIVER_WEBHOOK, { deliveryId: d.id }, { onRetry: onRetry('Redeliver') });
            notice(`Delivery ${d.id} queued again.`);
            await reload();
          } catch (err) { handleError(err); e.target.disabled = false; }
        },
      }, 'Redeliver'))))));
}

// ------------------------------------------------------------ routing

async function route() {
  const gen = ++generation;
  closeStream();
  const [path, qs] = (location.hash.slice(1) || '/').split('?');
  if (!viewer) {
    try {
      viewer = (await api.query(Q.VIEWER)).viewer;
    } catch (err) {
      if (err.code !== 'UNAUTHENTICATED') showError(err);
    }
    if (gen !== generation) return;
  }
  $('nav').hidden = !viewer;
  document.querySelector('[data-testid="nav-webhooks"]').hidden = !(viewer && viewer.role === 'STAFF');
  $('signout').hidden = !viewer;
  $('viewer').textContent = viewer ? `${viewer.name} · ${viewer.role}` : '';
  if (!viewer || path === '/signin') { signInPage(); return; }
  const m = path.match(/^\/order\/(.+)$/);
  if (m) await orderPage(gen, decodeURIComponent(m[1]));
  else if (path === '/orders') await ordersPage(gen, new URLSearchParams(qs || ''));
  else if (path === '/shop') await shopPage(gen);
  else if (path === '/webhooks') await webhooksPage(gen, new URLSearchParams(qs || ''));
  else await homePage(gen);
}

$('signout').addEventListener('click', async () => {
  try { await api.signOut(); } catch (err) { showError(err); }
  viewer = null;
  if (location.hash === '#/signin') route(); else location.hash = '#/signin';
});
window.addEventListener('hashchange', () => {
  clearError();
  $('notice').hidden = true;
  route();
});
route();
