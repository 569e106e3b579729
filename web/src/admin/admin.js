// admin.js - the organizer's console (`/admin`): sign in with an admin token (demo: one click),
// create an event, open/pause/close it, watch its categories, the service's charts (uPlot) and
// the feed of decisions and the refunds due (late payments) live; in demo, rehearse a rush
// against the event.
import { h, replace } from '../common/dom.js';
import { api, follow, loadConfig } from '../common/api.js';
import {
  LANGUAGES, formatMoney, formatNumber, formatTime, pickLanguage, storeLanguage, translator,
} from '../common/i18n.js';
import { DICTIONARIES } from './strings.js';

const TOKEN_KEY = 'catraca.admin.token';
// uPlot is fetched once signed in: the sign-in screen stays small.
let uPlot = null;
async function loadCharts() {
  uPlot ||= (await import('uplot')).default;
}
const SAMPLES_MAX = 300;

const state = {
  config: null,
  token: sessionStorage.getItem(TOKEN_KEY),
  lang: pickLanguage(),
  t: null,
  events: [],
  eventId: null,
  event: null,
  stopEvent: null,
  stopStats: null,
  decisionsTimer: null,
  refunds: null, // {eventId, purchases, more} or {eventId, status} when refused; null: not loaded yet
  refundsTimer: null,
  rehearseTimer: null,
  samples: [],
  statsNote: null,
  charts: [],
  message: null,
};
state.t = translator(DICTIONARIES, state.lang);

const app = document.getElementById('app');
const regions = {};

function setLanguage(lang) {
  state.lang = lang;
  storeLanguage(lang);
  state.t = translator(DICTIONARIES, lang);
  renderAll();
}

function renderAll() {
  const { t } = state;
  document.documentElement.lang = state.lang;
  document.title = t('title');
  const other = LANGUAGES.find((l) => l !== state.lang);
  const header = h('header', { class: 'top' },
    h('a', { class: 'brand', href: '/admin' }, t('brand')),
    h('div', { class: 'top-actions' },
      state.token ? h('button', { type: 'button', class: 'lang', onclick: signOut }, t('signOut')) : null,
      h('button', { type: 'button', class: 'lang', lang: other, 'aria-label': t('switchLanguageLabel'), onclick: () => setLanguage(other) },
        other === 'pt-BR' ? 'Português' : 'English')));
  const main = h('main', { class: 'console' });
  replace(app, header, main);
  if (!state.token) { main.appendChild(signInView()); return; }
  regions.message = h('p', { role: 'status', class: 'message' }, state.message || '');
  regions.events = h('section', { class: 'card', 'aria-labelledby': 'events-title' });
  regions.create = h('section', { class: 'card', 'aria-labelledby': 'create-title' });
  regions.event = h('section', { class: 'card', 'aria-labelledby': 'event-title' });
  regions.charts = h('section', { class: 'card', 'aria-labelledby': 'charts-title' });
  regions.decisions = h('section', { class: 'card', 'aria-labelledby': 'decisions-title' });
  regions.refunds = h('section', { class: 'card', 'aria-labelledby': 'refunds-title' });
  main.append(h('h1', {}, t('heading')), regions.message, regions.events, regions.event, regions.charts, regions.decisions, regions.refunds, regions.create);
  renderEvents();
  renderCreate();
  renderEvent();
  renderCharts();
  renderDecisions([]);
  renderRefunds();
}

function say(text) {
  state.message = text;
  if (regions.message) regions.message.textContent = text || '';
}

// ---- signing in ----------------------------------------------------------------------------

function roleOf(token) {
  try { return JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).role || 'buyer'; } catch { return null; }
}

function signInView() {
  const { t } = state;
  const error = h('p', { class: 'error', role: 'alert' });
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true });
  const form = h('form', {
    class: 'card signin',
    onsubmit: (e) => { e.preventDefault(); signIn(input.value.trim(), error); },
  },
  h('h1', {}, t('signInTitle')),
  h('p', {}, t('signInText')),
  h('label', { for: 'token' }, t('adminToken')), input,
  h('div', { class: 'actions' },
    h('button', { type: 'submit', class: 'primary' }, t('signIn')),
    state.config?.demo ? h('button', { type: 'button', class: 'secondary', onclick: () => demoSignIn(error) }, t('demoSignIn')) : null),
  error);
  return form;
}

async function signIn(token, error) {
  const { t } = state;
  if (!/^[A-Za-z0-9._-]+$/.test(token) || roleOf(token) !== 'admin') { error.textContent = t('notAdmin'); return; }
  const check = await api('/v1/stats', { token });
  if (check.status === 401 || check.status === 403) { error.textContent = t('notAdmin'); return; }
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  start();
}

async function demoSignIn(error) {
  const answer = await api('/v1/demo/token', { method: 'POST', body: { customer: 'organizer', role: 'admin' } });
  if (answer.status === 200) signIn(answer.body.token, error);
  else error.textContent = state.t('unexpected', { status: answer.status });
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  stopAll();
  renderAll();
}

function stopAll() {
  state.stopEvent?.();
  state.stopStats?.();
  clearInterval(state.decisionsTimer);
  clearInterval(state.refundsTimer);
  clearInterval(state.rehearseTimer);
}

// ---- events --------------------------------------------------------------------------------

async function loadEvents() {
  const answer = await api('/v1/events', { token: state.token });
  state.events = answer.status === 200 ? answer.body.events : [];
  if (!state.eventId && state.events.length > 0) selectEvent(state.events[state.events.length - 1].id);
  renderEvents();
}

function renderEvents() {
  const { t } = state;
  const select = h('select', { id: 'event-select', onchange: (e) => selectEvent(e.target.value) },
    state.events.length === 0 ? h('option', { value: '' }, t('noEventsYet')) : null,
    state.events.map((e) => h('option', { value: e.id, selected: e.id === state.eventId }, `${e.name || e.id} (${e.id})`)));
  replace(regions.events,
    h('h2', { id: 'events-title' }, t('events')),
    h('div', { class: 'row' }, h('label', { for: 'event-select' }, t('watching')), select,
      h('a', { class: 'button secondary', href: '#create-title' }, t('newEvent')),
      state.config?.demo ? h('button', { type: 'button', class: 'secondary rehearse', onclick: rehearse }, t('rehearse')) : null),
    regions.rehearse = h('p', { class: 'small muted', 'aria-live': 'polite' }, regions.rehearse?.textContent || ''));
}

function selectEvent(id) {
  if (!id) return;
  if (id !== state.eventId) say(null);
  state.eventId = id;
  state.event = null;
  state.stopEvent?.();
  state.stopEvent = follow({
    streamPath: `/v1/events/${encodeURIComponent(id)}/stream`,
    pollPath: `/v1/events/${encodeURIComponent(id)}`,
    pollMs: 1000,
    onData: (view) => { if (view?.categories) { state.event = view; renderEvent(); } },
  });
  clearInterval(state.decisionsTimer);
  loadDecisions();
  state.decisionsTimer = setInterval(loadDecisions, 1000);
  clearInterval(state.refundsTimer);
  state.refunds = null;
  renderRefunds();
  loadRefunds();
  state.refundsTimer = setInterval(loadRefunds, REFUNDS_POLL_MS);
  renderEvent();
  renderEvents();
}

async function setEventState(next) {
  const answer = await api(`/v1/events/${encodeURIComponent(state.eventId)}/state`, { method: 'POST', token: state.token, body: { state: next } });
  if (answer.status === 200) { state.event = { ...state.event, ...answer.body }; renderEvent(); say(state.t(`nowState_${next}`)); }
  else say(errorText(answer));
}

function errorText(answer) {
  return state.t('refused', { status: answer.status, message: answer.body?.error?.message || '' });
}

function renderEvent() {
  const { t, lang } = state;
  const e = state.event;
  if (!state.eventId || !e) {
    replace(regions.event, h('h2', { id: 'event-title' }, state.eventId ? t('loading') : t('noEventSelected')));
    return;
  }
  const stateButtons = ['open', 'paused', 'closed'].map((s) => h('button', {
    type: 'button', class: e.state === s ? 'primary' : 'secondary', 'aria-pressed': String(e.state === s),
    onclick: () => setEventState(s),
  }, t(`action_${s}`)));
  const rows = e.categories.map((c) => {
    const soldPct = c.capacity > 0 ? (100 * c.sold) / c.capacity : 0;
    return h('tr', {},
      h('th', { scope: 'row' }, c.name || c.id, h('span', { class: 'muted small' }, ` ${c.id} · ${formatMoney(c.price_cents, lang)}`)),
      h('td', {}, formatNumber(c.capacity, lang)),
      h('td', { 'data-count': 'available' }, formatNumber(c.available, lang)),
      h('td', { 'data-count': 'held' }, formatNumber(c.held, lang)),
      h('td', { 'data-count': 'sold' }, formatNumber(c.sold, lang)),
      h('td', { 'data-count': 'waiting' }, formatNumber(c.waiting, lang)),
      h('td', { class: 'pct' },
        h('progress', { max: 100, value: soldPct.toFixed(1), 'aria-label': t('soldPctOf', { category: c.name || c.id }) }),
        ` ${soldPct.toFixed(1)}%`));
  });
  replace(regions.event,
    h('h2', { id: 'event-title' }, e.name || e.id),
    h('p', { class: 'muted' }, t('eventFacts', { id: e.id, hold: e.hold_seconds, limit: e.per_customer_limit, pending: formatNumber(e.queue?.pending ?? 0, lang) }),
      ' ', h('a', { href: `/e/${encodeURIComponent(e.id)}` }, t('buyerPage'))),
    h('div', { class: 'actions', role: 'group', 'aria-label': t('saleState') }, stateButtons),
    h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': t('liveCounts') }, h('table', { class: 'counts' },
      h('caption', {}, t('liveCounts')),
      h('thead', {}, h('tr', {}, [t('category'), t('capacity'), t('available'), t('held'), t('sold'), t('waiting'), t('soldPct')].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows))));
}

// ---- rehearsal (demo) ----------------------------------------------------------------------

// catraca rush creates its own event (two categories, short holds); the console watches it.
const REHEARSAL = { buyers: 1000, rate: 200 };

async function rehearse() {
  const { t } = state;
  const id = `rehearsal-${Date.now().toString(36)}`;
  const answer = await api('/v1/demo/rehearse', { method: 'POST', token: state.token, body: { event: id, ...REHEARSAL } });
  if (answer.status === 202) {
    state.rehearsalEvent = id;
    regions.rehearse.textContent = t('rehearsing', { id });
    clearInterval(state.rehearseTimer);
    state.rehearseTimer = setInterval(pollRehearsal, 1000);
  } else if (answer.status === 409) {
    regions.rehearse.textContent = t('rehearsalBusy');
  } else {
    regions.rehearse.textContent = errorText(answer);
  }
}

async function pollRehearsal() {
  const answer = await api('/v1/demo/rehearse', { token: state.token });
  if (answer.status !== 200) { clearInterval(state.rehearseTimer); return; }
  const id = state.rehearsalEvent;
  if (id && state.eventId !== id && state.events.every((e) => e.id !== id)) {
    const events = await api('/v1/events', { token: state.token });
    if (events.status === 200 && events.body.events.some((e) => e.id === id)) {
      state.events = events.body.events;
      selectEvent(id); // rush has created it: watch it move
    }
  }
  if (!answer.body.running) {
    clearInterval(state.rehearseTimer);
    regions.rehearse.textContent = state.t('rehearsalDone', { code: answer.body.exit_code ?? '?' });
  }
}

// ---- creating an event ---------------------------------------------------------------------

function categoryRow(index) {
  const { t } = state;
  const field = (name, label, attributes) => h('div', { class: 'field' },
    h('label', { for: `cat-${index}-${name}` }, label),
    h('input', { id: `cat-${index}-${name}`, name: `${name}`, ...attributes }));
  return h('fieldset', { class: 'cat-row' },
    h('legend', {}, t('categoryN', { n: index + 1 })),
    field('id', t('categoryId'), { required: true, pattern: '[A-Za-z0-9._\\-]{1,64}', value: index === 0 ? 'pista' : '' }),
    field('name', t('name'), { maxlength: 32, value: index === 0 ? 'Pista' : '' }),
    field('capacity', t('capacity'), { type: 'number', min: 1, max: 10000000, required: true, value: index === 0 ? 100 : '' }),
    field('price', t('priceReais'), { type: 'number', min: 0, step: '0.01', required: true, value: index === 0 ? '150.00' : '' }));
}

function renderCreate() {
  const { t } = state;
  const categories = h('div', { class: 'cats' }, categoryRow(0));
  const error = h('p', { class: 'error', role: 'alert' });
  const field = (id, label, attributes) => h('div', { class: 'field' }, h('label', { for: id }, label), h('input', { id, ...attributes }));
  const form = h('form', { class: 'create', onsubmit: (e) => { e.preventDefault(); createEvent(form, categories, error); } },
    h('div', { class: 'grid' },
      field('new-id', t('eventId'), { required: true, pattern: '[A-Za-z0-9._\\-]{1,64}', placeholder: 'show-2026' }),
      field('new-name', t('name'), { maxlength: 32 }),
      field('new-hold', t('holdSeconds'), { type: 'number', min: 1, max: 86400, value: 600, required: true }),
      field('new-limit', t('perCustomer'), { type: 'number', min: 1, max: 10, value: 4, required: true }),
      h('div', { class: 'field' }, h('label', { for: 'new-state' }, t('startAs')),
        h('select', { id: 'new-state' }, ['open', 'paused'].map((s) => h('option', { value: s }, t(`state_${s}`)))))),
    categories,
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'secondary', onclick: () => { if (categories.children.length < 16) categories.appendChild(categoryRow(categories.children.length)); } }, t('addCategory')),
      h('button', { type: 'submit', class: 'primary' }, t('create'))),
    error);
  replace(regions.create, h('h2', { id: 'create-title' }, t('newEvent')), form);
}

async function createEvent(form, categories, error) {
  const { t } = state;
  if (!form.reportValidity()) return;
  const value = (id) => form.querySelector(`#${id}`).value.trim();
  const body = {
    id: value('new-id'),
    name: value('new-name'),
    hold_seconds: Number(value('new-hold')),
    per_customer_limit: Number(value('new-limit')),
    state: value('new-state'),
    categories: Array.from(categories.children).map((row) => ({
      id: row.querySelector('[name=id]').value.trim(),
      name: row.querySelector('[name=name]').value.trim(),
      capacity: Number(row.querySelector('[name=capacity]').value),
      price_cents: Math.round(Number(row.querySelector('[name=price]').value) * 100),
    })).filter((c) => c.id !== ''),
  };
  const answer = await api('/v1/events', { method: 'POST', token: state.token, body });
  if (answer.status === 201 || answer.status === 200) {
    error.textContent = '';
    state.eventId = null;
    await loadEvents();
    selectEvent(body.id);
    say(t('created', { id: body.id }));
    renderCreate(); // an empty form for the next one
    document.getElementById('event-title')?.scrollIntoView();
  } else {
    error.textContent = errorText(answer);
  }
}

// ---- charts (uPlot) ------------------------------------------------------------------------

const CHARTS = [
  { key: 'chartRate', series: [['accepted', 'acceptedPerS', '#0b5d3b'], ['decided', 'decidedPerS', '#8a2be2']] },
  { key: 'chartQueue', series: [['queue_depth', 'queueDepth', '#0a4f8a']] },
  { key: 'chartLatency', series: [['accept_p50_ms', 'p50', '#0b5d3b'], ['accept_p99_ms', 'p99', '#b00020']] },
  { key: 'chartHolds', series: [['expired', 'expiredPerS', '#b00020'], ['confirmed', 'confirmedPerS', '#0b5d3b']] },
];

function renderCharts() {
  const { t } = state;
  for (const chart of state.charts) chart.plot.destroy();
  state.charts = [];
  if (!uPlot) return;
  const grid = h('div', { class: 'charts' });
  replace(regions.charts, h('h2', { id: 'charts-title' }, t('charts')),
    h('p', { class: 'muted small' }, state.statsNote || t('chartsNote')), grid);
  for (const spec of CHARTS) {
    const holder = h('div', { class: 'chart-plot' });
    const summary = h('p', { class: 'sr-only' });
    grid.appendChild(h('figure', { class: 'chart' }, h('figcaption', {}, t(spec.key)), holder, summary));
    const plot = new uPlot({
      width: 320, height: 180,
      legend: { show: true },
      cursor: { show: true, drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [{ stroke: '#4a5560', grid: { stroke: '#e1e4e8' } }, { stroke: '#4a5560', grid: { stroke: '#e1e4e8' }, size: 48 }],
      series: [{}, ...spec.series.map(([, label, color]) => ({ label: t(label), stroke: color, width: 2, spanGaps: false }))],
    }, chartData(spec), holder);
    state.charts.push({ spec, plot, holder, summary });
  }
  resizeCharts();
  updateCharts();
}

function chartData(spec) {
  const xs = state.samples.map((s) => Date.parse(s.at) / 1000);
  return [xs, ...spec.series.map(([field]) => state.samples.map((s) => (s[field] ?? null)))];
}

function resizeCharts() {
  for (const chart of state.charts) {
    const width = Math.max(240, Math.floor(chart.holder.clientWidth || 320));
    chart.plot.setSize({ width, height: 180 });
  }
}

function updateCharts() {
  const { t, lang } = state;
  const last = state.samples[state.samples.length - 1];
  for (const chart of state.charts) {
    chart.plot.setData(chartData(chart.spec));
    chart.summary.textContent = last ? chart.spec.series.map(([field, label]) => `${t(label)}: ${last[field] == null ? '–' : formatNumber(last[field], lang)}`).join(', ') : t('noSamples');
  }
}

function onStats(body) {
  if (!body || !Array.isArray(body.samples)) return;
  const byAt = new Map(state.samples.map((s) => [s.at, s]));
  for (const s of body.samples) byAt.set(s.at, s);
  state.samples = Array.from(byAt.values()).sort((a, b) => (a.at < b.at ? -1 : 1)).slice(-SAMPLES_MAX);
  updateCharts();
}

function followStats() {
  state.stopStats?.();
  state.stopStats = follow({
    streamPath: '/v1/stats/stream', pollPath: '/v1/stats', pollMs: 1000, token: state.token, onData: onStats,
    onState: (s, status) => {
      if (s === 'refused') { state.statsNote = state.t('statsUnavailable', { status }); renderCharts(); }
    },
  });
}

// ---- decisions -----------------------------------------------------------------------------

async function loadDecisions() {
  if (!state.eventId) return;
  let answer;
  try {
    answer = await api(`/v1/events/${encodeURIComponent(state.eventId)}/decisions?limit=30`, { token: state.token });
  } catch { return; }
  if (answer.status === 200) renderDecisions(answer.body.decisions || []);
  else if (answer.status === 404 && !state.event) clearInterval(state.decisionsTimer);
}

function renderDecisions(decisions) {
  const { t, lang } = state;
  replace(regions.decisions,
    h('h2', { id: 'decisions-title' }, t('decisions')),
    decisions.length === 0 ? h('p', { class: 'muted' }, t('noDecisions')) : h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': t('decisions') }, h('table', { class: 'feed' },
      h('caption', { class: 'sr-only' }, t('decisionsCaption')),
      h('thead', {}, h('tr', {}, [t('time'), t('purchase'), t('customer'), t('category'), t('qty'), t('status')].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, decisions.map((d) => h('tr', { class: `st-${d.status}` },
        h('td', {}, formatTime(d.at, lang)),
        h('td', {}, h('code', {}, d.id)),
        h('td', {}, d.customer),
        h('td', {}, d.category),
        h('td', {}, String(d.quantity)),
        h('td', {}, t(`status_${d.status}`), d.reason ? ` (${d.reason})` : '')))))));
}

// ---- refunds due -----------------------------------------------------------------------------

// Late payments (issue 16): a confirm after the hold ran out is recorded, never a ticket; the
// organizer refunds them. They change only when a payment arrives late, so every few seconds
// is enough (the decisions feed, which moves with every purchase, is polled every second).
const REFUNDS_POLL_MS = 3000;

async function loadRefunds() {
  const eventId = state.eventId;
  if (!eventId) return;
  let answer;
  try {
    answer = await api(`/v1/events/${encodeURIComponent(eventId)}/refunds`, { token: state.token });
  } catch { return; } // the network: the next poll tries again, the last list stays on screen
  if (eventId !== state.eventId) return; // another event was selected meanwhile
  const next = answer.status === 200
    ? { eventId, purchases: answer.body?.purchases || [], more: Boolean(answer.body?.more) }
    : { eventId, status: answer.status };
  if (answer.status === 404 && !state.event) clearInterval(state.refundsTimer);
  // Rendered only when it changed: the table is not rebuilt under a reader's cursor every poll.
  if (JSON.stringify(next) === JSON.stringify(state.refunds)) return;
  state.refunds = next;
  renderRefunds();
}

function refundsBody() {
  const { t, lang } = state;
  const r = state.refunds;
  if (!state.eventId) return h('p', { class: 'muted' }, t('noEventSelected'));
  if (!r || r.eventId !== state.eventId) return h('p', { class: 'muted' }, t('loading'));
  if (r.status) return h('p', { class: 'muted' }, t('refundsUnavailable', { status: r.status }));
  if (r.purchases.length === 0) return h('p', { class: 'muted refunds-empty' }, t('noRefunds'));
  return [
    h('p', { class: 'muted small' }, t(r.more ? 'refundsMore' : 'refundsCount', { n: formatNumber(r.purchases.length, lang) })),
    h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': t('refunds') }, h('table', { class: 'feed refunds' },
      h('caption', { class: 'sr-only' }, t('refundsCaption')),
      h('thead', {}, h('tr', {}, [t('purchase'), t('customer'), t('category'), t('qty'), t('paymentRef')].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, r.purchases.map((p) => h('tr', {},
        h('td', {}, h('code', {}, p.id)),
        h('td', {}, p.customer),
        h('td', {}, p.category),
        h('td', {}, formatNumber(p.quantity, lang)),
        h('td', {}, h('code', {}, p.payment_ref ?? '–'))))))),
  ];
}

function renderRefunds() {
  if (!regions.refunds) return;
  replace(regions.refunds, h('h2', { id: 'refunds-title' }, state.t('refunds')),
    h('p', { class: 'muted small' }, state.t('refundsNote')), refundsBody());
}

// ---- start ---------------------------------------------------------------------------------

async function start() {
  await loadCharts();
  renderAll();
  loadEvents();
  followStats();
}

async function main() {
  state.config = await loadConfig();
  if (state.token) await start();
  else renderAll();
  let resizeTimer = null;
  window.addEventListener('resize', () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(resizeCharts, 150); });
}

main().catch((error) => {
  replace(app, h('main', {}, h('p', { class: 'error', role: 'alert' }, String(error?.message || error))));
});
