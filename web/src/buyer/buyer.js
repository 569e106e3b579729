// buyer.js - the buyer's waiting room (`/` and `/e/{event}`): the event with its categories
// and live availability, the purchase followed live from queued to tickets, in pt-BR or en.
//
// A refresh or a second tab never creates a second purchase: the Idempotency-Key is written to
// localStorage before the POST and the purchase id after it; a page that finds them resumes the
// same purchase (re-sending the same key and body if the id never arrived, which the server
// answers with the same purchase).
import { h, replace } from '../common/dom.js';
import { api, follow, loadConfig, readStream, sleep } from '../common/api.js';
import {
  LANGUAGES, formatDuration, formatMoney, formatNumber, formatTime, pickLanguage, storeLanguage, translator,
} from '../common/i18n.js';
import { buyerToken, demoPaymentsToken } from '../common/token.js';
import { DICTIONARIES } from './strings.js';

const FINAL = new Set(['confirmed', 'expired', 'cancelled', 'rejected']);

const state = {
  config: null,
  token: null,
  customer: null,
  lang: pickLanguage(),
  t: null,
  eventId: null,
  event: null, // the latest event view
  events: null, // the list on `/`
  eventError: null,
  stopEvent: null,
  purchase: null, // the latest purchase view
  purchaseError: null,
  connection: 'idle', // live | polling | reconnecting
  stopPurchase: null,
  paying: false,
  busy: false,
  challengePayload: null,
};
state.t = translator(DICTIONARIES, state.lang);

const app = document.getElementById('app');
const regions = {};

// ---- storage of the purchase in progress ---------------------------------------------------

function storeKey() {
  return `catraca.purchase.${state.customer}.${state.eventId}`;
}

function loadStored() {
  try { return JSON.parse(localStorage.getItem(storeKey()) || 'null'); } catch { return null; }
}

function saveStored(value) {
  if (value === null) localStorage.removeItem(storeKey());
  else localStorage.setItem(storeKey(), JSON.stringify(value));
}

function customerOf(token) {
  try {
    return JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).sub || 'anonymous';
  } catch { return 'anonymous'; }
}

function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return 'web-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

// ---- layout --------------------------------------------------------------------------------

function renderShell() {
  const { t } = state;
  document.documentElement.lang = state.lang;
  document.title = state.event ? `${state.event.name || state.event.id} · Catraca` : t('title');
  const other = LANGUAGES.find((l) => l !== state.lang);
  regions.header = h('header', { class: 'top' },
    h('a', { class: 'brand', href: '/' }, 'Catraca'),
    h('button', {
      type: 'button', class: 'lang', lang: other, 'aria-label': t('switchLanguageLabel'),
      onclick: () => { state.lang = other; storeLanguage(other); state.t = translator(DICTIONARIES, other); renderAll(); },
    }, other === 'pt-BR' ? 'Português' : 'English'));
  regions.event = h('section', { class: 'event', 'aria-labelledby': 'event-title' });
  regions.purchase = h('section', { class: 'purchase', 'aria-label': t('yourPurchase') });
  regions.status = h('p', { class: 'sr-only', role: 'status', 'aria-live': 'polite' });
  replace(app, regions.header, h('main', {}, regions.event, regions.purchase, regions.status));
}

function renderAll() {
  renderShell();
  renderEvent();
  renderPurchase();
}

// ---- the event -----------------------------------------------------------------------------

function renderEventList() {
  const { t } = state;
  const open = (state.events || []).filter((e) => e.state !== 'closed');
  replace(regions.event,
    h('h1', { id: 'event-title' }, t('chooseEvent')),
    open.length === 0
      ? h('p', { class: 'note' }, state.events === null ? t('loading') : t('noEvents'))
      : h('ul', { class: 'event-list' }, open.map((e) => h('li', {},
        h('a', { href: `/e/${encodeURIComponent(e.id)}` }, e.name || e.id),
        ' ', h('span', { class: 'muted' }, t(`state_${e.state}`))))));
}

function categoryAvailability(category) {
  const { t, lang } = state;
  const parts = [];
  if (category.available > 0) parts.push(t('available', { n: formatNumber(category.available, lang) }));
  else if (category.held > 0) parts.push(t('noneNowButHeld', { n: formatNumber(category.held, lang) }));
  else parts.push(t('soldOut'));
  if (category.waiting > 0) parts.push(t('inLine', { n: formatNumber(category.waiting, lang) }));
  if (category.available_again_at) parts.push(t('returnedAt', { time: formatTime(category.available_again_at, lang) }));
  return parts.join(' · ');
}

function renderEvent() {
  const { t, lang } = state;
  if (!state.eventId) { renderEventList(); return; }
  if (state.eventError) {
    replace(regions.event, h('h1', { id: 'event-title' }, t('eventMissingTitle')),
      h('p', {}, state.eventError), h('p', {}, h('a', { href: '/' }, t('seeAllEvents'))));
    return;
  }
  const event = state.event;
  if (!event) { replace(regions.event, h('h1', { id: 'event-title' }, t('loading'))); return; }
  const pending = state.purchase && !FINAL.has(state.purchase.status);
  const storedChoice = loadStored();
  const chosen = regions.form?.querySelector('input[name=category]:checked')?.value || storedChoice?.category;
  const isOpen = event.state === 'open';
  const categories = event.categories.map((c) => {
    const isGone = c.available === 0 && c.held === 0;
    const id = `cat-${c.id}`;
    return h('li', { class: 'category' + (isGone ? ' gone' : '') },
      h('input', { type: 'radio', name: 'category', id, value: c.id, checked: chosen === c.id, disabled: pending || !isOpen }),
      h('label', { for: id },
        h('span', { class: 'cat-name' }, c.name || c.id),
        h('span', { class: 'cat-price' }, formatMoney(c.price_cents, lang)),
        h('span', { class: 'cat-avail' }, categoryAvailability(c))));
  });
  const limit = event.per_customer_limit || 1;
  const quantity = h('select', { id: 'quantity', name: 'quantity', disabled: pending || !isOpen },
    Array.from({ length: limit }, (_, i) => h('option', { value: i + 1, selected: (storedChoice?.quantity || 1) === i + 1 }, String(i + 1))));
  regions.form = h('form', { class: 'buy', onsubmit: onBuy, novalidate: true },
    h('fieldset', { disabled: pending || !isOpen },
      h('legend', {}, t('pickCategory')),
      h('ul', { class: 'categories' }, categories)),
    h('div', { class: 'row' },
      h('label', { for: 'quantity' }, t('quantity', { limit })), quantity),
    state.config.challenge && !pending && isOpen ? altchaBox() : null,
    pending ? null : h('button', { type: 'submit', class: 'primary', disabled: !isOpen || state.busy }, state.busy ? t('sending') : t('buy')),
    state.formError ? h('p', { class: 'error', role: 'alert' }, state.formError) : null);
  const opens = event.opens_at ? h('p', { class: 'note' }, t('opensAt', { time: formatTime(event.opens_at, lang) }),
    event.prequeue_opens_at ? ' ' + t('prequeueFrom', { time: formatTime(event.prequeue_opens_at, lang) }) : '') : null;
  const draw = event.draw?.seed_sha256 ? h('p', { class: 'note small' }, t('drawCommitment'), ' ',
    h('code', {}, event.draw.seed_sha256.slice(0, 16) + '…'), event.draw.seed ? [' ', t('drawSeed'), ' ', h('code', {}, event.draw.seed.slice(0, 16) + '…')] : null) : null;
  replace(regions.event,
    h('h1', { id: 'event-title' }, event.name || event.id),
    h('p', { class: `sale sale-${event.state}` }, t(`state_${event.state}`),
      event.queue?.pending > 0 ? ` · ${t('pendingInLog', { n: formatNumber(event.queue.pending, lang) })}` : ''),
    opens, draw, regions.form);
}

function followEvent() {
  state.stopEvent?.();
  const id = encodeURIComponent(state.eventId);
  state.stopEvent = follow({
    streamPath: `/v1/events/${id}/stream`,
    pollPath: `/v1/events/${id}`,
    pollMs: 3000,
    onData: (event) => {
      if (!event || !Array.isArray(event.categories)) return;
      const isFirst = !state.event;
      state.event = event;
      state.eventError = null;
      if (isFirst) document.title = `${event.name || event.id} · Catraca`;
      if (!isFocusInsideForm()) renderEvent();
      else updateAvailability();
      if (state.purchase) renderPurchase();
    },
    onState: (s, status) => {
      if (s === 'refused' && status === 404) { state.eventError = state.t('eventMissing'); renderEvent(); }
    },
  });
}

function isFocusInsideForm() {
  return regions.form && regions.form.contains(document.activeElement) && document.activeElement !== document.body;
}

// While the buyer is on the form, only the availability texts change (focus stays put).
function updateAvailability() {
  for (const c of state.event.categories) {
    const label = regions.form.querySelector(`label[for="cat-${CSS.escape(c.id)}"] .cat-avail`);
    if (label) label.textContent = categoryAvailability(c);
  }
}

// ---- proof of work (ALTCHA) ----------------------------------------------------------------

let altchaLoaded = null;
function loadAltcha() {
  // The widget is loaded only when the challenge is on (it is most of the page's weight).
  altchaLoaded ||= import('altcha/external');
  return altchaLoaded;
}

// One widget for the page's life (per language): re-rendering the form must not drop a proof
// of work being solved.
let altcha = { lang: null, box: null };
function altchaBox() {
  if (altcha.lang !== state.lang) altcha = { lang: state.lang, box: altchaWidget() };
  return altcha.box;
}

function altchaWidget() {
  const { t } = state;
  loadAltcha();
  const widget = document.createElement('altcha-widget');
  widget.setAttribute('challengeurl', '/v1/challenge');
  // Absolute: the widget resolves it against import.meta.url, which a classic script lacks.
  widget.setAttribute('workerurl', new URL(__ALTCHA_WORKER_URL__, location.href).href);
  widget.setAttribute('hidelogo', '');
  widget.setAttribute('hidefooter', '');
  widget.setAttribute('strings', JSON.stringify({
    label: t('altchaLabel'), verifying: t('altchaVerifying'), verified: t('altchaVerified'),
    error: t('altchaError'), expired: t('altchaExpired'), waitAlert: t('altchaVerifying'),
    verificationRequired: t('altchaRequired'),
  }));
  widget.addEventListener('statechange', (e) => {
    state.challengePayload = e.detail?.state === 'verified' ? e.detail.payload : null;
  });
  return h('div', { class: 'altcha-box' }, h('p', { class: 'note small' }, t('altchaExplain')), widget);
}

async function solveChallenge() {
  if (state.challengePayload) return state.challengePayload;
  const widget = regions.form.querySelector('altcha-widget');
  if (!widget) return null;
  await loadAltcha();
  await customElements.whenDefined('altcha-widget');
  const solved = new Promise((resolve) => {
    const onChange = (e) => {
      const s = e.detail?.state;
      if (s === 'verified' || s === 'error' || s === 'expired') {
        widget.removeEventListener('statechange', onChange);
        resolve(s === 'verified' ? e.detail.payload : null);
      }
    };
    widget.addEventListener('statechange', onChange);
  });
  widget.verify();
  return solved;
}

// ---- buying --------------------------------------------------------------------------------

async function onBuy(event) {
  event.preventDefault();
  const { t } = state;
  const category = regions.form.querySelector('input[name=category]:checked')?.value;
  const quantity = Number(regions.form.querySelector('#quantity').value);
  state.formError = null;
  if (!category) { state.formError = t('pickCategoryFirst'); renderEvent(); regions.form.querySelector('input[name=category]')?.focus(); return; }
  if (loadStored()?.id && !FINAL.has(state.purchase?.status)) return; // one purchase at a time
  state.busy = true;
  renderEvent();
  let challenge = null;
  if (state.config.challenge) {
    challenge = await solveChallenge();
    if (!challenge) { state.busy = false; state.formError = t('altchaError'); renderEvent(); return; }
  }
  const stored = { key: newKey(), category, quantity };
  saveStored(stored); // before the POST: a refresh now re-sends this key, never a new one
  await submit(stored, challenge);
}

async function submit(stored, challenge) {
  const { t } = state;
  const headers = { 'Idempotency-Key': stored.key };
  if (challenge) headers['X-Challenge'] = challenge;
  let answer;
  for (let attempt = 0; ; attempt++) {
    try {
      answer = await api(`/v1/events/${encodeURIComponent(state.eventId)}/purchases`, {
        method: 'POST', token: state.token, headers, body: { category: stored.category, quantity: stored.quantity },
      });
      break;
    } catch {
      // The network dropped: the purchase may or may not be in the log; the same key finds out.
      state.formError = t('networkRetrying');
      renderEvent();
      await sleep(Math.min(1000 * 2 ** attempt, 10000));
    }
  }
  state.busy = false;
  state.challengePayload = null; // a proof is good for one purchase
  altcha.box?.querySelector('altcha-widget')?.reset?.();
  state.formError = null;
  if (answer.status === 202 || answer.status === 200) {
    saveStored({ ...stored, id: answer.body.id });
    state.purchase = answer.body;
    renderEvent();
    renderPurchase();
    followPurchase(answer.body.id);
    return;
  }
  saveStored(null); // nothing was accepted
  state.formError = refusal(answer);
  renderEvent();
}

function refusal(answer) {
  const { t } = state;
  const code = answer.body?.error?.code;
  if (answer.status === 429) return t('tooMany', { s: Number(answer.headers.get('Retry-After')) || 1 });
  if (code === 'challenge_required' || code === 'challenge_failed') return t('altchaError');
  if (answer.status === 401) return t('signInAgain');
  if (answer.status === 404) return t('eventMissing');
  if (answer.status === 503) return t('unavailable');
  if (answer.status === 400) return t('badRequest');
  return t('unexpected', { status: answer.status });
}

// ---- following the purchase ----------------------------------------------------------------

function onPurchase(view) {
  if (!view || typeof view.status !== 'string') return;
  state.purchase = view;
  state.purchaseError = null;
  renderPurchase();
  renderEvent();
}

/**
 * SSE first (fetch-read so the token is a header); after a drop it reconnects (1 s doubling to
 * 10 s, at once when the browser is back online); after three streams that failed to open it
 * long-polls GET /v1/purchases/{id}?wait=30&status=<current> instead.
 */
function followPurchase(id) {
  state.stopPurchase?.();
  const controller = new AbortController();
  const { signal } = controller;
  let wake = null;
  let attempt = null; // the stream or long-poll in flight
  const onOnline = () => wake?.();
  // The browser knows the network is gone: drop the stream now rather than wait for a timeout.
  const onOffline = () => attempt?.abort();
  window.addEventListener('online', onOnline);
  window.addEventListener('offline', onOffline);
  state.stopPurchase = () => {
    controller.abort();
    window.removeEventListener('online', onOnline);
    window.removeEventListener('offline', onOffline);
  };
  const path = `/v1/purchases/${encodeURIComponent(id)}`;
  (async () => {
    let failures = 0;
    let backoff = 1000;
    while (!signal.aborted && !FINAL.has(state.purchase?.status)) {
      attempt = new AbortController();
      const attemptSignal = AbortSignal.any ? AbortSignal.any([signal, attempt.signal]) : signal;
      try {
        let outcome;
        if (failures < 3) {
          outcome = await readStream(`${path}/events`, {
            token: state.token, signal: attemptSignal, onData: onPurchase,
            onOpen: () => { failures = 0; backoff = 1000; setConnection('live'); },
          });
        } else {
          const status = state.purchase?.status || 'queued';
          const answer = await api(`${path}?wait=30&status=${encodeURIComponent(status)}`, { token: state.token, signal: attemptSignal });
          outcome = answer.status === 200 ? (onPurchase(answer.body), 'ended') : { status: answer.status };
          if (answer.status === 200) setConnection('polling');
        }
        if (outcome === 'ended') continue;
        if (outcome.status === 404 || outcome.status === 403) { lostPurchase(); return; }
        if (outcome.status === 401) { state.purchaseError = state.t('signInAgain'); renderPurchase(); return; }
        failures++;
      } catch {
        if (signal.aborted) return;
        if (navigator.onLine) failures++; // offline is no reason to give up on streams
      }
      setConnection('reconnecting');
      await new Promise((resolve) => { wake = resolve; sleep(backoff, signal).then(resolve); });
      backoff = Math.min(backoff * 2, 10000);
    }
    setConnection('idle');
  })();
}

function setConnection(value) {
  if (state.connection === value) return;
  state.connection = value;
  const badge = regions.purchase?.querySelector('.connection');
  if (badge) badge.textContent = connectionText();
}

function connectionText() {
  const { t } = state;
  return { live: t('connLive'), polling: t('connPolling'), reconnecting: t('connReconnecting') }[state.connection] || '';
}

function lostPurchase() {
  saveStored(null);
  state.purchase = null;
  state.purchaseError = state.t('purchaseLost');
  renderPurchase();
  renderEvent();
}

function startOver() {
  state.stopPurchase?.();
  saveStored(null);
  state.purchase = null;
  state.purchaseError = null;
  renderPurchase();
  renderEvent();
  regions.form?.querySelector('input[name=category]:not(:disabled)')?.focus();
}

async function release() {
  const p = state.purchase;
  const answer = await api(`/v1/purchases/${encodeURIComponent(p.id)}`, { method: 'DELETE', token: state.token });
  if (answer.status === 200 && answer.body?.status) onPurchase(answer.body);
  else if (answer.body?.purchase) onPurchase(answer.body.purchase);
}

async function simulatePayment() {
  const p = state.purchase;
  state.paying = true;
  renderPurchase();
  const payments = await demoPaymentsToken();
  const answer = payments && await api(`/v1/purchases/${encodeURIComponent(p.id)}/confirm`, {
    method: 'POST', token: payments, body: { payment_ref: `demo-${p.id}` },
  });
  state.paying = false;
  if (answer?.status === 200) onPurchase(answer.body);
  else if (answer?.body?.purchase) onPurchase(answer.body.purchase);
  else renderPurchase();
}

function paymentUrl(id) {
  const template = state.config.payment_url;
  if (!template) return null;
  const url = template.replaceAll('{id}', encodeURIComponent(id));
  return /^https?:\/\//.test(url) || url.startsWith('/') ? url : null;
}

// ---- the purchase, state by state ----------------------------------------------------------

let countdownTimer = null;

function categoryOf(p) {
  return state.event?.categories?.find((c) => c.id === p.category) || null;
}

function renderPurchase() {
  clearInterval(countdownTimer);
  const { t } = state;
  const p = state.purchase;
  if (!p) {
    replace(regions.purchase, state.purchaseError ? h('p', { class: 'error', role: 'alert' }, state.purchaseError) : null);
    return;
  }
  const category = categoryOf(p);
  const catName = category?.name || p.category;
  const body = stateView(p, catName, category);
  replace(regions.purchase,
    h('div', { class: `card status-${p.status}` },
      h('h2', { tabindex: '-1', id: 'purchase-title' }, body.title),
      h('p', { class: 'what' }, t('whatYouAsked', { n: p.quantity, category: catName })),
      body.content,
      h('p', { class: 'meta small' },
        h('span', {}, t('purchaseId'), ' ', h('code', {}, p.id)),
        p.seq ? h('span', {}, ' · ', t('arrival'), ' ', h('code', {}, p.seq)) : null,
        FINAL.has(p.status) ? null : h('span', {}, ' · ', h('span', { class: 'connection' }, connectionText())))));
  announce(body.title);
  if (p.status === 'held' && p.hold_expires_at) startCountdown(p.hold_expires_at);
  if (p.status === 'confirmed') drawQrCodes(p.tickets || []);
}

let lastAnnounced = '';
function announce(text) {
  if (text === lastAnnounced) return;
  lastAnnounced = text;
  regions.status.textContent = text;
}

function stateView(p, catName, category) {
  const { t, lang } = state;
  const again = h('button', { type: 'button', class: 'primary', onclick: startOver }, t('tryAgain'));
  switch (p.status) {
  case 'queued':
    return {
      title: p.prequeue ? t('prequeuedTitle') : t('queuedTitle'),
      content: h('div', {}, h('p', {}, p.prequeue ? t('prequeuedText') : t('queuedText')), spinner()),
    };
  case 'waiting': {
    const facts = [];
    if (p.position != null) facts.push(h('li', {}, t('position', { n: formatNumber(p.position, lang), category: catName })));
    if (p.ahead != null) facts.push(h('li', {}, t('ahead', { n: formatNumber(p.ahead, lang) })));
    if (category) facts.push(h('li', {}, t('heldCouldReturn', { n: formatNumber(category.held, lang) })));
    const estimate = p.estimate ? [
      p.estimate.chance != null ? h('li', {}, t('chance', { pct: Math.round(p.estimate.chance * 100) })) : null,
      p.estimate.wait_seconds != null ? h('li', {}, t('waitEstimate', { d: formatDuration(p.estimate.wait_seconds, lang) })) : null,
    ] : [];
    return {
      title: t('waitingTitle'),
      content: h('div', {},
        h('p', {}, t('waitingText')),
        h('ul', { class: 'facts' }, facts, estimate),
        p.estimate ? null : h('p', { class: 'note small' }, t('noEstimate')),
        h('button', { type: 'button', class: 'secondary', onclick: release }, t('leaveLine'))),
    };
  }
  case 'held': {
    const url = paymentUrl(p.id);
    let pay;
    if (state.config.demo) {
      pay = h('button', { type: 'button', class: 'primary', onclick: simulatePayment, disabled: state.paying },
        state.paying ? t('paying') : t('simulatePayment'));
    } else if (url) {
      pay = [h('a', { class: 'primary button', href: url, rel: 'noopener' }, t('goPay')),
        h('p', { class: 'note small' }, t('waitingConfirm'))];
    } else {
      pay = h('p', { class: 'note' }, t('waitingConfirm'));
    }
    return {
      title: t('heldTitle'),
      content: h('div', {},
        h('p', {}, t('heldText', { n: p.quantity })),
        h('p', { class: 'countdown', role: 'timer', 'aria-live': 'off' },
          h('span', { class: 'label' }, t('timeLeft')), ' ', h('strong', { id: 'countdown' }, '')),
        h('div', { class: 'actions' }, pay,
          h('button', { type: 'button', class: 'secondary', onclick: release }, t('release')))),
    };
  }
  case 'confirmed':
    return {
      title: t('confirmedTitle'),
      content: h('div', {},
        h('p', {}, t('confirmedText')),
        h('ul', { class: 'tickets' }, (p.tickets || []).map((ticket, i) => h('li', { class: 'ticket' },
          h('canvas', { class: 'qr', role: 'img', 'aria-label': t('qrOf', { code: ticket.code }), dataset: { code: ticket.code } }),
          h('span', {}, t('ticketN', { n: i + 1 }), ' ', h('code', {}, ticket.code))))),
        h('button', { type: 'button', class: 'secondary', onclick: startOver }, t('buyMore'))),
    };
  case 'expired':
    return {
      title: p.refund_due ? t('refundTitle') : t('expiredTitle'),
      content: h('div', {}, h('p', {}, p.refund_due ? t('refundText', { ref: p.payment_ref || '' }) : t('expiredText')), again),
    };
  case 'cancelled':
    return { title: t('cancelledTitle'), content: h('div', {}, h('p', {}, t('cancelledText')), again) };
  case 'rejected': {
    const reason = p.reason || 'unknown';
    const known = ['sold_out', 'limit_exceeded', 'sale_closed', 'unknown_category', 'line_full'].includes(reason);
    return {
      title: t(known ? `rejected_${reason}_title` : 'rejectedTitle'),
      content: h('div', {},
        h('p', {}, t(known ? `rejected_${reason}` : 'rejectedText', {
          limit: state.event?.per_customer_limit, s: p.retry_after_seconds ?? '', reason,
        })), again),
    };
  }
  default:
    return { title: p.status, content: null };
  }
}

function spinner() {
  return h('div', { class: 'spinner', 'aria-hidden': 'true' });
}

function startCountdown(expiresAt) {
  const end = new Date(expiresAt).getTime();
  const tick = () => {
    const el = document.getElementById('countdown');
    if (!el) { clearInterval(countdownTimer); return; }
    const left = Math.max(0, Math.ceil((end - Date.now()) / 1000));
    el.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`;
    el.parentElement.classList.toggle('urgent', left <= 30);
  };
  tick();
  countdownTimer = setInterval(tick, 250);
}

async function drawQrCodes(tickets) {
  if (tickets.length === 0) return;
  const module = await import('qrcode');
  const QRCode = module.default ?? module; // a CommonJS package: its exports are the default
  for (const canvas of regions.purchase.querySelectorAll('canvas.qr')) {
    await QRCode.toCanvas(canvas, canvas.dataset.code, { width: 168, margin: 2, errorCorrectionLevel: 'M' });
  }
}

// ---- start ---------------------------------------------------------------------------------

function resume() {
  const stored = loadStored();
  state.stopPurchase?.();
  state.purchase = null;
  if (stored?.id) {
    state.purchase = { id: stored.id, status: 'queued', quantity: stored.quantity, category: stored.category };
    api(`/v1/purchases/${encodeURIComponent(stored.id)}`, { token: state.token }).then((answer) => {
      if (answer.status === 200) onPurchase(answer.body);
      else if (answer.status === 404 || answer.status === 403) lostPurchase();
    }).catch(() => {});
    followPurchase(stored.id);
  } else if (stored?.key) {
    state.busy = true;
    submit(stored, null); // the POST may have been accepted: the same key answers the same purchase
  }
  renderPurchase();
  renderEvent();
}

async function main() {
  renderShell();
  state.config = await loadConfig();
  state.token = await buyerToken(state.config);
  const match = /^\/e\/([A-Za-z0-9._-]{1,64})\/?$/.exec(location.pathname);
  if (!state.token) {
    replace(regions.event, h('h1', { id: 'event-title' }, state.t('noTokenTitle')), h('p', {}, state.t('noToken')));
    return;
  }
  state.customer = customerOf(state.token);
  if (!match) {
    const answer = await api('/v1/events');
    state.events = answer.status === 200 ? answer.body.events : [];
    const open = state.events.filter((e) => e.state !== 'closed');
    if (open.length === 1) {
      history.replaceState(null, '', `/e/${encodeURIComponent(open[0].id)}`);
      state.eventId = open[0].id;
    } else {
      renderEventList();
      return;
    }
  } else {
    state.eventId = match[1];
  }
  followEvent();
  resume();
  // A second tab that starts or finishes a purchase for this event: follow the same one.
  window.addEventListener('storage', (e) => {
    if (e.key === storeKey()) resume();
    if (e.key === 'catraca.lang' && LANGUAGES.includes(e.newValue)) {
      state.lang = e.newValue; state.t = translator(DICTIONARIES, e.newValue); renderAll();
    }
  });
}

main().catch((error) => {
  replace(regions.event || app, h('p', { class: 'error', role: 'alert' }, state.t('unexpected', { status: String(error?.message || error) })));
});
