// journeys.mjs - the pages in a real browser (Debian's Chromium, headless, driven by
// playwright-core) against a real `catraca serve --demo`: the journeys of issue 14. Every page
// state checked gets a screenshot (CATRACA_WEB_SCREENSHOTS), axe-core with no serious or
// critical violation, and no console error, uncaught exception, CSP violation, dialog or
// request to another origin.
//
// usage (scripts/web-test.sh sets the environment): node journeys.mjs [journey-name...]
import { join } from 'node:path';
import {
  DESKTOP, PHONE, axeViolations, client, launchBrowser, screenshotsDir, startServer, watchedPage,
} from './harness.mjs';

const XSS_EVENT = '<script>alert(1)</script>';
const XSS_CATEGORY = '<img src=x onerror=alert(2)>';
const shots = screenshotsDir();

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

/** A page state worth checking: screenshot, axe, and the page's problems so far. */
async function checkpoint(page, name) {
  await page.waitForTimeout(150); // let the last render settle (countdowns, QR drawing)
  await page.screenshot({ path: join(shots, `${page.label}-${name}.png`), fullPage: true });
  const violations = await axeViolations(page);
  assert(violations.length === 0, `${page.label} ${name}: axe: ${violations.join('; ')}`);
  assert(page.problems.length === 0, `${page.label} ${name}: ${page.problems.join('; ')}`);
}

async function text(page, selector) {
  return (await page.locator(selector).first().textContent()).trim();
}

async function newBuyer(browser, label, { viewport = PHONE, locale = 'en-US' } = {}) {
  const context = await browser.newContext({ viewport, locale, isMobile: viewport === PHONE, hasTouch: viewport === PHONE });
  const page = await watchedPage(context, label);
  return { context, page };
}

async function buyOnScreen(page, category, quantity = 1) {
  await page.locator(`label[for="cat-${category}"]`).click();
  if (quantity !== 1) await page.selectOption('#quantity', String(quantity));
  await page.locator('form.buy button[type=submit]').click();
}

async function event(api, id, fields = {}) {
  return api.createEvent({
    id, name: fields.name ?? `Show ${id}`, hold_seconds: fields.hold ?? 60, per_customer_limit: fields.limit ?? 4,
    categories: fields.categories ?? [{ id: 'pista', name: fields.categoryName ?? 'Pista', capacity: fields.capacity ?? 1, price_cents: 15000 }],
  });
}

/** Someone (through the API) holding every ticket, so the next buyers wait in line. */
async function blocker(api, eventId, customer = 'blocker', quantity = 1) {
  const p = await api.buy(eventId, customer, 'pista', quantity);
  await api.waitStatus(p.id, customer, 'held');
  return { release: () => api.call('DELETE', `/v1/purchases/${p.id}`, { as: [customer, 'buyer'] }), purchase: p };
}

const journeys = {
  // buy -> wait in line -> get the hold -> pay -> see the tickets; hostile names shown as text.
  async buy_wait_hold_pay({ browser, api, base }) {
    await event(api, 'j1', { name: XSS_EVENT, categoryName: XSS_CATEGORY });
    const block = await blocker(api, 'j1');
    const { page } = await newBuyer(browser, 'buy-phone-ptbr', { locale: 'pt-BR' });
    await page.goto(`${base}/e/j1`);
    await page.waitForSelector('.category');
    assert(await text(page, 'h1') === XSS_EVENT, 'the event name is not shown as text');
    assert((await text(page, '.cat-name')) === XSS_CATEGORY, 'the category name is not shown as text');
    assert(await page.evaluate(() => document.querySelectorAll('body script:not([src]), main img').length === 0), 'a name became markup');
    await checkpoint(page, '1-event');
    await buyOnScreen(page, 'pista');
    await page.waitForSelector('.status-waiting');
    assert((await text(page, '#purchase-title')) === 'Você está na fila de espera', 'waiting title');
    assert((await page.locator('.facts').textContent()).includes('1'), 'place in line not shown');
    await checkpoint(page, '2-waiting');
    await block.release();
    await page.waitForSelector('.status-held');
    await page.waitForFunction(() => /\d+:\d\d/.test(document.getElementById('countdown')?.textContent || ''));
    await checkpoint(page, '3-held');
    await page.locator('.status-held button.primary').click();
    await page.waitForSelector('.status-confirmed canvas.qr');
    const code = await text(page, '.ticket code');
    assert(/^[A-Z0-9]+$/.test(code), `ticket code ${code}`);
    await page.waitForFunction(() => { const c = document.querySelector('canvas.qr'); return c && c.width > 100; });
    await checkpoint(page, '4-tickets');
  },

  // A hold runs out on screen; the next buyer in line gets it.
  async hold_expires_next_gets_it({ browser, base, api }) {
    await event(api, 'j2', { hold: 3 });
    const a = await newBuyer(browser, 'expire-a-phone');
    const b = await newBuyer(browser, 'expire-b-phone');
    await a.page.goto(`${base}/e/j2`);
    await b.page.goto(`${base}/e/j2`);
    await a.page.waitForSelector('.category');
    await buyOnScreen(a.page, 'pista');
    await a.page.waitForSelector('.status-held');
    await b.page.waitForSelector('.category');
    await buyOnScreen(b.page, 'pista');
    await b.page.waitForSelector('.status-waiting');
    await checkpoint(a.page, '1-held');
    await checkpoint(b.page, '1-waiting');
    await a.page.waitForSelector('.status-expired', { timeout: 15000 });
    await b.page.waitForSelector('.status-held', { timeout: 15000 });
    assert((await text(a.page, '#purchase-title')) === 'Your hold ran out', 'expired title');
    await checkpoint(a.page, '2-expired');
    await checkpoint(b.page, '2-held');
  },

  // Two buyers: their order on screen is their order of arrival.
  async arrival_order({ browser, base, api }) {
    // Two tickets held: a line of two can be served if the hold runs out (a longer line would
    // be turned away, since nothing else could come back).
    await event(api, 'j3', { capacity: 2 });
    await blocker(api, 'j3', 'blocker', 2);
    const first = await newBuyer(browser, 'order-first-desktop', { viewport: DESKTOP });
    const second = await newBuyer(browser, 'order-second-desktop', { viewport: DESKTOP });
    for (const who of [first, second]) {
      await who.page.goto(`${base}/e/j3`);
      await who.page.waitForSelector('.category');
      await buyOnScreen(who.page, 'pista');
      await who.page.waitForSelector('.status-waiting');
    }
    const place = async (page) => Number(/(\d+)\s*$/.exec(await text(page, '.facts li'))[1]);
    const seq = async (page) => (await page.locator('.meta code').nth(1).textContent()).split('-').map(Number);
    assert(await place(first.page) === 1 && await place(second.page) === 2, 'places in line are not 1 and 2');
    const [s1, s2] = [await seq(first.page), await seq(second.page)];
    assert(s1[0] < s2[0] || (s1[0] === s2[0] && s1[1] < s2[1]), `arrival ${s1} is not before ${s2}`);
    await checkpoint(first.page, 'place-1');
    await checkpoint(second.page, 'place-2');
  },

  // Sold out: shown on the category, and the refusal in plain words.
  async sold_out({ browser, base, api }) {
    await event(api, 'j4');
    const p = await api.buy('j4', 'early', 'pista');
    await api.waitStatus(p.id, 'early', 'held');
    const paid = await api.call('POST', `/v1/purchases/${p.id}/confirm`, { as: ['psp', 'payments'], body: { payment_ref: 'x1' } });
    assert(paid.status === 200, `confirm ${paid.status}`);
    const { page } = await newBuyer(browser, 'soldout-phone');
    await page.goto(`${base}/e/j4`);
    await page.waitForFunction(() => /sold out/.test(document.querySelector('.cat-avail')?.textContent || ''));
    await checkpoint(page, '1-event');
    await buyOnScreen(page, 'pista');
    await page.waitForSelector('.status-rejected');
    assert((await text(page, '#purchase-title')) === 'Sold out', 'sold out title');
    await checkpoint(page, '2-refused');
  },

  // A refresh mid-wait, a second tab and a network drop: still one purchase, still followed.
  async refresh_mid_wait({ browser, base, api }) {
    await event(api, 'j5');
    const block = await blocker(api, 'j5');
    const { context, page } = await newBuyer(browser, 'refresh-phone-ptbr', { locale: 'pt-BR' });
    await page.goto(`${base}/e/j5`);
    await page.waitForSelector('.category');
    await buyOnScreen(page, 'pista');
    await page.waitForSelector('.status-waiting');
    const id = await text(page, '.meta code');
    await page.reload();
    await page.waitForSelector('.status-waiting');
    assert((await text(page, '.meta code')) === id, 'a refresh shows another purchase');
    await checkpoint(page, '1-after-refresh');
    const tab = await watchedPage(context, 'refresh-second-tab');
    await tab.goto(`${base}/e/j5`);
    await tab.waitForSelector('.status-waiting');
    assert((await text(tab, '.meta code')) === id, 'a second tab shows another purchase');
    assert(await tab.locator('form.buy button[type=submit]').count() === 0, 'a second tab offers to buy again');
    const view = await api.event('j5');
    assert(view.categories[0].waiting === 1, `${view.categories[0].waiting} purchases in line, not 1`);
    // The network drops and comes back: the page reconnects and sees the hold.
    await context.setOffline(true);
    await page.waitForFunction(() => /reconectando/.test(document.querySelector('.connection')?.textContent || ''), null, { timeout: 15000 });
    await context.setOffline(false);
    await block.release();
    await page.waitForSelector('.status-held', { timeout: 20000 });
    await tab.waitForSelector('.status-held', { timeout: 20000 });
    page.problems.length = 0; // the requests cut by the offline switch are expected failures
    tab.problems.length = 0;
    await checkpoint(page, '2-held-after-reconnect');
  },

  // The organizer creates an event and watches the counters move while buyers buy.
  async organizer({ browser, base, api }) {
    const context = await browser.newContext({ viewport: DESKTOP, locale: 'en-US' });
    const page = await watchedPage(context, 'admin-desktop');
    await page.goto(`${base}/admin`);
    await page.waitForSelector('text=Sign in as the demo organizer');
    await checkpoint(page, '1-sign-in');
    await page.click('text=Sign in as the demo organizer');
    await page.waitForSelector('#new-id');
    await page.fill('#new-id', 'j6');
    await page.fill('#new-name', XSS_EVENT);
    await page.fill('#new-hold', '30');
    await page.click('text=Add a category');
    await page.fill('#cat-1-id', 'vip');
    await page.fill('#cat-1-name', XSS_CATEGORY);
    await page.fill('#cat-1-capacity', '10');
    await page.fill('#cat-1-price', '450');
    await page.click('form.create button[type=submit]');
    await page.waitForSelector('table.counts tbody tr:nth-child(2)');
    assert((await text(page, '#event-title')) === XSS_EVENT, 'the event name is not shown as text');
    const created = await api.event('j6');
    assert(created.categories[1].price_cents === 45000 && created.categories[1].name === XSS_CATEGORY, 'the form sent another event');
    await checkpoint(page, '2-created');
    for (let i = 0; i < 8; i++) await api.buy('j6', `fan${i}`, 'pista', 2);
    await page.waitForFunction(() => document.querySelector('td[data-count=held]')?.textContent === '16', null, { timeout: 10000 });
    await page.waitForSelector('table.feed tbody tr:nth-child(8)', { timeout: 10000 });
    await page.waitForTimeout(1500); // a chart point or two
    assert(await page.locator('.chart canvas').count() === 4, 'four charts');
    assert((await text(page, '#refunds-title ~ .refunds-empty')).startsWith('No refund due'), 'the refunds panel is not empty in plain words');
    await checkpoint(page, '3-counters-moving');
    await page.click('button[aria-pressed=false]:has-text("Pause")');
    await page.waitForSelector('button[aria-pressed=true]:has-text("Pause")');
    assert((await api.event('j6')).state === 'paused', 'the event is not paused');
    await checkpoint(page, '4-paused');
    await page.setViewportSize(PHONE);
    await checkpoint(page, '5-phone');
    await page.setViewportSize(DESKTOP);
    // Issue 16: a hold runs out, the payment comes after it; the console lists the refund due.
    await event(api, 'j6-late', { hold: 1 });
    await page.reload(); // the list of events is read on sign-in and on creation
    await page.waitForSelector('#event-select option[value="j6-late"]', { state: 'attached' });
    await page.selectOption('#event-select', 'j6-late');
    await page.waitForSelector('.refunds-empty');
    const late = await api.buy('j6-late', 'late-payer', 'pista');
    await api.waitStatus(late.id, 'late-payer', 'held');
    await api.waitStatus(late.id, 'late-payer', 'expired', 10);
    const paid = await api.call('POST', `/v1/purchases/${late.id}/confirm`, { as: ['psp', 'payments'], body: { payment_ref: 'psp_late_1' } });
    assert(paid.status === 409 && paid.body.error?.reason === 'refund_due', `late confirm: ${paid.status} ${JSON.stringify(paid.body)}`);
    await page.waitForSelector('table.refunds tbody tr', { timeout: 10000 }); // polled every 3 s
    const cells = await page.locator('table.refunds tbody tr td').allTextContents();
    assert(JSON.stringify(cells.map((c) => c.trim())) === JSON.stringify([late.id, 'late-payer', 'pista', '1', 'psp_late_1']), `refund row ${cells}`);
    await checkpoint(page, '5-refund-due');
    await page.click('button.lang[lang]'); // the language switch (Sign out shares the class)
    await page.waitForFunction(() => document.getElementById('refunds-title')?.textContent === 'Reembolsos devidos');
    assert(await page.locator('table.refunds tbody tr').count() === 1, 'the refund is not listed after the switch to Portuguese');
    await checkpoint(page, '5-refund-due-pt');
    await page.click('button.lang[lang]');
    await page.waitForFunction(() => document.documentElement.lang === 'en');
    // Demo: a rehearsal (catraca rush on a new event) that the console then watches.
    await page.click('button.rehearse');
    await page.waitForFunction(() => /rehearsal-/.test(document.querySelector('#event-select')?.value || ''), null, { timeout: 20000 });
    await page.waitForFunction(() => Number((document.querySelector('td[data-count=sold]')?.textContent || '0').replace(/\D/g, '')) > 0, null, { timeout: 30000 });
    await checkpoint(page, '6-rehearsal');
  },

  // Portuguese and English: the browser's language, then the switch.
  async languages({ browser, base, api }) {
    await event(api, 'j7', { capacity: 5 });
    const pt = await newBuyer(browser, 'lang-ptbr-desktop', { locale: 'pt-BR', viewport: DESKTOP });
    await pt.page.goto(`${base}/e/j7`);
    await pt.page.waitForSelector('.category');
    assert((await text(pt.page, 'form.buy button[type=submit]')) === 'Comprar', 'pt-BR page');
    assert((await pt.page.getAttribute('html', 'lang')) === 'pt-BR', 'html lang pt-BR');
    await checkpoint(pt.page, '1-pt');
    await pt.page.click('button.lang');
    await pt.page.waitForFunction(() => document.documentElement.lang === 'en');
    assert((await text(pt.page, 'form.buy button[type=submit]')) === 'Buy', 'the switch did not change to English');
    await checkpoint(pt.page, '2-switched-en');
    const en = await newBuyer(browser, 'lang-en-phone', { locale: 'en-GB' });
    await en.page.goto(`${base}/e/j7`);
    await en.page.waitForSelector('.category');
    assert((await text(en.page, 'form.buy button[type=submit]')) === 'Buy', 'en page');
    assert((await text(en.page, '.cat-price')).includes('R$'), 'price in reais');
    const admin = await newBuyer(browser, 'lang-admin-ptbr', { locale: 'pt-BR', viewport: DESKTOP });
    await admin.page.goto(`${base}/admin`);
    await admin.page.waitForSelector('text=Entrar como organizador da demo');
    await checkpoint(admin.page, '3-admin-pt');
  },

  // `/` lists the open events, or opens the only one.
  async home({ browser, base }) {
    const { page } = await newBuyer(browser, 'home-desktop', { viewport: DESKTOP });
    await page.goto(`${base}/`);
    await page.waitForSelector('.event-list li, .category');
    await checkpoint(page, '1-events');
  },
};

/** The ALTCHA proof of work, on a server with --challenge on. */
async function challengeJourney(browser) {
  const server = await startServer(['--challenge', 'on']);
  try {
    const api = client(server.base);
    await event(api, 'c1', { capacity: 5 });
    const { page } = await newBuyer(browser, 'challenge-phone');
    await page.goto(`${server.base}/e/c1`);
    await page.waitForSelector('altcha-widget .altcha');
    await checkpoint(page, '1-widget');
    await buyOnScreen(page, 'pista');
    await page.waitForSelector('.status-held', { timeout: 30000 });
    await checkpoint(page, '2-held');
  } finally {
    await server.stop();
  }
}

async function main() {
  const only = process.argv.slice(2);
  const started = Date.now();
  const server = await startServer();
  const browser = await launchBrowser();
  const api = client(server.base);
  const failures = [];
  const run = async (name, fn) => {
    if (only.length > 0 && !only.includes(name)) return;
    const t0 = Date.now();
    let timer;
    try {
      // Each journey is bounded; the timer is cleared after, or node would idle until it fires.
      await Promise.race([fn(), new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('timed out after 90 s')), 90000); })]);
      console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    } catch (error) {
      failures.push(name);
      console.log(`FAIL ${name}: ${error.stack || error}`);
      for (const context of browser.contexts()) {
        for (const page of context.pages()) {
          const label = page.label || 'page';
          await page.screenshot({ path: join(shots, `FAILED-${name}-${label}.png`), fullPage: true }).catch(() => {});
          if (page.problems?.length) console.log(`  ${label}: ${page.problems.join('; ')}`);
        }
      }
    } finally {
      clearTimeout(timer);
      for (const context of browser.contexts()) await context.close().catch(() => {});
    }
  };
  try {
    for (const [name, fn] of Object.entries(journeys)) await run(name, () => fn({ browser, api, base: server.base }));
    await run('challenge', () => challengeJourney(browser));
  } finally {
    await browser.close();
    await server.stop();
  }
  console.log(`screenshots in ${shots}; ${((Date.now() - started) / 1000).toFixed(1)} s in all`);
  if (failures.length > 0) {
    console.log(`${failures.length} journey(s) failed: ${failures.join(', ')}`);
    process.exit(1);
  }
}

await main();
