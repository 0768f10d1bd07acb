'use strict';
// The courier's deliveries (GET /deliveries, refreshed every two seconds) and the two
// courier actions. A button is enabled only where the transition is legal: "shipped" from
// shipping, "delivered" from shipped; the service refuses anything else with a 409.
const ACTIONS = [
  { action: 'shipped', label: 'Mark shipped', from: 'shipping', why: 'Only a delivery being prepared (shipping) can be marked shipped.' },
  { action: 'delivered', label: 'Mark delivered', from: 'shipped', why: 'Only a shipped delivery can be marked delivered.' },
];
const FILTERS = {
  todo: (d) => d.status !== 'delivered',
  delivered: (d) => d.status === 'delivered',
  all: () => true,
};
let deliveries = [];
let filter = 'todo';
let shown = '';
const errors = new Map();
const busy = new Set();


const shortId = (id) => id.slice(-8).toUpperCase();
const time = (at) => new Date(at).toLocaleString([], { dateStyle: 'short', timeStyle: 'medium' });

function banner(text) {
  const element = document.getElementById('banner');
  element.textContent = text;
  element.hidden = !text;
}

async function load() {
  try {
    const response = await fetch('/deliveries');
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || `the delivery service answered ${response.status}`);
    deliveries = body;
    banner('');
  } catch (error) {
    banner(error instanceof TypeError
      ? 'The delivery service cannot be reached. Retrying…'
      : `Cannot list deliveries: ${error.message}`);
    return;
  }
  render();
}

function render(force = false) {
  const visible = deliveries.filter(FILTERS[filter]);
  const todo = deliveries.filter(FILTERS.todo).length;
  document.getElementById('counts').textContent =
    `${todo} to do · ${deliveries.length - todo} delivered · updated ${new Date().toLocaleTimeString()}`;
  // Redraw only on change, so a button is never replaced under the courier's finger.
  const signature = JSON.stringify([filter, visible, [...errors], [...busy]]);
  if (!force && signature === shown) return;
  shown = signature;
  document.getElementById('empty').hidden = visible.length > 0;
  document.getElementById('list').replaceChildren(...visible.map(card));
}

function card(d) {
  const error = errors.get(d.orderId);
  return h('article', { class: 'delivery', 'data-order-id': d.orderId, 'data-status': d.status },
    h('div', { class: 'top' },
      h('strong', {}, `Order ${shortId(d.orderId)}`),
      h('span', { class: 'status', 'data-status': d.status }, d.status)),
    h('div', { class: 'who' }, d.customer.name,
      h('span', {}, d.customer.phone), h('span', {}, d.customer.email)),
    h('ul', { class: 'items' }, ...d.items.map((i) => h('li', {}, `${i.quantity} × ${i.sku}`))),
    h('div', { class: 'meta' }, `Delivery ${d.deliveryId} · opened ${time(d.createdAt)} · changed ${time(d.updatedAt)}`),
    h('div', { class: 'actions' }, ...ACTIONS.map((a) => {
      const legal = d.status === a.from;
      return h('button', {
        type: 'button',
        'data-action': a.action,
        disabled: !legal || busy.has(d.orderId),
        title: legal ? '' : a.why,
        onclick: () => act(d.orderId, a.action),
      }, a.label);
    })),
    error ? h('p', { class: 'error', role: 'alert' }, error) : null);
}

async function act(orderId, action) {
  busy.add(orderId);
  errors.delete(orderId);
  render();
  try {
    const response = await fetch(`/deliveries/${orderId}/${action}`, { method: 'POST' });
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      deliveries = deliveries.map((d) => (d.orderId === orderId ? body : d));
    } else {
      errors.set(orderId, `Not marked ${action}: ${body.error || `the service answered ${response.status}`}`);
    }
  } catch {
    errors.set(orderId, `Not marked ${action}: the delivery service cannot be reached. Try again.`);
  } finally {
    busy.delete(orderId);
    render();
    load();
  }
}

for (const button of document.querySelectorAll('[data-filter]')) {
  button.addEventListener('click', () => {
    filter = button.dataset.filter;
    for (const other of document.querySelectorAll('[data-filter]')) other.setAttribute('aria-pressed', String(other === button));
    render(true);
  });
}
load();
setInterval(load, 2000);
