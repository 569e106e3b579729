// harness.mjs - what the browser tests share: a real `catraca serve --demo` on a free loopback
// port, Debian's Chromium driven by playwright-core, the API as a test client, axe-core, and
// the checks every page state gets (no console error, no serious or critical axe violation).
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const nodeModules = process.env.CATRACA_WEB_NODE_MODULES;
if (!nodeModules) throw new Error('CATRACA_WEB_NODE_MODULES is not set (scripts/web-test.sh sets it)');
const require = createRequire(join(nodeModules, 'noop.js'));
export const { chromium } = require('playwright-core');
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 900 };

/** The Chromium binary: Debian's (the /usr/bin/chromium wrapper script execs this one). */
export function chromiumPath() {
  for (const p of [process.env.CATRACA_CHROMIUM, '/usr/lib/chromium/chromium', '/usr/bin/chromium']) {
    if (p && existsSync(p)) return p;
  }
  throw new Error('chromium is not installed (scripts/install-deps.sh installs Debian\'s)');
}

/** Flags for a machine without internet: nothing is fetched that the test did not ask for. */
export const CHROMIUM_FLAGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
  '--disable-background-networking', '--disable-component-update', '--disable-default-apps',
  '--disable-domain-reliability', '--disable-sync', '--disable-extensions', '--no-first-run',
  '--no-default-browser-check', '--metrics-recording-only', '--disable-breakpad',
  '--disable-client-side-phishing-detection', '--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,CertificateTransparencyComponentUpdater',
  '--password-store=basic', '--use-mock-keychain',
];

export async function launchBrowser() {
  return chromium.launch({ executablePath: chromiumPath(), args: CHROMIUM_FLAGS, headless: true });
}

/** Starts catraca serve on 127.0.0.1:0; resolves {base, port, stop()}. */
export async function startServer(extra = []) {
  const bin = process.env.CATRACA_BIN;
  if (!bin) throw new Error('CATRACA_BIN is not set');
  const data = mkdtempSync(join(tmpdir(), 'catraca-web-'));
  const args = ['serve', '--demo', '--listen', '127.0.0.1:0', '--data', data,
    '--rate-customer', '0', '--rate-ip', '0', ...extra];
  const child = spawn(bin, args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=0:abort_on_error=1:quarantine_size_mb=8' },
  });
  let log = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`catraca did not start:\n${log}`)), 30000);
    child.stderr.on('data', (chunk) => {
      log += chunk;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`catraca exited (${code}):\n${log}`)); });
  });
  const base = `http://127.0.0.1:${port}`;
  return {
    base, port,
    log: () => log,
    async stop() {
      const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal)));
      child.kill('SIGTERM');
      const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 20000))]);
      rmSync(data, { recursive: true, force: true });
      if (code !== 0) throw new Error(`catraca serve ended with ${code}:\n${log.slice(-4000)}`);
    },
  };
}

/** The API as the tests use it: tokens by customer and role, JSON in and out. */
export function client(base) {
  const tokens = new Map();
  async function token(customer, role = 'buyer') {
    const key = `${customer}/${role}`;
    if (!tokens.has(key)) {
      const r = await fetch(`${base}/v1/demo/token`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ customer, role }) });
      tokens.set(key, (await r.json()).token);
    }
    return tokens.get(key);
  }
  async function call(method, path, { as = ['ops', 'admin'], body, headers = {} } = {}) {
    const h = { Authorization: `Bearer ${await token(...as)}`, ...headers };
    if (body !== undefined) h['Content-Type'] = 'application/json';
    const r = await fetch(base + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch { json = text; }
    return { status: r.status, body: json };
  }
  return {
    token, call,
    async createEvent(event) {
      const r = await call('POST', '/v1/events', { body: event });
      if (r.status !== 201) throw new Error(`create event: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body;
    },
    async buy(event, customer, category, quantity = 1) {
      const r = await call('POST', `/v1/events/${event}/purchases`, { as: [customer, 'buyer'], body: { category, quantity } });
      if (r.status !== 202) throw new Error(`buy: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body;
    },
    async waitStatus(id, customer, status, seconds = 20) {
      const deadline = Date.now() + seconds * 1000;
      for (;;) {
        const r = await call('GET', `/v1/purchases/${id}?wait=5&status=queued`, { as: [customer, 'buyer'] });
        if (r.body.status === status) return r.body;
        if (Date.now() > deadline) throw new Error(`purchase ${id} is ${r.body.status}, not ${status}`);
        await new Promise((res) => setTimeout(res, 100));
      }
    },
    async event(id) { return (await call('GET', `/v1/events/${id}`)).body; },
  };
}

/**
 * A page under watch: every console error, uncaught exception, failed request and CSP
 * violation is collected; check() fails the journey on any of them.
 */
export async function watchedPage(context, name) {
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning' && /Content Security Policy/.test(m.text())) problems.push(`console ${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  page.on('dialog', (d) => { problems.push(`dialog opened (${d.message()}): a string ran as code`); d.dismiss(); });
  page.on('requestfailed', (r) => {
    const failure = r.failure()?.errorText || '';
    // A stream the page closes itself (navigation, reload, switching purchase) is aborted.
    if (!/ERR_ABORTED/.test(failure)) problems.push(`request failed: ${r.url()} ${failure}`);
  });
  page.on('request', (r) => { if (!r.url().startsWith('http://127.0.0.1:') && !r.url().startsWith('data:')) problems.push(`request to another origin: ${r.url()}`); });
  page.problems = problems;
  page.label = name;
  return page;
}

/** axe-core on the page as it is now: the serious and critical violations (an empty list passes). */
export async function axeViolations(page) {
  // evaluate() runs through the DevTools protocol, so the page's CSP (no inline script) holds.
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
}

export function screenshotsDir() {
  const dir = process.env.CATRACA_WEB_SCREENSHOTS || join(process.cwd(), 'screenshots');
  mkdirSync(dir, { recursive: true });
  return dir;
}
