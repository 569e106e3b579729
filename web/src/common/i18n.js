// i18n.js - Brazilian Portuguese and English. The language follows the browser's
// (navigator.languages, which is what it sends as Accept-Language) until the person picks one
// with the switch; the choice is kept in localStorage.
const STORE_KEY = 'catraca.lang';
export const LANGUAGES = ['pt-BR', 'en'];

export function pickLanguage() {
  const stored = localStorage.getItem(STORE_KEY);
  if (LANGUAGES.includes(stored)) return stored;
  for (const tag of navigator.languages || [navigator.language || 'en']) {
    const lower = String(tag).toLowerCase();
    if (lower.startsWith('pt')) return 'pt-BR';
    if (lower.startsWith('en')) return 'en';
  }
  return 'en';
}

export function storeLanguage(lang) {
  localStorage.setItem(STORE_KEY, lang);
}

/** A translator over dictionaries {en: {...}, 'pt-BR': {...}}; values are strings or f(vars). */
export function translator(dictionaries, lang) {
  const dict = dictionaries[lang] || dictionaries.en;
  return (key, vars = {}) => {
    const entry = dict[key] ?? dictionaries.en[key] ?? key;
    return typeof entry === 'function' ? entry(vars) : entry;
  };
}

export function formatMoney(cents, lang) {
  return new Intl.NumberFormat(lang, { style: 'currency', currency: 'BRL' }).format(cents / 100);
}

export function formatNumber(n, lang) {
  return new Intl.NumberFormat(lang).format(n);
}

/** "1 min 05 s"-like duration for seconds >= 0, in the page's language. */
export function formatDuration(seconds, lang) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return lang === 'pt-BR' ? `${s} s` : `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

export function formatTime(iso, lang) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  return new Intl.DateTimeFormat(lang, { dateStyle: 'short', timeStyle: 'medium' }).format(date);
}
