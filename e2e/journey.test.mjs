// The customer's journey through Shop's browser pages, clicked in headless Chromium: create
// an account in the app, add to cart, check out, pay on the gateway's page, sign in as the
// courier to ship and deliver, and watch the order page reach "delivered" live with 7
// pushes, 7 mails in the mailbox (signed in as the customer, then as the operator) and the
// audit trail on the operations page (signed in as the operator). Every page runs under the
// services' Content-Security-Policy: no page may report a violation. Starts the real system
// (`shop up`) on free ports with a fresh data folder (whose secrets folder holds the staff's
// passwords), and saves a screenshot of each page to docs/screenshots/.
//
//   SHOP_BIN         the binary (default ../target/debug/shop)
//   KCAT             kcat, which writes a record nobody can read for the dead letters (default kcat)
//   CHROMIUM         the browser (default /usr/bin/chromium; never downloaded)
//   SCREENSHOTS_DIR  where screenshots go (default ../docs/screenshots)
//   TEST_LOG=1       show the system's output

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const SHOP_BIN = process.env.SHOP_BIN || path.join(here, '..', 'target', 'debug', 'shop');
const KCAT = process.env.KCAT || 'kcat';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOTS = process.env.SCREENSHOTS_DIR || path.join(here, '..', 'docs', 'screenshots');
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 860 };
const PATIENCE = 60_000;

const CUSTOMER = { name: 'Ada Lovelace', email: 'ada@example.com', password: 'analytical-engine-1843' };

let system;
let browser;
let profile;
const pageErrors = [];
// Content-Security-Policy violations, from the pages' own `securitypolicyviolation` events
// and from the console, where Chromium reports what it refused.
const violations = [];
const consoleErrors = [];

/** `count` ports that are free now (all held open together, so they differ). */
async function freePorts(count) {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise((resolve, reject) => {
      const server = net.createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve(server));
    })),
  );
  const ports = servers.map((server) => server.address().port);
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

/** `shop up` on free ports with a fresh data folder; resolves once every service is ready. */
async function startShop() {
  const [broker, order1, order2, payment1, payment2, delivery, notification, logging, mobile, email, smtp] =
    await freePorts(11);
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'shop-e2e-data-'));
  const child = spawn(SHOP_BIN, [
    'up', '--data-dir', dataDir, '--broker-port', String(broker),
    '--order-ports', `${order1},${order2}`, '--payment-ports', `${payment1},${payment2}`,
    '--delivery-port', String(delivery), '--notification-port', String(notification),
    '--logging-port', String(logging), '--mobile-port', String(mobile),
    '--email-port', String(email), '--smtp-port', String(smtp),
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  const output = [];
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (error) => resolve({ code: `${error.message}; set SHOP_BIN or run cargo build -p shop` }));
  });
  const ready = new Promise((resolve) => {
    const read = (chunk) => {
      const text = chunk.toString();
      output.push(text);
      if (process.env.TEST_LOG) process.stderr.write(text);
      if (output.join('').includes('Shop is up')) resolve();
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
  });
  const url = (port) => `http://localhost:${port}`;
  let timer;
  const started = await Promise.race([
    ready.then(() => 'ready'),
    exited.then(({ code, signal }) => `exited (${code ?? signal})`),
    new Promise((resolve) => { timer = setTimeout(() => resolve('not ready within 120 s'), 120_000); }),
  ]);
  clearTimeout(timer);
  const shop = {
    child, exited, dataDir, output,
    broker: `localhost:${broker}`,
    mobile: url(mobile), order: url(order1), payment: url(payment1),
    delivery: url(delivery), email: url(email), logging: url(logging),
  };
  if (started !== 'ready') {
    await stopShop(shop);
    throw new Error(`shop up ${started}:\n${output.join('').slice(-4000)}`);
  }
  return shop;
}

/** Stops `shop up` as Ctrl-C does (SIGKILL after 30 s) and removes its data. */
async function stopShop(shop) {
  if (shop.child.exitCode === null && shop.child.signalCode === null) {
    shop.child.kill('SIGTERM');
    const timer = setTimeout(() => shop.child.kill('SIGKILL'), 30_000);
    await shop.exited;
    clearTimeout(timer);
  }
  rmSync(shop.dataDir, { recursive: true, force: true });
}

/** Waits until `predicate(arg)` is true in the page, failing with `what` and the page's text. */
async function until(page, what, predicate, arg) {
  try {
    await page.waitForFunction(predicate, arg, { timeout: PATIENCE, polling: 100 });
  } catch (error) {
    const text = await page.locator('body').innerText().catch(() => '(no page)');
    const refused = violations.length ? `\n--- CSP violations ---\n${violations.join('\n')}` : '';
    throw new Error(`${what}: not within ${PATIENCE / 1000} s on ${page.url()}\n--- page ---\n${text.slice(0, 3000)}${refused}`, { cause: error });
  }
}

/** A staff password from the system's secrets folder (`shop up` generated it). */
function staffPassword(who) {
  return readFileSync(path.join(system.dataDir, 'secrets', `${who}-password`), 'utf8').trim();
}

/** A customer's token, minted by `shop token` with the system's key, as if they signed in. */
async function customerToken(email) {
  const { stdout } = await promisify(execFile)(SHOP_BIN, ['token', '--role', 'customer', '--email', email, '--data-dir', system.dataDir]);
  return stdout.trim();
}

/** An order placed straight on the order API, as another customer's app would. */
async function placeOrder(token, name, items) {
  const response = await fetch(`${system.order}/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'idempotency-key': `e2e-${Math.random()}` },
    body: JSON.stringify({ customer: { name, phone: '+1 202 555 0100' }, items }),
  });
  assert.equal(response.status, 201, await response.clone().text());
  return response.json();
}

async function newPage(viewport) {
  const page = await browser.newPage();
  await page.setViewportSize(viewport);
  page.on('pageerror', (error) => pageErrors.push(`${page.url()}: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const text = `${page.url()}: ${message.text()}`;
    if (/content security policy|securitypolicyviolation/i.test(message.text())) violations.push(text);
    else consoleErrors.push(text);
  });
  return page;
}

/** Signs in on a page's sign-in form (ui.signInForm): `as` customer, courier or operator. */
async function signIn(page, as, password, { email, register = false } = {}) {
  const form = page.locator(`form[data-sign-in="${as}"]`);
  await form.waitFor({ timeout: PATIENCE });
  if (email) await form.getByLabel('Email').fill(email);
  await form.getByLabel('Password').fill(password);
  await form.locator(`[data-action="${register ? 'register' : 'sign-in'}"]`).click();
  const outcome = await Promise.race([
    form.waitFor({ state: 'hidden', timeout: PATIENCE }).then(() => 'signed in'),
    form.locator('.error').waitFor({ state: 'visible', timeout: PATIENCE }).then(() => 'refused'),
  ]);
  if (outcome !== 'signed in') throw new Error(`signing in as ${as} failed: ${await form.locator('.error').innerText()}`);
}

async function screenshot(page, name, fullPage = true) {
  await page.screenshot({ path: path.join(SCREENSHOTS, name), fullPage, animations: 'disabled' });
}

before(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  system = await startShop();
  profile = mkdtempSync(path.join(os.tmpdir(), 'shop-e2e-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    locale: 'en-GB',
    timezoneId: 'Europe/London',
  });
  // Every page reports what its Content-Security-Policy refused (init scripts are not
  // subject to the page's CSP).
  await browser.exposeBinding('reportViolation', ({ page }, text) => violations.push(`${page.url()}: ${text}`));
  await browser.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => {
      window.reportViolation(`${event.violatedDirective} refused ${event.blockedURI || 'inline'} (${event.sourceFile || ''}:${event.lineNumber || ''})`);
    });
  });
});

after(async () => {
  if (browser) await browser.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  if (system) await stopShop(system);
});


test('a customer orders, pays and follows the order to the door, all by clicking', async (t) => {
  // Each step needs the one before: after a failure the rest are skipped, not timed out.
  let failed = false;
  const step = (name, body) => t.test(name, async (s) => {
    if (failed) return s.skip('an earlier step failed');
    try {
      await body();
    } catch (error) {
      failed = true;
      throw error;
    }
  });
  const phone = await newPage(PHONE);
  let orderId;
  let grace;
  let second;

  await step('the APIs refuse callers without a token; the catalogue and the pages\' settings are public', async () => {
    const refused = [
      `${system.order}/orders`, `${system.delivery}/deliveries`, `${system.email}/api/emails`,
      `${system.logging}/logs`, `${system.logging}/api/lag`, `${system.logging}/api/services`,
      `${system.mobile}/api/notifications?orderId=00000000-0000-0000-0000-000000000000`,
    ];
    for (const url of refused) {
      const response = await fetch(url);
      assert.equal(response.status, 401, url);
      assert.match(response.headers.get('www-authenticate') || '', /^Bearer/, url);
      assert.equal(typeof (await response.json()).error, 'string', `${url} says why in JSON`);
    }
    const customer = await customerToken('someone@example.com');
    const wrongRole = await fetch(`${system.delivery}/deliveries`, { headers: { authorization: `Bearer ${customer}` } });
    assert.equal(wrongRole.status, 403, 'a customer is not the courier');
    assert.equal((await fetch(`${system.order}/products`)).status, 200);
    assert.deepEqual(await (await fetch(`${system.delivery}/assets/site.json`)).json(), { signInUrl: system.mobile });

    // The violation detector works: a style attribute set by a script is refused and reported.
    const probe = await newPage(PHONE);
    await probe.goto(`${system.mobile}/assets/site.json`);
    await probe.evaluate(() => document.documentElement.setAttribute('style', 'color: red'));
    const seen = () => violations.some((v) => /style-src-attr refused/.test(v)) && violations.some((v) => /Content Security Policy/.test(v));
    for (let waited = 0; !seen() && waited < 5000; waited += 100) await probe.waitForTimeout(100);
    assert.ok(seen(), `the CSP violation detector saw the refused style attribute, as an event and in the console: ${violations}`);
    await probe.close();
    violations.length = 0;
    consoleErrors.length = 0;
  });

  await step('the app shows the catalogue and a cart, and asks to sign in at checkout', async () => {
    await phone.goto(system.mobile);
    await phone.locator('[data-add="TEA-01"]').click();
    await phone.getByRole('button', { name: 'One Darjeeling tea more' }).click();
    await phone.locator('[data-add="MUG-03"]').click();
    await until(phone, 'the cart counts 3 items', () => document.querySelector('#cart-count').textContent === '3');
    assert.equal(await phone.locator('#cart-total').innerText(), '€34.90');
    assert.equal(await phone.locator('#checkout input[name="email"]').count(), 0, 'the email is the account\'s');
    const unsigned = await phone.evaluate(async () => (await fetch(`${(await (await fetch('/api/config')).json()).orderUrl}/orders`)).status);
    assert.equal(unsigned, 401, 'my orders need a token');

    await phone.locator('#place-order').click();
    const form = phone.locator('form[data-sign-in="customer"]');
    await form.waitFor();
    await form.getByLabel('Email').fill(CUSTOMER.email);
    await form.getByLabel('Password').fill('not-the-password');
    await form.locator('[data-action="sign-in"]').click();
    await until(phone, 'an unknown account is refused', () =>
      /wrong email or password/i.test(document.querySelector('form[data-sign-in] .error')?.textContent || ''));
    await phone.evaluate(() => window.scrollTo(0, 0));
    await screenshot(phone, 'sign-in.png');
  });

  await step('the customer creates an account and is back at checkout, signed in', async () => {
    await signIn(phone, 'customer', CUSTOMER.password, { email: CUSTOMER.email, register: true });
    await until(phone, 'back at the checkout', () => location.hash === '#/cart' && !document.querySelector('#view-shop').hidden);
    assert.match(await phone.locator('#account').innerText(), new RegExp(`Signed in as ${CUSTOMER.email}`));
    assert.match(await phone.locator('#checkout-account').innerText(), new RegExp(`Ordering as ${CUSTOMER.email}`));
    assert.equal(await phone.locator('#cart-count').innerText(), '3', 'the cart was kept');
    const token = await phone.evaluate(() => JSON.parse(sessionStorage.getItem('shop.token')));
    assert.equal(token.role, 'customer');
    assert.equal(token.subject, CUSTOMER.email);
  });

  await step('checkout says so when the order service is unreachable', async () => {
    const checkout = phone.locator('#checkout');
    await checkout.getByLabel('Name').fill(CUSTOMER.name);
    await checkout.getByLabel('Phone').fill('+44 20 7946 0000');

    await phone.route(`${system.order}/orders`, (route) => route.abort('connectionrefused'));
    await phone.locator('#place-order').click();
    const error = phone.locator('#checkout-error');
    await error.waitFor({ state: 'visible' });
    assert.match(await error.innerText(), /not placed.*cannot be reached/s);
    await phone.unroute(`${system.order}/orders`);
    await phone.locator('#checkout-error').evaluate((e) => { e.hidden = true; });
    await phone.evaluate(() => window.scrollTo(0, 0));
    await screenshot(phone, 'mobile-app.png');
  });

  await step('checkout places the order and opens its page with the first two stages', async () => {
    await phone.locator('#place-order').click();
    await phone.waitForURL(/#\/orders\/[0-9a-f-]{36}$/, { timeout: PATIENCE });
    orderId = phone.url().split('/').pop();
    await until(phone, 'created and paymentCreated are done', () =>
      ['created', 'paymentCreated'].every((s) => document.querySelector(`#timeline [data-stage="${s}"]`)?.classList.contains('done')));
    assert.equal(await phone.locator('#timeline [data-stage="paymentMade"]').getAttribute('class'), 'current');
    assert.match(await phone.locator('#payment-status').innerText(), /Awaiting your payment of €34\.90/);
    assert.match(await phone.locator('#order-meta').innerText(), new RegExp(`${CUSTOMER.name} · ${CUSTOMER.email}`));
  });

  await step('the payment page refuses a failed payment clearly, then pays and returns to the order', async () => {
    const link = await phone.locator('#pay').getAttribute('href');
    const withoutSecret = await fetch(link.replace(/\?.*$/, ''));
    assert.equal(withoutSecret.status, 404, 'the page needs the link\'s secret');
    await phone.locator('#pay').click();
    await phone.waitForURL(/\/pay\/[0-9a-f-]{36}\?secret=/);
    assert.match(await phone.locator('#amount').innerText(), /€34\.90/);
    assert.match(await phone.locator('body').innerText(), new RegExp(orderId.slice(-8).toUpperCase()));
    await screenshot(phone, 'payment-page.png');

    await phone.route('**/payments/*/pay', (route) =>
      route.fulfill({ status: 502, contentType: 'application/json', body: JSON.stringify({ error: 'the card issuer did not answer' }) }));
    await phone.locator('#pay').click();
    await until(phone, 'the failure is shown', () => document.querySelector('#result').textContent.includes('Payment failed'));
    assert.match(await phone.locator('#result').innerText(), /card issuer did not answer.*not been charged/);
    assert.equal(await phone.locator('#pay').isEnabled(), true, 'the customer can try again');
    await phone.unroute('**/payments/*/pay');

    await phone.locator('#pay').click();
    await phone.waitForURL(`${system.mobile}/#/orders/${orderId}`, { timeout: PATIENCE });
    await until(phone, 'the order page shows the payment made', () =>
      document.querySelector('#payment-card')?.dataset.paid === 'true');
    // From here on the order page is never reloaded: what changes arrives live.
    await phone.evaluate(() => { window.stayedSincePayment = true; });
  });

  await step('paying twice shows that the payment is already paid', async () => {
    const again = await newPage(PHONE);
    await again.goto(await phone.locator('#pay').getAttribute('href'));
    await until(again, 'the page says already paid', () => document.querySelector('#result').textContent.includes('already paid'));
    assert.equal(await again.locator('#pay').isDisabled(), true);
    await again.close();
  });

  await step('other orders come through the APIs: another customer\'s, paid, and a second of Ada\'s, not yet', async () => {
    const graceToken = await customerToken('grace@example.com');
    grace = await placeOrder(graceToken, 'Grace Hopper', [{ sku: 'COF-02', quantity: 1 }]);
    const secret = new URL(grace.paymentUrl).searchParams.get('secret');
    const paid = await fetch(`${system.payment}/payments/${grace.paymentId}/pay`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ secret }),
    });
    assert.equal(paid.status, 200, await paid.clone().text());
    second = await placeOrder(await customerToken(CUSTOMER.email), CUSTOMER.name, [{ sku: 'KET-06', quantity: 1 }]);
    const foreign = await fetch(`${system.order}/orders/${orderId}`, { headers: { authorization: `Bearer ${graceToken}` } });
    assert.equal(foreign.status, 404, 'another customer\'s order is not found');
  });

  const operations = await newPage(DESKTOP);
  await step('the operations page signs the operator in and follows the order\'s audit trail live', async () => {
    await operations.goto(`${system.logging}/?orderId=${orderId}`);
    assert.equal(await operations.evaluate(async () => (await fetch('/logs')).status), 401);
    await signIn(operations, 'operator', staffPassword('operator'));
    await until(operations, 'the payment is in the audit trail', () =>
      document.querySelector('#records [data-action="payment.made"]') !== null);
    assert.match(await operations.locator('#account').innerText(), /Signed in as operator/);
  });

  await step('the courier signs in, ships, then delivers; illegal buttons are disabled', async () => {
    const courier = await newPage(DESKTOP);
    await courier.goto(`${system.delivery}/courier`);
    assert.equal(await courier.evaluate(async () => (await fetch('/deliveries')).status), 401);
    const form = courier.locator('form[data-sign-in="courier"]');
    await form.getByLabel('Password').fill('not-the-password');
    await form.locator('[data-action="sign-in"]').click();
    await until(courier, 'a wrong password is refused', () =>
      /wrong username or password/i.test(document.querySelector('form[data-sign-in] .error')?.textContent || ''));
    await signIn(courier, 'courier', staffPassword('courier'));

    const card = courier.locator(`[data-order-id="${orderId}"]`);
    await until(courier, 'the other paid order waits too', () => document.querySelectorAll('[data-order-id]').length === 2);
    await until(courier, 'the delivery waits, shipping', (id) =>
      document.querySelector(`[data-order-id="${id}"]`)?.dataset.status === 'shipping', orderId);
    assert.equal(await card.locator('[data-action="delivered"]').isDisabled(), true, 'not delivered before shipped');
    await card.locator('[data-action="shipped"]').click();
    await until(courier, 'the delivery is shipped', (id) =>
      document.querySelector(`[data-order-id="${id}"]`)?.dataset.status === 'shipped', orderId);
    assert.equal(await card.locator('[data-action="shipped"]').isDisabled(), true, 'not shipped twice');
    assert.equal(await card.locator('[data-action="delivered"]').isEnabled(), true);
    await screenshot(courier, 'courier.png');
    await card.locator('[data-action="delivered"]').click();
    await courier.getByRole('button', { name: 'Delivered', exact: true }).click();
    await until(courier, 'the delivery is delivered', (id) =>
      document.querySelector(`[data-order-id="${id}"]`)?.dataset.status === 'delivered', orderId);

    // A token the service refuses (expired, say) brings the sign-in back at the next refresh.
    await courier.evaluate(() => {
      const kept = JSON.parse(sessionStorage.getItem('shop.token'));
      sessionStorage.setItem('shop.token', JSON.stringify({ ...kept, token: `${kept.token.slice(0, -4)}AAAA` }));
    });
    await until(courier, 'the refused token brings the sign-in back', () =>
      !document.querySelector('#sign-in').hidden && document.querySelector('#work').hidden
      && /session has ended/.test(document.querySelector('#sign-in').textContent));
    assert.equal(await courier.evaluate(() => sessionStorage.getItem('shop.token')), null, 'the refused token is dropped');
    await signIn(courier, 'courier', staffPassword('courier'));
    await until(courier, 'the deliveries are back', () => document.querySelectorAll('[data-order-id]').length > 0);
    await courier.locator('[data-action="sign-out"]').click();
    await courier.locator('form[data-sign-in="courier"]').waitFor();
    assert.equal(await courier.evaluate(() => sessionStorage.getItem('shop.token')), null, 'signing out drops the token');
    await courier.close();
  });

  await step('the order page reaches "delivered" live, with 7 pushes on the phone', async () => {
    await until(phone, 'all seven stages are done', () =>
      document.querySelectorAll('#timeline li.done').length === 7);
    await until(phone, '7 pushes arrived', () => document.querySelectorAll('#pushes li').length >= 7);
    assert.equal(await phone.evaluate(() => window.stayedSincePayment), true, 'the page was never reloaded');
    assert.equal(await phone.locator('#pushes li').count(), 7);
    assert.equal(await phone.locator('#stage-live').innerText(), 'Complete');
    // One push per stage; stages on different topics may arrive in any order.
    const stages = await phone.locator('#pushes li').evaluateAll((items) => items.map((i) => i.dataset.stage));
    assert.deepEqual(stages.sort(), ['created', 'delivered', 'paymentCreated', 'paymentMade', 'readyToShip', 'shipped', 'shipping']);
    await phone.evaluate(() => window.scrollTo(0, 0));
    await screenshot(phone, 'order-page.png');
  });

  await step('my orders lists the customer\'s own orders at their current stage', async () => {
    await phone.goto(`${system.mobile}/#/orders`);
    const item = phone.locator(`#orders [data-order-id="${orderId}"]`);
    await item.waitFor();
    assert.match(await item.innerText(), /Delivered/);
    await phone.locator(`#orders [data-order-id="${second.orderId}"]`).waitFor();
    assert.equal(await phone.locator('#orders li').count(), 2, 'Ada\'s two orders, not Grace\'s');
    await screenshot(phone, 'my-orders.png');
  });

  await step('another customer\'s order page says there is no such order', async () => {
    await phone.goto(`${system.mobile}/#/orders/${grace.orderId}`);
    await until(phone, 'no such order', () => !document.querySelector('#order-error').hidden);
    assert.match(await phone.locator('#order-error-text').innerText(), /There is no order .* in your account/);
  });

  await step('a token the order service refuses asks the customer to sign in again, then comes back', async () => {
    await phone.evaluate(() => {
      const kept = JSON.parse(sessionStorage.getItem('shop.token'));
      sessionStorage.setItem('shop.token', JSON.stringify({ ...kept, token: `${kept.token.slice(0, -4)}AAAA` }));
    });
    await phone.goto(`${system.mobile}/#/orders`);
    await until(phone, 'the sign-in shows', () =>
      !document.querySelector('#view-sign-in').hidden && /session has ended/.test(document.querySelector('#sign-in-note').textContent));
    assert.equal(await phone.evaluate(() => sessionStorage.getItem('shop.token')), null, 'the refused token is dropped');
    await signIn(phone, 'customer', CUSTOMER.password, { email: CUSTOMER.email });
    await phone.locator(`#orders [data-order-id="${orderId}"]`).waitFor();
    assert.equal(phone.url(), `${system.mobile}/#/orders`);
  });

  await step('the mailbox shows the customer the 7 mails about the order, newest first, and the operator all mail', async () => {
    const mailbox = await newPage(DESKTOP);
    await mailbox.goto(system.email);
    assert.equal(await mailbox.evaluate(async () => (await fetch('/api/emails')).status), 401);
    await signIn(mailbox, 'customer', CUSTOMER.password, { email: CUSTOMER.email });
    await until(mailbox, '7 mails arrived', (id) =>
      document.querySelectorAll(`[data-order-id="${id}"]`).length === 7, orderId);
    const subjects = await mailbox.locator(`[data-order-id="${orderId}"] .subject`).allInnerTexts();
    assert.match(subjects[0], /delivered/i, 'the newest is on top');
    // The order's first two mails (order received, payment ready) come from events two services
    // publish within the same request, on two topics: either may arrive first.
    assert.ok(subjects.slice(5).some((subject) => /received/i.test(subject)), `the oldest at the bottom: ${subjects}`);
    assert.equal(new Set(subjects).size, 7, `one mail per stage: ${subjects}`);
    await until(mailbox, 'the second order\'s mails are there too', (id) =>
      document.querySelectorAll(`[data-order-id="${id}"]`).length > 0, second.orderId);
    assert.equal(await mailbox.locator(`[data-order-id="${grace.orderId}"]`).count(), 0, 'not another customer\'s mail');
    assert.match(await mailbox.locator('#account').innerText(), new RegExp(`Signed in as ${CUSTOMER.email}`));
    await screenshot(mailbox, 'mailbox.png', false);

    await mailbox.locator('[data-action="sign-out"]').click();
    await signIn(mailbox, 'operator', staffPassword('operator'));
    await until(mailbox, 'the operator reads everyone\'s mail', ([ours, theirs]) =>
      document.querySelectorAll(`[data-order-id="${ours}"]`).length === 7
      && document.querySelectorAll(`[data-order-id="${theirs}"]`).length > 0, [orderId, grace.orderId]);
    assert.match(await mailbox.locator('#title').innerText(), /all mail/);
    await mailbox.close();
  });

  await step('the operations page shows the whole audit trail and every consumer group caught up', async () => {
    await until(operations, 'the delivery arrived live in the audit trail', () =>
      document.querySelector('#records [data-action="delivery.delivered"]') !== null);
    const since = Date.now();
    await until(operations, 'every group has no lag, measured after the last record', (after) => {
      const groups = [...document.querySelectorAll('#groups [data-group]')];
      return Number(document.querySelector('#groups').dataset.measuredAt) > after
        && groups.length === 5 && groups.every((g) => g.dataset.state === 'ok');
    }, since);
    await operations.locator('#clear').click();
    await until(operations, 'the unfiltered trail shows the order', (id) =>
      document.querySelectorAll(`#records [data-order-id="${id}"]`).length > 5, orderId);
    await screenshot(operations, 'operations.png');
  });

  await step('the operations page shows one order on a timeline, the lag over time, and replays a dead letter once', async () => {
    await operations.locator('#filter input[name="orderId"]').fill(orderId);
    await operations.locator('#filter button[type="submit"]').click();
    await until(operations, 'the order view shows the 7 stages, 7 pushes and 7 mails', () =>
      !document.querySelector('#order-view').hidden
      && document.querySelectorAll('#order-stages li[data-reached="true"]').length === 7
      && document.querySelectorAll('#order-entries tr[data-kind="push"]').length === 7
      && document.querySelectorAll('#order-entries tr[data-kind="mail"]').length === 7
      && document.querySelectorAll('#order-entries tr[data-kind="audit"]').length === 10);
    assert.equal(await operations.locator('#order-id').innerText(), orderId);
    assert.equal(await operations.locator('#order-problems').isHidden(), true, 'mobile and email both answered');
    await until(operations, 'every group\'s lag over time is drawn', () => {
      const groups = [...document.querySelectorAll('#groups [data-group]')];
      return groups.length === 5 && groups.every((g) =>
        g.querySelector('svg.spark polyline') && Number(g.querySelector('.spark-note').dataset.samples) >= 2);
    });
    await screenshot(operations, 'order-view.png');

    // A record nobody can read, about this order: both notification groups set it aside.
    await new Promise((resolve, reject) => {
      const kcat = execFile(KCAT, ['-P', '-b', system.broker, '-t', 'orders-created', '-k', orderId],
        (error, stdout, stderr) => (error ? reject(new Error(`kcat: ${error.message} ${stderr}`)) : resolve()));
      kcat.stdin.end('not an event');
    });
    const letters = operations.locator('#dead [data-topic="orders-created.dlq"]');
    await until(operations, 'the two dead letters are listed with their error', () => {
      const topic = document.querySelector('#dead [data-topic="orders-created.dlq"]');
      return topic && Number(topic.dataset.count) === 2 && /expected|invalid|not/i.test(topic.querySelector('.error-text').textContent);
    });
    await letters.locator('[data-action="replay"]').first().click();
    await until(operations, 'the replay is in the audit trail', () =>
      document.querySelector('#records [data-action="deadLetter.replayed"]') !== null);
    // Still unreadable, the copy is set aside again by both groups; the replayed one stays replayed.
    await until(operations, 'the replayed copy reached the consumers', () => {
      const topic = document.querySelector('#dead [data-topic="orders-created.dlq"]');
      return Number(topic?.dataset.count) === 4 && topic.querySelectorAll('[data-replayed="true"]').length === 1
        && topic.querySelector('[data-replayed="true"] [data-action="replay"]').disabled;
    });
    await screenshot(operations, 'dead-letters.png');
  });

  assert.deepEqual(pageErrors, [], 'no page threw');
  assert.deepEqual(violations, [], 'no page broke its Content-Security-Policy');
  // What Chromium logs for the refusals the test provokes (401s, the aborted and failed
  // requests) is expected; nothing else is.
  assert.deepEqual(consoleErrors.filter((text) => !/Failed to load resource/.test(text)), [], 'no other console error');
});
