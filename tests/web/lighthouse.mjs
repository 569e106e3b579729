// lighthouse.mjs - Lighthouse (npm, mobile preset: a mid-range phone on a slow 4G, simulated)
// over the buyer's page and the organizer's console, with Debian's Chromium, against a real
// `catraca serve --demo`. Fails unless performance, accessibility and best practices are each
// >= 90 on both pages and the buyer's page weighs <= 100 KB gzipped in all. Prints one JSON
// line with the figures (docs/BENCHMARKS.md records them).
//
// usage (scripts/web-test.sh sets the environment): node lighthouse.mjs [runs]
//   runs: Lighthouse runs per page (default 1); the median score is kept.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CHROMIUM_FLAGS, chromiumPath, client, startServer } from './harness.mjs';

const nodeModules = process.env.CATRACA_WEB_NODE_MODULES;
const { default: lighthouse } = await import(pathToFileURL(join(nodeModules, 'lighthouse/core/index.js')));
const chromeLauncher = await import(pathToFileURL(join(nodeModules, 'chrome-launcher/dist/index.js')));

const MIN_SCORE = 90;
const BUYER_GZIP_MAX = 100 * 1024;
const CATEGORIES = ['performance', 'accessibility', 'best-practices'];
const runs = Number(process.argv[2] || 1);

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

const server = await startServer();
const api = client(server.base);
await api.createEvent({
  id: 'lighthouse', name: 'Rock in Rio 2026 — dia 1', hold_seconds: 600, per_customer_limit: 4,
  categories: [
    { id: 'pista', name: 'Pista', capacity: 80000, price_cents: 79500 },
    { id: 'premium', name: 'Pista Premium', capacity: 20000, price_cents: 149500 },
  ],
});
// --headless=new is Chrome's own headless mode; Lighthouse needs a debugging port, not a pipe.
const chrome = await chromeLauncher.launch({
  chromePath: chromiumPath(),
  chromeFlags: CHROMIUM_FLAGS.filter((f) => f !== '--headless=new').concat(['--headless=new']),
  logLevel: 'silent',
});
/**
 * Every byte the buyer's page can ever load, gzipped as served: the HTML, its style sheet and
 * script, every chunk those import (statically or when needed: the ALTCHA widget, the QR codes)
 * and the proof-of-work worker.
 */
async function pageWeightInAll(path) {
  const seen = new Set();
  let total = 0;
  async function get(url) {
    const response = await fetch(server.base + url, { headers: { 'Accept-Encoding': 'gzip' } });
    if (response.status !== 200) throw new Error(`${url}: ${response.status}`);
    const length = Number(response.headers.get('Content-Length'));
    const body = await response.text(); // fetch inflates; Content-Length is the gzipped size
    total += length;
    return body;
  }
  const html = await get(path);
  const pending = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]);
  while (pending.length > 0) {
    const url = pending.pop();
    if (seen.has(url)) continue;
    seen.add(url);
    const body = await get(url);
    for (const m of body.matchAll(/"\.\/(chunk-[A-Za-z0-9]+\.js)"|"(\/assets\/altcha-worker-[A-Za-z0-9]+\.js)"/g)) {
      pending.push(m[1] ? `/assets/${m[1]}` : m[2]);
    }
  }
  return { bytes: total, files: seen.size + 1 };
}

const results = {};
let failed = false;
try {
  for (const [page, path] of [['buyer', '/e/lighthouse'], ['admin', '/admin']]) {
    const scores = Object.fromEntries(CATEGORIES.map((c) => [c, []]));
    let bytes = 0;
    let failing = [];
    for (let i = 0; i < runs; i++) {
      const result = await lighthouse(`${server.base}${path}`, {
        port: chrome.port, output: 'json', logLevel: 'error', onlyCategories: CATEGORIES,
        // The default mobile preset: formFactor mobile, simulated slow 4G and 4x CPU slowdown.
      });
      const lhr = result.lhr;
      if (lhr.runtimeError) throw new Error(`${page}: ${lhr.runtimeError.message}`);
      for (const c of CATEGORIES) scores[c].push(Math.round(lhr.categories[c].score * 100));
      bytes = lhr.audits['total-byte-weight'].numericValue;
      failing = Object.values(lhr.audits)
        .filter((a) => a.score !== null && a.score < 0.9 && a.scoreDisplayMode !== 'informative' && a.scoreDisplayMode !== 'manual' && a.scoreDisplayMode !== 'notApplicable')
        .map((a) => `${a.id}=${a.score}`);
    }
    results[page] = { ...Object.fromEntries(CATEGORIES.map((c) => [c, median(scores[c])])), transfer_bytes: Math.round(bytes) };
    const low = CATEGORIES.filter((c) => results[page][c] < MIN_SCORE);
    console.log(`${page} (${path}): ${CATEGORIES.map((c) => `${c} ${results[page][c]}`).join(', ')}; ${Math.round(bytes / 1024)} KB transferred`);
    if (failing.length) console.log(`  audits below 0.9: ${failing.join(', ')}`);
    if (low.length) { failed = true; console.log(`FAIL ${page}: ${low.join(', ')} below ${MIN_SCORE}`); }
  }
  const weight = await pageWeightInAll('/e/lighthouse');
  results.buyer.all_gzip_bytes = weight.bytes;
  console.log(`buyer page in all (${weight.files} files, every chunk it may load): ${(weight.bytes / 1024).toFixed(1)} KB gzipped`);
  if (weight.bytes > BUYER_GZIP_MAX || weight.files < 5) {
    failed = true;
    console.log(`FAIL buyer page weighs ${weight.bytes} bytes in ${weight.files} files; the bound is ${BUYER_GZIP_MAX}`);
  }
} finally {
  await chrome.kill();
  await server.stop();
}
console.log(JSON.stringify({ benchmark: 'web_lighthouse', preset: 'mobile', runs, ...results, date: new Date().toISOString() }));
process.exit(failed ? 1 : 0);
