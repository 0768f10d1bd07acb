'use strict';
// The courier's deliveries (GET /deliveries, refreshed every two seconds) and the two
// courier actions. A button is enabled only where the transition is legal: "shipped" from
// shipping, "delivered" from shipped; the service refuses anything else with a 409.
// Only the courier may: the page signs in as the courier first (ui.signInForm, /assets/ui.js)
// and calls with that token; a 401 (an expired token) brings the sign-in back.
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


const time = (at) => new Date(at).toLocaleString([], { dateStyle: 'short', timeStyle: 'medium' });

function banner(text) {
  const element = document.getElementById('banner');
  element.textContent = text;
  element.hidden = !text;
}

const signedIn = () => {
  const session = ui.session.get();
  return session && session.role === 'courier' ? session : null;
};

async function load() {
  if (!signedIn()) return;
  try {
    deliveries = await ui.api('/deliveries');
    banner('');
  } catch (error) {
    if (error.status === 401) return; // the sign-in is showing
    banner(error.unreachable
      ? 'The delivery service cannot be reached. Retrying…'
      : `Cannot list deliveries: ${error.message}.`);
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
      h('strong', {}, `Order ${ui.shortId(d.orderId)}`),
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
    const body = await ui.api(`/deliveries/${orderId}/${action}`, { method: 'POST' });
    deliveries = deliveries.map((d) => (d.orderId === orderId ? body : d));
  } catch (error) {
    if (error.status !== 401) {
      errors.set(orderId, error.unreachable
        ? `Not marked ${action}: the delivery service cannot be reached. Try again.`
        : `Not marked ${action}: ${error.message}`);
    }
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

// --- signing in ----------------------------------------------------------------------

function showSignIn(note) {
  deliveries = [];
  shown = '';
  errors.clear();
  document.getElementById('work').hidden = true;
  document.getElementById('counts').textContent = '';
  document.getElementById('account').replaceChildren();
  const form = ui.signInForm({
    as: 'courier',
    title: 'Sign in as the courier',
    intro: note || 'The deliveries and their actions are the courier’s only.',
    onSignedIn: start,
  });
  const panel = document.getElementById('sign-in');
  panel.replaceChildren(form);
  panel.hidden = false;
  form.elements.password.focus();
}

function start() {
  document.getElementById('sign-in').hidden = true;
  document.getElementById('work').hidden = false;
  document.getElementById('account').replaceChildren(ui.signedInAs());
  banner('');
  load();
}

ui.onSignedOut(({ reason }) => {
  banner('');
  showSignIn(reason === 'refused' ? 'Your session has ended: please sign in again.' : null);
});

if (signedIn()) start();
else showSignIn();
setInterval(load, 2000);
