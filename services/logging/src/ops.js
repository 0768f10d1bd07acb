'use strict';
// The audit trail arrives live from GET /logs/stream (Server-Sent Events: the stored
// records first, then each new one); the lag of every consumer group is measured in Kafka
// by GET /api/lag every three seconds.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_ROWS = 500;
let source = null;
let seen = new Set();
let openedAt = Infinity;

const $ = (id) => document.getElementById(id);
const shortId = (id) => id.slice(-8).toUpperCase();

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
  if (source) source.close();
  seen = new Set();
  openedAt = Infinity;
  $('records').replaceChildren();
  renderCount();
  const url = orderId ? `/logs/stream?orderId=${orderId}` : '/logs/stream';
  source = new EventSource(url);
  source.onopen = () => {
    openedAt = Date.now();
    live('live', 'live');
  };
  source.addEventListener('record', (event) => add(JSON.parse(event.data), Date.now() - openedAt > 500));
  source.onerror = () => live('reconnecting', 'reconnecting…');
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
      onclick: (event) => { event.preventDefault(); applyFilter(record.orderId); } }, shortId(record.orderId))),
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
  follow(orderId);
}

$('filter').addEventListener('submit', (event) => {
  event.preventDefault();
  applyFilter(event.currentTarget.elements.orderId.value);
});
$('clear').addEventListener('click', () => applyFilter(''));

// --- consumer lag ------------------------------------------------------------------

async function measure() {
  let report;
  try {
    const response = await fetch('/api/lag');
    report = await response.json();
    if (!response.ok) throw new Error(report.error || `the logging service answered ${response.status}`);
    banner('');
  } catch (error) {
    const reason = error instanceof TypeError ? 'the logging service cannot be reached' : error.message;
    $('lag-updated').textContent = `not measured: ${reason}`;
    if (error instanceof TypeError) banner('The logging service cannot be reached. Retrying…');
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

applyFilter(new URLSearchParams(location.search).get('orderId') || '');
measure();
setInterval(() => { if (!document.hidden) measure(); }, 3000);
