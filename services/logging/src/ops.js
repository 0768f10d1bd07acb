'use strict';
// The audit trail arrives live from GET /logs/stream (Server-Sent Events: the stored
// records first, then each new one, read with ui.stream so that the token goes with them);
// the lag of every consumer group is measured in Kafka by GET /api/lag, and every service's
// readiness and what its consumers wait for come from GET /api/services, every three seconds;
// each group's lag over the last hour from GET /api/lag/history (a line per group), the dead
// letters from GET /api/dead-letters (each with a Replay button:
// POST /api/dead-letters/{topic}/{partition}/{offset}/replay), and, when the page follows one
// order, that order's timeline from GET /api/orders/{id}/timeline.
// All of it is the operator's only: the page signs in as the operator first (ui.signInForm,
// /assets/ui.js); a 401 (an expired token) brings the sign-in back.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_ROWS = 500;
let source = null;
let filtered = '';
let seen = new Set();
let openedAt = Infinity;
let lagHistory = null;
let ticks = 0;

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
    h('td', {}, record.message),
    h('td', { class: 'trace', title: record.traceId || 'not traced' }, record.traceId ? record.traceId.slice(0, 8) : ''));
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
  orderView();
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
        h('tr', {}, h('td', {}, t.topic), h('td', { class: t.lag ? 'lagging' : null }, String(t.lag)))))),
      ...sparkline(g.group));
  }));
}

async function readLagHistory() {
  try {
    lagHistory = await ui.api('/api/lag/history');
  } catch (error) {
    lagHistory = null; // the cards say what went wrong with Kafka; the line is left out
  }
}

const SVG = 'http://www.w3.org/2000/svg';

/** The group's lag over the last hour as a line, with its highest point and span. */
function sparkline(group) {
  const samples = (lagHistory?.samples || []).filter((s) => s.groups[group] !== null && s.groups[group] !== undefined);
  if (samples.length < 2) return [h('div', { class: 'spark-note' }, 'lag over time: sampling…')];
  const values = samples.map((s) => s.groups[group]);
  const most = Math.max(1, ...values);
  const points = values.map((v, i) => `${(i / (values.length - 1) * 100).toFixed(2)},${(19 - v / most * 18).toFixed(2)}`);
  const line = document.createElementNS(SVG, 'svg');
  line.setAttribute('class', 'spark');
  line.setAttribute('viewBox', '0 0 100 20');
  line.setAttribute('preserveAspectRatio', 'none');
  line.setAttribute('role', 'img');
  line.setAttribute('aria-label', `${group} lag over time, highest ${Math.max(...values)}`);
  const polyline = document.createElementNS(SVG, 'polyline');
  polyline.setAttribute('points', points.join(' '));
  line.append(polyline);
  const minutes = Math.round((Date.parse(samples[samples.length - 1].at) - Date.parse(samples[0].at)) / 60000);
  return [line, h('div', { class: 'spark-note', 'data-samples': samples.length },
    `last ${minutes < 1 ? 'minute' : `${minutes} min`} · highest ${Math.max(...values)}`)];
}

// --- dead letters --------------------------------------------------------------------

async function deadLetters() {
  if (!signedIn()) return;
  let report;
  try {
    report = await ui.api('/api/dead-letters');
  } catch (error) {
    if (error.status === 401) return; // the sign-in is showing
    $('dead-updated').textContent = `not read: ${error.unreachable ? 'the logging service cannot be reached' : error.message}`;
    return;
  }
  $('dead-updated').textContent = `read ${new Date(report.measuredAt).toLocaleTimeString()}`;
  const held = report.topics.filter((t) => t.count > 0);
  $('dead-empty').hidden = held.length > 0;
  $('dead').replaceChildren(...held.map((t) => h('article', { class: 'dead-topic', 'data-topic': t.topic, 'data-count': t.count },
    h('h3', {}, t.topic, h('span', { class: 'count' }, `${t.count} set aside`)),
    ...t.records.map((r) => letter(t, r)))));
}

function letter(topic, r) {
  const origin = `${r.group || 'a group'} · from ${topic.source}/${r.sourcePartition ?? '?'} at ${r.sourceOffset ?? '?'}`
    + (r.setAsideAt ? ` · ${new Date(r.setAsideAt).toLocaleString()}` : '') + (r.key ? ` · order ${ui.shortId(r.key)}` : '')
    + (r.replayOf ? ` · a replay of ${r.replayOf}` : '');
  const status = h('span', { class: 'replayed' }, r.replayed
    ? `replayed ${new Date(r.replayed.at).toLocaleTimeString()} to ${r.replayed.toTopic}${r.replayed.toOffset !== null && r.replayed.toOffset !== undefined ? ` at ${r.replayed.toOffset}` : ''}`
    : '');
  const button = h('button', { type: 'button', 'data-action': 'replay', disabled: r.replayed ? '' : null }, 'Replay');
  const problem = h('span', { class: 'error-text', role: 'alert' });
  button.addEventListener('click', async () => {
    button.disabled = true;
    problem.textContent = '';
    try {
      const done = await ui.api(`/api/dead-letters/${encodeURIComponent(topic.topic)}/${r.partition}/${r.offset}/replay`, { method: 'POST' });
      status.textContent = `replayed just now to ${done.toTopic} at ${done.toOffset}`;
      deadLetters();
    } catch (error) {
      if (error.status === 401) return;
      problem.textContent = `Not replayed: ${error.message}`;
      button.disabled = error.status === 409;
    }
  });
  return h('div', { class: 'letter', 'data-offset': r.offset, 'data-replayed': r.replayed ? 'true' : 'false' },
    h('div', { class: 'error-text' }, r.error || 'no reason recorded'),
    h('div', { class: 'origin' }, origin),
    h('pre', {}, r.payload ?? '(no value)'),
    h('div', {}, button, ' ', status, ' ', problem));
}

// --- one order -------------------------------------------------------------------------

async function orderView() {
  const view = $('order-view');
  if (!filtered || !signedIn()) {
    view.hidden = true;
    return;
  }
  const orderId = filtered;
  let timeline;
  try {
    timeline = await ui.api(`/api/orders/${orderId}/timeline`);
  } catch (error) {
    if (error.status === 401) return;
    $('order-updated').textContent = `not read: ${error.message}`;
    return;
  }
  if (orderId !== filtered) return; // the filter changed meanwhile
  view.hidden = false;
  $('order-id').textContent = orderId;
  $('order-updated').textContent = `read ${new Date().toLocaleTimeString()}`;
  const traces = $('order-traces');
  traces.hidden = !timeline.tracesUrl;
  if (timeline.tracesUrl) traces.href = timeline.tracesUrl;
  $('order-stages').replaceChildren(...timeline.stages.map((s) => h('li', { 'data-stage': s.stage, 'data-reached': s.at ? 'true' : 'false' },
    h('strong', {}, s.stage), s.at ? new Date(s.at).toLocaleTimeString() : 'not yet')));
  $('order-problems').textContent = timeline.problems.join(' · ');
  $('order-problems').hidden = timeline.problems.length === 0;
  $('order-entries').replaceChildren(...timeline.entries.map((e) => {
    const time = new Date(e.at);
    const trace = e.traceUrl
      ? h('a', { href: e.traceUrl, target: '_blank', rel: 'noopener', title: e.traceId }, e.traceId.slice(0, 8))
      : e.traceId ? e.traceId.slice(0, 8) : '';
    return h('tr', { 'data-kind': e.kind },
      h('td', { class: 'time', title: e.at }, time.toLocaleTimeString([], { hour12: false }) + `.${String(time.getMilliseconds()).padStart(3, '0')}`),
      h('td', { class: 'kind' }, e.kind),
      h('td', { class: 'who' }, e.by),
      h('td', { class: e.kind === 'audit' ? 'action' : null }, e.title),
      h('td', {}, e.detail),
      h('td', { class: 'trace', title: e.traceId || 'not traced' }, trace));
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
        `${w.group} · ${w.topic}/${w.partition} for ${w.sinceSeconds} s: ${w.waitingFor}${w.detail ? ` (${w.detail})` : ''}`)));
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
  readLagHistory().then(measure);
  services();
  deadLetters();
}

ui.onSignedOut(({ reason }) => {
  banner('');
  showSignIn(reason === 'refused' ? 'Your session has ended: please sign in again.' : null);
});

filtered = new URLSearchParams(location.search).get('orderId') || '';
if (signedIn()) start();
else showSignIn();
setInterval(async () => {
  if (document.hidden) return;
  ticks += 1;
  if (ticks % 3 === 0) await readLagHistory();
  measure();
  services();
  orderView();
  if (ticks % 2 === 0) deadLetters();
}, 3000);
