'use strict';
// The audit trail arrives live from GET /logs/stream (Server-Sent Events: the stored
// records first, then each new one, read with ui.stream so that the token goes with them);
// the lag of every consumer group is measured in Kafka by GET /api/lag, and every service's
// readiness and what its consumers wait for come from GET /api/services, every three seconds.
// Both are the operator's only: the page signs in as the operator first (ui.signInForm,
// /assets/ui.js); a 401 (an expired token) brings the sign-in back.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_ROWS = 500;
let source = null;
let filtered = '';
let seen = new Set();
let openedAt = Infinity;

const $ = (id) => document.getElementById(id);

function banner(text) {
  $('banner').textContent = text;
  $('banner').hidden = !text;
}

function live(state, text) {
  $('audit-live').dataset.state = state;
  $('audit-live').textContent = text;
}

// --- audit trail -------------------------------------------------------------------

function follow(orderId) {
  stop();
  seen = new Set();
  openedAt = Infinity;
  $('records').replaceChildren();
  renderCount();
  if (!signedIn()) return;
  live('connecting', 'connecting…');
  const url = orderId ? `/logs/stream?orderId=${orderId}` : '/logs/stream';
  // A stream that ends (it fell behind) reconnects and starts over; rows already shown stay.
  source = ui.stream(url, {
    onOpen: () => {
      openedAt = Date.now();
      live('live', 'live');
    },
    on: { record: (data) => add(JSON.parse(data), Date.now() - openedAt > 500) },
    onError: (problem, retrying) => {
      if (problem.status === 401) return; // the sign-in is showing
      live('reconnecting', retrying ? 'reconnecting…' : 'stopped');
      if (!retrying) banner(`The audit trail stopped: ${problem.message}. Reload the page to try again.`);
    },
  });
}

function stop() {
  if (source) source.close();
  source = null;
}

function add(record, fresh) {
  if (seen.has(record.eventId)) return;
  seen.add(record.eventId);
  const time = new Date(record.occurredAt);
  const row = h('tr', { class: fresh ? 'new' : null, 'data-order-id': record.orderId, 'data-action': record.action },
    h('td', { class: 'time', title: record.occurredAt },
      time.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false }) +
        `.${String(time.getMilliseconds()).padStart(3, '0')}`),
    h('td', {}, h('a', { href: `?orderId=${record.orderId}`, title: record.orderId,
      onclick: (event) => { event.preventDefault(); applyFilter(record.orderId); } }, ui.shortId(record.orderId))),
    h('td', { class: 'who' }, record.instance),
    h('td', { class: 'action' }, record.action),
    h('td', {}, record.message));
  const body = $('records');
  body.prepend(row);
  while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
  renderCount();
}

function renderCount() {
  const rows = $('records').rows.length;
  $('records-empty').hidden = rows > 0;
  $('audit-count').textContent = `${rows} record${rows === 1 ? '' : 's'}, newest first`;
}

function applyFilter(value) {
  const orderId = value.trim().toLowerCase();
  $('filter-error').hidden = true;
  if (orderId && !UUID.test(orderId)) {
    $('filter-error').textContent = 'That is not an order id: paste the full id (8-4-4-4-12 hex digits).';
    $('filter-error').hidden = false;
    return;
  }
  $('filter').elements.orderId.value = orderId;
  history.replaceState(null, '', orderId ? `?orderId=${orderId}` : location.pathname);
  filtered = orderId;
  follow(orderId);
}

$('filter').addEventListener('submit', (event) => {
  event.preventDefault();
  applyFilter(event.currentTarget.elements.orderId.value);
});
$('clear').addEventListener('click', () => applyFilter(''));

// --- consumer lag ------------------------------------------------------------------

async function measure() {
  if (!signedIn()) return;
  let report;
  try {
    report = await ui.api('/api/lag');
    banner('');
  } catch (error) {
    if (error.status === 401) return; // the sign-in is showing
    const reason = error.unreachable ? 'the logging service cannot be reached' : error.message;
    $('lag-updated').textContent = `not measured: ${reason}`;
    if (error.unreachable) banner('The logging service cannot be reached. Retrying…');
    return;
  }
  $('lag-updated').textContent = `measured ${new Date(report.measuredAt).toLocaleTimeString()}`;
  $('groups').dataset.measuredAt = String(Date.parse(report.measuredAt));
  $('groups').replaceChildren(...report.groups.map((g) => {
    const state = g.error ? 'error' : g.lag === 0 ? 'ok' : 'behind';
    const records = g.topics.reduce((sum, t) => sum + t.partitions.reduce((s, p) => s + (p.committed ?? p.low), 0), 0);
    return h('article', { class: 'group', 'data-group': g.group, 'data-state': state, 'data-lag': g.lag ?? '', 'data-consumed': records },
      h('div', { class: 'name' }, g.group),
      h('div', { class: 'lag' }, g.error ? '?' : String(g.lag)),
      h('div', { class: 'state' }, g.error ? g.error : g.lag === 0 ? `caught up · ${records} consumed` : `${g.lag} record${g.lag === 1 ? '' : 's'} behind`),
      h('table', {}, h('tbody', {}, ...g.topics.map((t) =>
        h('tr', {}, h('td', {}, t.topic), h('td', { class: t.lag ? 'lagging' : null }, String(t.lag)))))));
  }));
}

// --- services ----------------------------------------------------------------------

async function services() {
  if (!signedIn()) return;
  let report;
  try {
    report = await ui.api('/api/services');
  } catch (error) {
    if (error.status === 401) return; // the sign-in is showing
    $('services-updated').textContent = `not asked: ${error.unreachable ? 'the logging service cannot be reached' : error.message}`;
    return;
  }
  $('services-updated').textContent = report.services.length
    ? `asked ${new Date(report.measuredAt).toLocaleTimeString()}`
    : 'none watched (WATCHED_SERVICES is not set)';
  $('services').replaceChildren(...report.services.map((s) => {
    const state = !s.ready ? 'down' : s.waiting.length ? 'waiting' : 'ok';
    const said = !s.ready ? s.problem : s.waiting.length ? `waiting (${s.waiting.length})` : 'ready';
    return h('article', { class: 'service', 'data-instance': s.instance, 'data-state': state },
      h('div', { class: 'name' }, s.instance),
      h('div', { class: 'state' }, said),
      ...s.waiting.map((w) => h('div', { class: 'wait' },
        `${w.group} · ${w.topic}/${w.partition} for ${w.sinceSeconds} s: ${w.waitingFor}`)));
  }));
}

// --- signing in ----------------------------------------------------------------------

function signedIn() {
  const session = ui.session.get();
  return session && session.role === 'operator' ? session : null;
}

function showSignIn(note) {
  stop();
  $('console').hidden = true;
  $('account').replaceChildren();
  const form = ui.signInForm({
    as: 'operator',
    title: 'Sign in as the operator',
    intro: note || 'The services’ state, the consumer lag and the audit trail are the operator’s only.',
    onSignedIn: start,
  });
  $('sign-in').replaceChildren(form);
  $('sign-in').hidden = false;
  form.elements.password.focus();
}

function start() {
  $('sign-in').hidden = true;
  $('console').hidden = false;
  $('account').replaceChildren(ui.signedInAs(signedIn()));
  banner('');
  applyFilter(filtered);
  measure();
  services();
}

ui.onSignedOut(({ reason }) => {
  banner('');
  showSignIn(reason === 'refused' ? 'Your session has ended: please sign in again.' : null);
});

filtered = new URLSearchParams(location.search).get('orderId') || '';
if (signedIn()) start();
else showSignIn();
setInterval(() => { if (!document.hidden) { measure(); services(); } }, 3000);
