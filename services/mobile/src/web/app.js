// The customer's app: catalogue, cart and checkout; the order page, whose timeline and push
// notifications advance live over Server-Sent Events; the customer's orders; signing in and
// creating an account. Plain browser JavaScript, no build step: the mobile service embeds and
// serves this file as it is. It uses /assets/ui.js (h, ui): the token, ui.api, ui.stream.
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
  // The name and phone last ordered with, per account.
  details: readStored('shop.details', {}),
  // The Idempotency-Key of the order being placed: a retry of the same order reuses it.
  attempt: null,
  // Every route change bumps it, so answers for a page already left are dropped.
  visit: 0,
  streams: [],
  // Where to go once signed in.
  next: '#/',
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

/** ui.api (the token, JSON), throwing a Problem naming what went wrong. A 401 has already
 * dropped the token and shown the sign-in (ui.onSignedOut, below): its Problem says so. */
async function request(url, options, who) {
  try {
    return await ui.api(url, options);
  } catch (problem) {
    if (!(problem instanceof ui.ApiError)) throw problem;
    if (problem.unreachable) throw new Problem(`${who} cannot be reached. Check your connection and try again.`, 0);
    if (problem.status === 401) throw new Problem('Please sign in again: your session has ended.', 401);
    const busy = problem.status >= 500 ? ' The shop is having trouble; try again in a moment.' : '';
    throw new Problem(`${who}: ${problem.reason}.${busy}`, problem.status);
  }
}

function showBanner(text) {
  const banner = $('#banner');
  banner.textContent = text;
  banner.hidden = !text;
}

// ---------------------------------------------------------------------------------------
// Routing: #/ (shop), #/cart, #/orders, #/orders/{id} (signed in), #/sign-in

function route() {
  app.visit += 1;
  closeStreams();
  renderAccount();
  const hash = location.hash || '#/';
  const order = hash.match(/^#\/orders\/([0-9a-fA-F-]{36})$/);
  if (hash === '#/sign-in') {
    if (ui.session.get()) location.replace('#/');
    else showSignIn(app.next);
    return;
  }
  const name = order ? 'order' : hash === '#/orders' ? 'orders' : 'shop';
  // A customer's orders are theirs only: sign in first, then come back here.
  if (name !== 'shop' && !ui.session.get()) {
    showSignIn(hash);
    return;
  }
  showView(name);
  if (order) showOrder(order[1].toLowerCase());
  else if (name === 'orders') showOrders();
  else showShop(hash === '#/cart');
}

function showView(name) {
  for (const view of document.querySelectorAll('.view')) view.hidden = view.id !== `view-${name}`;
  for (const link of document.querySelectorAll('[data-nav]')) {
    link.classList.toggle('active', link.dataset.nav === name || (name === 'order' && link.dataset.nav === 'orders'));
  }
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
  const signedIn = ui.session.get();
  const form = $('#checkout');
  const details = (signedIn && app.details[signedIn.subject]) || {};
  for (const field of ['name', 'phone']) {
    if (!form.elements[field].value) form.elements[field].value = details[field] || '';
  }
  $('#checkout-account').textContent = signedIn
    ? `Ordering as ${signedIn.subject}.`
    : 'You sign in or create an account when you place the order.';
  if (toCart) $('#checkout').scrollIntoView({ behavior: 'smooth' });
  else window.scrollTo(0, 0);
}

/** The product's picture: its initials on a colour of its own (.tile-0 … .tile-7 in app.css). */
function tile(product, index) {
  const initials = product.name.split(/\s+/).map((word) => word[0]).join('').slice(0, 2).toUpperCase();
  return h('div', { class: `tile tile-${index % 8}`, 'aria-hidden': 'true' }, initials);
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
    button.textContent = !lines.length ? 'Place order' : ui.session.get() ? `Place order · ${total}` : `Sign in to order · ${total}`;
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
  const signedIn = ui.session.get();
  if (!signedIn) {
    // Checkout needs an account; what was typed stays in the form for the way back.
    showSignIn('#/cart', 'Sign in or create an account to place your order.');
    return;
  }
  // The email is the account's: order takes it from the token.
  const customer = {
    name: form.elements.name.value.trim(),
    phone: form.elements.phone.value.trim(),
  };
  const missing = Object.entries(customer).filter(([field]) => !form.elements[field].checkValidity() || !customer[field]);
  for (const field of ['name', 'phone']) {
    form.elements[field].setAttribute('aria-invalid', String(missing.some(([f]) => f === field)));
  }
  if (missing.length) {
    error.textContent = `Please give a valid ${missing.map(([field]) => field).join(', ')}.`;
    error.hidden = false;
    return;
  }
  const lines = cartLines();
  if (!lines.length) return;
  // No unitPrice: order prices the items from its catalogue.
  const body = JSON.stringify({
    customer,
    items: lines.map((line) => ({ sku: line.sku, quantity: line.quantity })),
  });
  if (!app.attempt || app.attempt.body !== body || app.attempt.subject !== signedIn.subject) {
    app.attempt = { body, subject: signedIn.subject, key: newKey() };
  }
  const button = $('#place-order');
  button.dataset.busy = 'true';
  button.disabled = true;
  button.textContent = 'Placing your order…';
  try {
    const order = await request(`${app.config.orderUrl}/orders`, {
      method: 'POST',
      headers: { 'idempotency-key': app.attempt.key },
      body,
    }, 'The order service');
    app.details[signedIn.subject] = customer;
    store('shop.details', app.details);
    app.cart = {};
    store('shop.cart', app.cart);
    app.attempt = null;
    location.hash = `#/orders/${order.orderId}`;
  } catch (problem) {
    if (problem.status === 401) return; // the sign-in is showing; the cart and form are kept
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
  document.title = `Order ${ui.shortId(id)} · Shop`;
  $('#order-error').hidden = true;
  $('#order-body').hidden = true;
  $('#order-retry').onclick = () => showOrder(id);
  let order;
  try {
    order = await request(`${app.config.orderUrl}/orders/${id}`, {}, 'The order service');
  } catch (problem) {
    if (visit !== app.visit || problem.status === 401) return;
    // Another customer's order is a 404 too: it is not in this account.
    $('#order-error-text').textContent = problem.status === 404
      ? `There is no order ${ui.shortId(id)} in your account.`
      : problem.message;
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
  $('#order-title').textContent = `Order ${ui.shortId(order.orderId)}`;
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

/** The order's stages from order's live stream (ui.stream: Server-Sent Events read with
 * fetch, so that the token goes with them); closed once the order is delivered. Stages come
 * from the first on every connection; those already shown change nothing. */
function followStages(order) {
  if (app.order.reached.has('delivered')) {
    setLive('#stage-live', 'done', 'Complete');
    return;
  }
  const stream = ui.stream(`${app.config.orderUrl}/orders/${order.orderId}/events`, {
    onOpen: () => setLive('#stage-live', 'live', 'Live'),
    on: {
      stage: (data) => {
        const stage = JSON.parse(data);
        reach(stage.stage, stage.at);
        if (stage.done) {
          stream.close();
          setLive('#stage-live', 'done', 'Complete');
        }
      },
    },
    onError: (problem, retrying) => {
      if (retrying) {
        setLive('#stage-live', 'reconnecting', 'Reconnecting…');
      } else if (problem.status !== 401) {
        setLive('#stage-live', 'reconnecting', 'Offline');
        showBanner(`Live updates stopped: the order service answered: ${problem.reason}. Reload the page to try again.`);
      }
    },
  });
  app.streams.push(stream);
}

/** The phone's pushes for the order, from the mobile service's live stream. */
function followPushes(orderId) {
  // Pushes already stored come at once after connecting; only later ones are animated.
  let openedAt = Infinity;
  const stream = ui.stream(`/api/notifications/stream?orderId=${orderId}`, {
    onOpen: () => {
      openedAt = Date.now();
      setLive('#push-live', 'live', 'Live');
    },
    on: { push: (data) => addPush(JSON.parse(data), Date.now() - openedAt > 500) },
    onError: (problem, retrying) => {
      if (problem.status !== 401) setLive('#push-live', 'reconnecting', retrying ? 'Reconnecting…' : 'Offline');
    },
  });
  app.streams.push(stream);
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
  $('#orders-who').textContent = `The orders of ${ui.session.get().subject}, newest first.`;
  $('#orders-error').hidden = true;
  $('#orders-empty').hidden = true;
  let orders;
  try {
    // The signed-in customer's own orders: the token says whose.
    orders = await request(`${app.config.orderUrl}/orders`, {}, 'The order service');
  } catch (problem) {
    if (visit !== app.visit || problem.status === 401) return;
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
          h('strong', {}, `Order ${ui.shortId(order.orderId)}`),
          h('strong', { class: 'amount' }, money.format(order.total)),
          h('span', { class: 'stage', 'data-stage': last ? last.stage : '' }, last ? STAGE_LABEL[last.stage] : 'Unknown'),
          h('span', { class: 'when' }, `${when(order.createdAt)} · ${count} item${count === 1 ? '' : 's'}`),
          h('span', { class: 'progress', role: 'img', 'aria-label': `step ${step} of ${STAGES.length}` },
            h('span', { style: { width: `${(step / STAGES.length) * 100}%` } }))));
    }),
  );
}

// ---------------------------------------------------------------------------------------
// The account: sign in or create one (ui.signInForm, on mobile's /auth/…), sign out

/** The sign-in view, in place of the page asked for; once signed in, `next` is shown. */
function showSignIn(next, note) {
  app.visit += 1;
  closeStreams();
  app.next = next && next !== '#/sign-in' ? next : '#/';
  document.title = 'Sign in · Shop';
  showView('sign-in');
  $('#sign-in-note').textContent = note
    || (app.next === '#/' ? 'Sign in, or create an account with your email: your orders, their mails and notifications are kept with it.'
      : 'Sign in to see your orders, or create an account with your email.');
  const form = ui.signInForm({
    as: 'customer',
    register: true,
    title: 'Sign in or create an account',
    onSignedIn: () => {
      const target = app.next;
      app.next = '#/';
      renderAccount();
      if (location.hash === target || (!location.hash && target === '#/')) route();
      else location.hash = target;
    },
  });
  $('#sign-in').replaceChildren(form);
  window.scrollTo(0, 0);
  form.elements.email.focus();
}

/** The header: "Signed in as … · Sign out", or a link to sign in. */
function renderAccount() {
  const signedIn = ui.session.get();
  $('#account').replaceChildren(signedIn
    ? ui.signedInAs(signedIn)
    : h('a', { href: '#/sign-in', 'data-nav': 'sign-in' }, 'Sign in'));
  renderCart();
}

// The token was refused (expired, or the keys changed), or the customer signed out.
ui.onSignedOut(({ reason }) => {
  app.attempt = null;
  closeStreams();
  renderAccount();
  if (reason === 'signed-out') {
    // The next person on this phone starts with an empty checkout.
    $('#checkout').reset();
    if (!location.hash || location.hash === '#/') route();
    else location.hash = '#/';
    return;
  }
  showSignIn(location.hash || '#/', 'Please sign in again: your session has ended.');
});

// ---------------------------------------------------------------------------------------

async function boot() {
  $('#checkout').addEventListener('submit', placeOrder);
  try {
    app.config = await request('/api/config', { auth: false }, 'The app');
    // The catalogue is order's, and public.
    app.products = await request(`${app.config.orderUrl}/products`, { auth: false }, 'The catalogue');
  } catch (problem) {
    showBanner(`The app cannot start. ${problem.message}`);
    return;
  }
  window.addEventListener('hashchange', route);
  route();
}

boot();
