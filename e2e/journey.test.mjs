// The customer's journey through Shop's browser pages, clicked in headless Chromium: add to
// cart, check out, pay on the gateway's page, ship and deliver on the courier's page, and
// watch the order page reach "delivered" live with 7 pushes, 7 mails in the mailbox and the
// audit trail on the operations page. Starts the real system (`shop up`) on free ports with
// a fresh data folder, and saves a screenshot of each page to docs/screenshots/.
//
//   SHOP_BIN         the binary (default ../target/debug/shop)
//   CHROMIUM         the browser (default /usr/bin/chromium; never downloaded)
//   SCREENSHOTS_DIR  where screenshots go (default ../docs/screenshots)
//   TEST_LOG=1       show the system's output

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const SHOP_BIN = process.env.SHOP_BIN || path.join(here, '..', 'target', 'debug', 'shop');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOTS = process.env.SCREENSHOTS_DIR || path.join(here, '..', 'docs', 'screenshots');
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 860 };
const PATIENCE = 60_000;

let system;
let browser;
let profile;
const pageErrors = [];

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
    throw new Error(`${what}: not within ${PATIENCE / 1000} s on ${page.url()}\n--- page ---\n${text.slice(0, 3000)}`, { cause: error });
  }
}

/** An order placed straight on the order API, as another customer's app would. */
async function placeOrder(name, email, items) {
  const response = await fetch(`${system.order}/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ customer: { name, email, phone: '+1 202 555 0100' }, items }),
  });
  assert.equal(response.status, 201, await response.clone().text());
  return response.json();
}

async function newPage(viewport) {
  const page = await browser.newPage();
  await page.setViewportSize(viewport);
  page.on('pageerror', (error) => pageErrors.push(`${page.url()}: ${error.message}`));
  return page;
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

  await step('the app shows the catalogue, fills a cart and says so when the order service is unreachable', async () => {
    await phone.goto(system.mobile);
    await phone.locator('[data-add="TEA-01"]').click();
    await phone.getByRole('button', { name: 'One Darjeeling tea more' }).click();
    await phone.locator('[data-add="MUG-03"]').click();
    await until(phone, 'the cart counts 3 items', () => document.querySelector('#cart-count').textContent === '3');
    assert.equal(await phone.locator('#cart-total').innerText(), '€34.90');

    const checkout = phone.locator('#checkout');
    await checkout.getByLabel('Name').fill('Ada Lovelace');
    await checkout.getByLabel('Email').fill('ada@example.com');
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
  });

  await step('the payment page refuses a failed payment clearly, then pays and returns to the order', async () => {
    await phone.locator('#pay').click();
    await phone.waitForURL(/\/pay\/[0-9a-f-]{36}$/);
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

  await step('other customers order too, through the APIs: one pays, one not yet', async () => {
    const grace = await placeOrder('Grace Hopper', 'grace@example.com', [{ sku: 'COF-02', quantity: 1, unitPrice: 14 }]);
    const paid = await fetch(`${system.payment}/payments/${grace.paymentId}/pay`, { method: 'POST' });
    assert.equal(paid.status, 200);
    await placeOrder('Ada Lovelace', 'ada@example.com', [{ sku: 'KET-06', quantity: 1, unitPrice: 39 }]);
  });

  const operations = await newPage(DESKTOP);
  await step('the operations page follows the order\'s audit trail live', async () => {
    await operations.goto(`${system.logging}/?orderId=${orderId}`);
    await until(operations, 'the payment is in the audit trail', () =>
      document.querySelector('#records [data-action="payment.made"]') !== null);
  });

  await step('the courier ships, then delivers, on the courier page; illegal buttons are disabled', async () => {
    const courier = await newPage(DESKTOP);
    await courier.goto(`${system.delivery}/courier`);
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

  await step('my orders lists the order at its current stage', async () => {
    await phone.goto(`${system.mobile}/#/orders`);
    const item = phone.locator(`#orders [data-order-id="${orderId}"]`);
    await item.waitFor();
    assert.match(await item.innerText(), /Delivered/);
    await screenshot(phone, 'my-orders.png');
  });

  await step('the mailbox shows the 7 mails about the order, newest first', async () => {
    const mailbox = await newPage(DESKTOP);
    await mailbox.goto(system.email);
    await until(mailbox, '7 mails arrived', (id) =>
      document.querySelectorAll(`[data-order-id="${id}"]`).length === 7, orderId);
    const subjects = await mailbox.locator(`[data-order-id="${orderId}"] .subject`).allInnerTexts();
    assert.match(subjects[0], /delivered/i, 'the newest is on top');
    // The order's first two mails (order received, payment ready) come from events two services
    // publish within the same request, on two topics: either may arrive first.
    assert.ok(subjects.slice(5).some((subject) => /received/i.test(subject)), `the oldest at the bottom: ${subjects}`);
    assert.equal(new Set(subjects).size, 7, `one mail per stage: ${subjects}`);
    await screenshot(mailbox, 'mailbox.png', false);
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

  assert.deepEqual(pageErrors, [], 'no page threw');
});
