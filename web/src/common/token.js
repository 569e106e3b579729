// token.js - how a page gets the buyer's token (docs/API.md, "Web pages"):
//   1. handed over in the URL's fragment: /e/{event}#token=JWT (the fragment never reaches a
//      server or a Referer; the page removes it from the address bar at once);
//   2. handed over by postMessage from the window that opened the page (the organizer's site):
//      the page posts {type:'catraca-ready'} to window.opener, which answers
//      {type:'catraca-token', token:'JWT'};
//   3. in demo mode, from POST /v1/demo/token for a customer id kept in localStorage.
// The token is kept in localStorage so a refresh or a second tab is the same customer (and
// the same Idempotency-Key finds the same purchase).
import { api } from './api.js';

const TOKEN_KEY = 'catraca.buyer.token';
const CUSTOMER_KEY = 'catraca.demo.customer';

function isFresh(token) {
  try {
    const payload = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return typeof payload.exp !== 'number' || payload.exp * 1000 > Date.now() + 60000;
  } catch {
    return false;
  }
}

export function takeFragmentToken() {
  const match = /(?:^#|&)token=([A-Za-z0-9._-]+)/.exec(location.hash);
  if (!match) return null;
  history.replaceState(null, '', location.pathname + location.search);
  localStorage.setItem(TOKEN_KEY, match[1]);
  return match[1];
}

/** Waits up to ms for a token from window.opener (the organizer's site); null when none. */
export function askOpenerForToken(ms = 1500) {
  if (!window.opener) return Promise.resolve(null);
  return new Promise((resolve) => {
    const timer = setTimeout(() => { window.removeEventListener('message', onMessage); resolve(null); }, ms);
    function onMessage(event) {
      if (event.source !== window.opener) return;
      const data = event.data;
      if (!data || data.type !== 'catraca-token' || typeof data.token !== 'string') return;
      if (!/^[A-Za-z0-9._-]+$/.test(data.token)) return;
      clearTimeout(timer);
      window.removeEventListener('message', onMessage);
      localStorage.setItem(TOKEN_KEY, data.token);
      resolve(data.token);
    }
    window.addEventListener('message', onMessage);
    try { window.opener.postMessage({ type: 'catraca-ready' }, '*'); } catch { /* opener gone */ }
  });
}

export function demoCustomer() {
  let customer = localStorage.getItem(CUSTOMER_KEY);
  if (!customer) {
    const bytes = crypto.getRandomValues(new Uint8Array(6));
    customer = 'buyer-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    localStorage.setItem(CUSTOMER_KEY, customer);
  }
  return customer;
}

/** The buyer's token, or null when there is none (production page opened without one). */
export async function buyerToken(config) {
  const handed = takeFragmentToken();
  if (handed) return handed;
  const stored = localStorage.getItem(TOKEN_KEY);
  if (stored && isFresh(stored)) return stored;
  const fromOpener = await askOpenerForToken();
  if (fromOpener) return fromOpener;
  if (config.demo) {
    const answer = await api('/v1/demo/token', { method: 'POST', body: { customer: demoCustomer(), role: 'buyer' } });
    if (answer.status === 200) {
      localStorage.setItem(TOKEN_KEY, answer.body.token);
      return answer.body.token;
    }
  }
  return null;
}

/** Demo only: a token with role payments, which may confirm a held purchase. */
export async function demoPaymentsToken() {
  const answer = await api('/v1/demo/token', { method: 'POST', body: { customer: 'demo-psp', role: 'payments' } });
  return answer.status === 200 ? answer.body.token : null;
}
