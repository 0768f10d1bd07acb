// The customer's app: catalogue, cart and checkout; the order page, whose timeline and push
// notifications advance live over Server-Sent Events; the customer's orders. Plain browser
// JavaScript, no build step: the mobile service embeds and serves this file as it is.
'use strict';

const STAGES = [
  { stage: 'created', label: 'Order placed', detail: 'We have your order.' },
  { stage: 'paymentCreated', label: 'Payment requested', detail: 'Your payment link is ready.' },
  { stage: 'paymentMade', label: 'Payment received', detail: 'Thank you, your payment went through.' },
  { stage: 'readyToShip', label: 'Ready to ship', detail: 'Packed, waiting for the courier.' },
  { stage: 'shipping', label: 'With the courier', detail: 'The courier has your parcel.' },
  { stage: 'shipped', label: 'Shipped', detail: 'On its way to you.' },
  { stage: 'delivered', label: 'Delivered', detail: 'At your door. Enjoy!' },
];
const STAGE_LABEL = Object.fromEntries(STAGES.map((s) => [s.stage, s.label]));

const app = {
  config: null,
  products: [],
  cart: readStored('shop.cart', {}),
  customer: readStored('shop.customer', { name: '', email: '', phone: '' }),
  // The Idempotency-Key of the order being placed: a retry of the same order reuses it.
  attempt: null,
  // Every route change bumps it, so answers for a page already left are dropped.
  visit: 0,
  streams: [],
};

const $ = (selector, root = document) => root.querySelector(selector);
const money = new Intl.NumberFormat('en-IE', { style: 'currency', currency: 'EUR' });


function readStored(key, fallback) {
  try {
    return JSON.parse(localStorage.getItem(key)) ?? fallback;
  } catch {
    return fallback;
  }
}

function store(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Private mode: the app works, it just forgets on reload.
  }
}

/** What people read and say: the last 8 characters of the order id. */
function shortId(id) {
  return id.slice(-8).toUpperCase();
}

function when(at) {
  const date = new Date(at);
  const today = new Date().toDateString() === date.toDateString();
  return today
    ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })
    : date.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

/** A failed request, with a message a customer can act on. */
class Problem extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/** fetch, answering JSON or throwing a Problem naming what went wrong. */
async function request(url, options, who) {
  let response;
  try {
    response = await fetch(url, options);
  } catch {
    throw new Problem(`${who} cannot be reached. Check your connection and try again.`, 0);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: the status says enough.
  }
  if (!response.ok) {
    const reason = body && body.error ? body.error : `it answered ${response.status} ${response.statusText}`;
    const busy = response.status >= 500 ? ' The shop is having trouble; try again in a moment.' : '';
    throw new Problem(`${who}: ${reason}.${busy}`, response.status);
  }
  return body;
}

function showBanner(text) {
  const banner = $('#banner');
  banner.textContent = text;
  banner.hidden = !text;
}

// ---------------------------------------------------------------------------------------
// Routing: #/ (shop), #/cart, #/orders, #/orders/{id}

function route() {
  app.visit += 1;
  closeStreams();
  const hash = location.hash || '#/';
  const order = hash.match(/^#\/orders\/([0-9a-fA-F-]{36})$/);
  const name = order ? 'order' : hash === '#/orders' ? 'orders' : 'shop';
  for (const view of document.querySelectorAll('.view')) view.hidden = view.id !== `view-${name}`;
  for (const link of document.querySelectorAll('[data-nav]')) {
    link.classList.toggle('active', link.dataset.nav === name || (name === 'order' && link.dataset.nav === 'orders'));
  }
  if (order) showOrder(order[1].toLowerCase());
  else if (name === 'orders') showOrders();
  else showShop(hash === '#/cart');
}

function closeStreams() {
  for (const stream of app.streams) stream.close();
  app.streams = [];
}

// ---------------------------------------------------------------------------------------
// The shop: catalogue, cart, checkout

function showShop(toCart) {
  document.title = 'Shop';
  renderProducts();
  renderCart();
  const form = $('#checkout');
  for (const field of ['name', 'email', 'phone']) {
    if (!form.elements[field].value) form.elements[field].value = app.customer[field] || '';
  }
  if (toCart) $('#cart').scrollIntoView({ behavior: 'smooth' });
  else window.scrollTo(0, 0);
}

const TILE_COLOURS = ['#0f766e', '#92400e', '#4f46e5', '#b45309', '#7c2d12', '#334155', '#be185d', '#15803d'];

/** The product's picture: its initials on a colour of its own. */
function tile(product, index) {
  const initials = product.name.split(/\s+/).map((word) => word[0]).join('').slice(0, 2).toUpperCase();
  return h('div', { class: 'tile', style: `background:${TILE_COLOURS[index % TILE_COLOURS.length]}`, 'aria-hidden': 'true' }, initials);
}

function renderProducts() {
  const shelf = $('#products');
  shelf.replaceChildren(
    ...app.products.map((p, index) => {
      const quantity = app.cart[p.sku] || 0;
      const control = quantity
        ? h('span', { class: 'stepper' },
            h('button', { type: 'button', 'aria-label': `One ${p.name} less`, onclick: () => setQuantity(p.sku, quantity - 1) }, '−'),
            h('output', { 'data-quantity': p.sku }, String(quantity)),
            h('button', { type: 'button', 'aria-label': `One ${p.name} more`, onclick: () => setQuantity(p.sku, quantity + 1) }, '+'))
        : h('button', { type: 'button', 'data-add': p.sku, onclick: () => setQuantity(p.sku, 1) }, 'Add to cart');
      return h('article', { class: 'card product', 'data-sku': p.sku },
        tile(p, index),
        h('h3', {}, p.name),
        h('p', {}, p.description),
        h('div', { class: 'buy' }, h('span', { class: 'price' }, money.format(p.price)), control));
    }),
  );
}

function cartLines() {
  return app.products
    .filter((p) => app.cart[p.sku] > 0)
    .map((p) => ({ ...p, quantity: app.cart[p.sku] }));
}

function cartTotal(lines) {
  return lines.reduce((sum, line) => sum + Math.round(line.price * 100) * line.quantity, 0) / 100;
}

function setQuantity(sku, quantity) {
  if (quantity > 0) app.cart[sku] = Math.min(quantity, 99);
  else delete app.cart[sku];
  store('shop.cart', app.cart);
  renderProducts();
  renderCart();
}

function renderCart() {
  const lines = cartLines();
  const count = lines.reduce((sum, line) => sum + line.quantity, 0);
  $('#cart-count').textContent = String(count);
  $('#cart-empty').hidden = lines.length > 0;
  $('#cart-lines').replaceChildren(
    ...lines.map((line) =>
      h('li', {},
        h('span', {}, `${line.quantity} × ${line.name}`),
        h('span', {}, money.format(line.price * line.quantity)))),
  );
  const total = money.format(cartTotal(lines));
  $('#cart-total').textContent = total;
  const button = $('#place-order');
  if (!button.dataset.busy) {
    button.disabled = lines.length === 0;
    button.textContent = lines.length ? `Place order · ${total}` : 'Place order';
  }
}

/** A fresh Idempotency-Key (crypto.randomUUID needs a secure context; this does not). */
function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function placeOrder(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const error = $('#checkout-error');
  error.hidden = true;
  const customer = {
    name: form.elements.name.value.trim(),
    email: form.elements.email.value.trim(),
    phone: form.elements.phone.value.trim(),
  };
  const missing = Object.entries(customer).filter(([field]) => !form.elements[field].checkValidity() || !customer[field]);
  for (const field of ['name', 'email', 'phone']) {
    form.elements[field].setAttribute('aria-invalid', String(missing.some(([f]) => f === field)));
  }
  if (missing.length) {
    error.textContent = `Please give a valid ${missing.map(([field]) => field).join(', ')}.`;
    error.hidden = false;
    return;
  }
  const lines = cartLines();
  if (!lines.length) return;
  const body = JSON.stringify({
    customer,
    items: lines.map((line) => ({ sku: line.sku, quantity: line.quantity, unitPrice: line.price })),
  });
  if (!app.attempt || app.attempt.body !== body) app.attempt = { body, key: newKey() };
  const button = $('#place-order');
  button.dataset.busy = 'true';
  button.disabled = true;
  button.textContent = 'Placing your order…';
  try {
    const order = await request(`${app.config.orderUrl}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': app.attempt.key },
      body,
    }, 'The order service');
    app.customer = customer;
    store('shop.customer', customer);
    app.cart = {};
    store('shop.cart', app.cart);
    app.attempt = null;
    location.hash = `#/orders/${order.orderId}`;
  } catch (problem) {
    error.textContent = `Your order was not placed. ${problem.message}`;
    error.hidden = false;
  } finally {
    delete button.dataset.busy;
    renderCart();
  }
}

// ---------------------------------------------------------------------------------------
// The order page: summary, payment, the live timeline and the live pushes

async function showOrder(id) {
  const visit = app.visit;
  document.title = `Order ${shortId(id)} · Shop`;
  $('#order-error').hidden = true;
  $('#order-body').hidden = true;
  $('#order-retry').onclick = () => showOrder(id);
  let order;
  try {
    order = await request(`${app.config.orderUrl}/orders/${id}`, {}, 'The order service');
  } catch (problem) {
    if (visit !== app.visit) return;
    $('#order-error-text').textContent = problem.status === 404 ? `There is no order ${shortId(id)}.` : problem.message;
    $('#order-error').hidden = false;
    return;
  }
  if (visit !== app.visit) return;
  window.scrollTo(0, 0);
  renderOrder(order);
  $('#order-body').hidden = false;
  followStages(order);
  followPushes(order.orderId);
}

function renderOrder(order) {
  app.order = { ...order, reached: new Map() };
  $('#order-title').textContent = `Order ${shortId(order.orderId)}`;
  $('#order-meta').textContent = `Placed ${when(order.createdAt)} by ${order.customer.name} · ${order.customer.email}`;
  const names = new Map(app.products.map((p) => [p.sku, p.name]));
  $('#order-items').replaceChildren(
    ...order.items.map((item) =>
      h('li', {},
        h('span', {}, `${item.quantity} × ${names.get(item.sku) || item.sku}`),
        h('span', {}, money.format(item.unitPrice * item.quantity)))),
  );
  $('#order-total').textContent = money.format(order.total);
  $('#pay').href = order.paymentUrl;
  $('#pushes').replaceChildren();
  app.pushIds = new Set();
  renderPushCount();
  for (const entry of order.history) app.order.reached.set(entry.stage, entry.at);
  renderTimeline();
}

function reach(stage, at) {
  if (!app.order || app.order.reached.has(stage)) return;
  app.order.reached.set(stage, at);
  renderTimeline();
}

function renderTimeline() {
  const { reached } = app.order;
  const current = STAGES.find((s) => !reached.has(s.stage));
  $('#timeline').replaceChildren(
    ...STAGES.map((s, i) => {
      const done = reached.has(s.stage);
      const state = done ? 'done' : s === current ? 'current' : 'pending';
      return h('li', { class: state, 'data-stage': s.stage, 'aria-current': state === 'current' ? 'step' : false },
        h('span', { class: 'dot', 'aria-hidden': 'true' }),
        done ? h('time', { datetime: reached.get(s.stage) }, when(reached.get(s.stage))) : null,
        h('div', { class: 'label' }, `${i + 1}. ${s.label}`),
        h('div', { class: 'detail' }, done ? s.detail : state === 'current' ? 'Next' : ''));
    }),
  );
  const paidAt = reached.get('paymentMade');
  const card = $('#payment-card');
  card.dataset.paid = String(Boolean(paidAt));
  $('#payment-status').textContent = paidAt
    ? `Paid ${money.format(app.order.total)} · ${when(paidAt)}`
    : `Awaiting your payment of ${money.format(app.order.total)}.`;
  $('#pay').hidden = Boolean(paidAt);
  $('#pay').textContent = `Pay ${money.format(app.order.total)}`;
}

function setLive(selector, state, text) {
  const pill = $(selector);
  pill.dataset.state = state;
  pill.textContent = text;
}

/** The order's stages from order's live stream; it ends once the order is delivered. */
function followStages(order) {
  if (app.order.reached.has('delivered')) {
    setLive('#stage-live', 'done', 'Complete');
    return;
  }
  const source = new EventSource(`${app.config.orderUrl}/orders/${order.orderId}/events`);
  app.streams.push(source);
  source.onopen = () => setLive('#stage-live', 'live', 'Live');
  source.addEventListener('stage', (event) => {
    const data = JSON.parse(event.data);
    reach(data.stage, data.at);
    if (data.done) {
      source.close();
      setLive('#stage-live', 'done', 'Complete');
    }
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      setLive('#stage-live', 'reconnecting', 'Offline');
      showBanner('Live updates stopped: the order service cannot be reached. Reload the page to try again.');
    } else {
      setLive('#stage-live', 'reconnecting', 'Reconnecting…');
    }
  };
}

/** The phone's pushes for the order, from the mobile service's live stream. */
function followPushes(orderId) {
  const source = new EventSource(`/api/notifications/stream?orderId=${orderId}`);
  app.streams.push(source);
  // Pushes already stored come at once after connecting; only later ones are animated.
  let openedAt = Infinity;
  source.onopen = () => {
    openedAt = Date.now();
    setLive('#push-live', 'live', 'Live');
  };
  source.addEventListener('push', (event) => addPush(JSON.parse(event.data), Date.now() - openedAt > 500));
  source.onerror = () => setLive('#push-live', 'reconnecting', 'Reconnecting…');
}

function addPush(push, live) {
  if (app.pushIds.has(push.id)) return;
  app.pushIds.add(push.id);
  const item = h('li', { class: `push${live ? ' new' : ''}`, 'data-stage': push.stage },
    h('span', { class: 'icon', 'aria-hidden': 'true' }, 'S'),
    h('strong', {}, push.title),
    h('time', { datetime: push.receivedAt }, when(push.receivedAt)),
    h('p', {}, push.body));
  $('#pushes').prepend(item);
  renderPushCount();
}

function renderPushCount() {
  $('#push-count').textContent = String(app.pushIds.size);
  $('#pushes-empty').hidden = app.pushIds.size > 0;
}

// ---------------------------------------------------------------------------------------
// My orders

async function showOrders() {
  const visit = app.visit;
  document.title = 'My orders · Shop';
  const form = $('#orders-form');
  if (!form.elements.email.value) form.elements.email.value = app.customer.email || '';
  const email = form.elements.email.value.trim();
  $('#orders-error').hidden = true;
  $('#orders-empty').hidden = true;
  if (!email) {
    $('#orders').replaceChildren();
    return;
  }
  let orders;
  try {
    orders = await request(`${app.config.orderUrl}/orders?email=${encodeURIComponent(email)}`, {}, 'The order service');
  } catch (problem) {
    if (visit !== app.visit) return;
    $('#orders-error').textContent = problem.message;
    $('#orders-error').hidden = false;
    return;
  }
  if (visit !== app.visit) return;
  $('#orders-empty').hidden = orders.length > 0;
  $('#orders').replaceChildren(
    ...orders.map((order) => {
      const last = order.history[order.history.length - 1];
      const step = last ? last.step : 0;
      const count = order.items.reduce((sum, item) => sum + item.quantity, 0);
      return h('li', { 'data-order-id': order.orderId },
        h('a', { class: 'card', href: `#/orders/${order.orderId}` },
          h('strong', {}, `Order ${shortId(order.orderId)}`),
          h('strong', { class: 'amount' }, money.format(order.total)),
          h('span', { class: 'stage', 'data-stage': last ? last.stage : '' }, last ? STAGE_LABEL[last.stage] : 'Unknown'),
          h('span', { class: 'when' }, `${when(order.createdAt)} · ${count} item${count === 1 ? '' : 's'}`),
          h('span', { class: 'progress', role: 'img', 'aria-label': `step ${step} of ${STAGES.length}` },
            h('span', { style: `width:${(step / STAGES.length) * 100}%` }))));
    }),
  );
}

// ---------------------------------------------------------------------------------------

async function boot() {
  $('#checkout').addEventListener('submit', placeOrder);
  $('#orders-form').addEventListener('submit', (event) => {
    event.preventDefault();
    if (location.hash === '#/orders') showOrders();
    else location.hash = '#/orders';
  });
  try {
    [app.config, app.products] = await Promise.all([
      request('/api/config', {}, 'The app'),
      request('/api/products', {}, 'The catalogue'),
    ]);
  } catch (problem) {
    showBanner(`The app cannot start. ${problem.message}`);
    return;
  }
  window.addEventListener('hashchange', route);
  route();
}

boot();
