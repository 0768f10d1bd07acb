'use strict';
// The mails the SMTP server received (GET /api/emails, newest first), checked every two
// seconds and redrawn only when something changed. Mails not opened yet are bold.
let mails = [];
let selected = null;
let shown = '';
const opened = new Set(JSON.parse(sessionStorage.getItem('opened') || '[]'));
const $ = (id) => document.getElementById(id);


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
  try {
    const response = await fetch('/api/emails');
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || `the mailbox answered ${response.status}`);
    mails = body;
    banner('');
  } catch (error) {
    banner(error instanceof TypeError ? 'The mailbox cannot be reached. Retrying…' : `Cannot read mail: ${error.message}`);
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
  sessionStorage.setItem('opened', JSON.stringify([...opened]));
  $('main').dataset.reading = String(byHand);
  if (byHand) render(true);
}

$('back').addEventListener('click', () => {
  $('main').dataset.reading = 'false';
  selected = null;
  render(true);
});
$('search').addEventListener('input', () => render(true));
load();
setInterval(load, 2000);
