'use strict';
// The mails the SMTP server received (GET /api/emails, newest first), checked every two
// seconds and redrawn only when something changed. Mails not opened yet are bold.
// Whoever reads signs in first (ui.signInForm, /assets/ui.js): a customer with their email
// and password gets the mail sent to them; the operator gets all mail. A 401 (an expired
// token) brings the sign-in back.
let mails = [];
let selected = null;
let shown = '';
let opened = new Set();
const $ = (id) => document.getElementById(id);

/** Who reads: a customer or the operator (a token for another role reads nothing here). */
function reader() {
  const session = ui.session.get();
  return session && (session.role === 'customer' || session.role === 'operator') ? session : null;
}

/** Which mails this reader opened, kept per reader for this tab. */
const openedKey = () => `opened:${reader() ? reader().subject : ''}`;


function when(at, long) {
  const date = new Date(at);
  if (long) return date.toLocaleString([], { dateStyle: 'full', timeStyle: 'medium' });
  return new Date().toDateString() === date.toDateString()
    ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })
    : date.toLocaleDateString([], { dateStyle: 'medium' });
}

function banner(text) {
  $('banner').textContent = text;
  $('banner').hidden = !text;
}

async function load() {
  if (!reader()) return;
  try {
    mails = await ui.api('/api/emails');
    banner('');
  } catch (error) {
    if (error.status === 401) return; // the sign-in is showing
    banner(error.unreachable ? 'The mailbox cannot be reached. Retrying…' : `Cannot read mail: ${error.message}.`);
    return;
  }
  render();
}

function matching() {
  const words = $('search').value.toLowerCase().split(/\s+/).filter(Boolean);
  return mails.filter((m) => {
    const text = `${m.subject} ${m.to} ${m.from} ${m.body} ${m.orderId || ''}`.toLowerCase();
    return words.every((w) => text.includes(w));
  });
}

function render(force = false) {
  const visible = matching();
  if (!selected && visible.length && window.matchMedia('(min-width: 48.01rem)').matches) select(visible[0].messageId, false);
  const signature = JSON.stringify([visible.map((m) => m.messageId), selected, [...opened]]);
  if (!force && signature === shown) return;
  shown = signature;
  $('count').textContent = `${mails.length} mail${mails.length === 1 ? '' : 's'} · ${mails.length - mails.filter((m) => opened.has(m.messageId)).length} unread`;
  $('mails').replaceChildren(...visible.map((m) =>
    h('li', {
      'data-message-id': m.messageId,
      'data-order-id': m.orderId || '',
      class: opened.has(m.messageId) ? null : 'unread',
      'aria-current': m.messageId === selected ? 'true' : false,
    }, h('button', { type: 'button', onclick: () => select(m.messageId, true) },
      h('span', { class: 'from' }, `To ${m.to}`),
      h('time', { datetime: m.receivedAt }, when(m.receivedAt)),
      h('span', { class: 'subject' }, m.subject || '(no subject)'),
      h('span', { class: 'snippet' }, m.body.slice(0, 140))))));
  if (!visible.length) $('mails').append(h('li', { class: 'empty' }, mails.length ? 'No mail matches.' : 'No mail yet.'));
  const mail = mails.find((m) => m.messageId === selected);
  $('reading').replaceChildren(mail
    ? h('article', { 'data-message-id': mail.messageId },
        h('h2', {}, mail.subject || '(no subject)'),
        h('dl', {},
          h('dt', {}, 'From'), h('dd', {}, mail.from),
          h('dt', {}, 'To'), h('dd', {}, mail.to),
          h('dt', {}, 'Received'), h('dd', {}, when(mail.receivedAt, true)),
          mail.orderId ? [h('dt', {}, 'Order'), h('dd', {}, mail.orderId)] : null),
        h('div', { class: 'body' }, mail.body))
    : h('p', { class: 'empty' }, mails.length ? 'Pick a mail to read it.' : 'No mail yet. Mail sent over SMTP to this mailbox appears here.'));
}

function select(messageId, byHand) {
  selected = messageId;
  opened.add(messageId);
  sessionStorage.setItem(openedKey(), JSON.stringify([...opened]));
  $('main').dataset.reading = String(byHand);
  if (byHand) render(true);
}

$('back').addEventListener('click', () => {
  $('main').dataset.reading = 'false';
  selected = null;
  render(true);
});
$('search').addEventListener('input', () => render(true));

// --- signing in ----------------------------------------------------------------------

function showSignIn(note) {
  mails = [];
  selected = null;
  shown = '';
  $('main').hidden = true;
  $('search').hidden = true;
  $('count').textContent = '';
  $('title').textContent = 'Mailbox';
  $('account').replaceChildren();
  const customer = ui.signInForm({
    as: 'customer',
    title: 'Your mail',
    intro: note || 'Sign in with the email and password of your Shop account.',
    onSignedIn: start,
  });
  const operator = ui.signInForm({
    as: 'operator',
    title: 'All mail',
    intro: 'The operator reads every mail the shop sent (the latest 200).',
    onSignedIn: start,
  });
  $('sign-in-forms').replaceChildren(customer, operator);
  $('sign-in').hidden = false;
  customer.elements.email.focus();
}

function start() {
  const session = reader();
  try {
    opened = new Set(JSON.parse(sessionStorage.getItem(openedKey()) || '[]'));
  } catch {
    opened = new Set();
  }
  $('sign-in').hidden = true;
  $('main').hidden = false;
  $('search').hidden = false;
  $('title').textContent = session.role === 'operator' ? 'Mailbox · all mail' : 'Mailbox';
  $('account').replaceChildren(ui.signedInAs(session));
  banner('');
  render(true);
  load();
}

ui.onSignedOut(({ reason }) => {
  banner('');
  showSignIn(reason === 'refused' ? 'Your session has ended: please sign in again.' : null);
});

if (reader()) start();
else showSignIn();
setInterval(load, 2000);
