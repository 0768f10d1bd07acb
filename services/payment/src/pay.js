// The hosted payment page: pays with the secret its link carries (the `secret` parameter of
// the page's address), so only whoever holds the link can pay. Served as a file, not inline,
// so the page's Content-Security-Policy needs no 'unsafe-inline'.
'use strict';
const card = document.querySelector('.card');
const button = document.getElementById('pay');
const result = document.getElementById('result');
const status = document.getElementById('status');
const returnUrl = document.getElementById('back').href;
const secret = new URLSearchParams(location.search).get('secret') || '';

function say(kind, text) {
  result.dataset.kind = kind;
  result.textContent = text;
}

function alreadyPaid(text) {
  card.dataset.state = 'paid';
  button.disabled = true;
  button.textContent = 'Already paid';
  status.textContent = 'Paid';
  say('info', text);
}

if (card.dataset.state === 'paid') {
  const paidAt = new Date(card.dataset.paidAt).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
  alreadyPaid(`This payment is already paid (${paidAt}). Nothing more to do.`);
}

button.addEventListener('click', async () => {
  button.disabled = true;
  button.textContent = 'Paying…';
  say('info', 'Contacting your bank…');
  let response, body = {};
  try {
    response = await fetch(`/payments/${card.dataset.payment}/pay`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ secret }),
    });
    body = await response.json().catch(() => ({}));
  } catch {
    button.disabled = false;
    button.textContent = 'Try again';
    say('error', 'The payment service cannot be reached. You have not been charged; try again.');
    return;
  }
  if (response.ok) {
    card.dataset.state = 'paid';
    button.textContent = 'Paid';
    status.textContent = 'Paid';
    say('ok', 'Payment received, thank you! Taking you back to your order…');
    setTimeout(() => location.assign(returnUrl), 1500);
  } else if (response.status === 409) {
    alreadyPaid('This payment is already paid: it cannot be paid twice. Nothing more to do.');
  } else {
    button.disabled = false;
    button.textContent = 'Try again';
    say('error', `Payment failed: ${body.error || `the gateway answered ${response.status}`}. You have not been charged.`);
  }
});
