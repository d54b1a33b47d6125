// Code shared by the duty-officer console (/) and the coordinators' pages (/admin).
//
// Plain ES module, no build step. Rules that hold for every page:
// - Server-provided strings are only ever written with textContent or
//   setAttribute, never parsed as HTML.
// - All user-visible text comes from i18n.js.
// - Visibility is switched with the `hidden` attribute and CSS classes, never
//   with element.style (CSP style-src 'self' forbids inline styles).

import { t, getLang, locale } from './i18n.js';

const REQUEST_TIMEOUT_MS = 15000;

export const $ = (id) => document.getElementById(id);

/** Creates an element with an optional class and text (always as textContent). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

/** A <button type="button"> with a text and a click handler. */
export function button(text, className, onClick) {
  const b = el('button', className || 'btn', text);
  b.type = 'button';
  if (onClick) b.addEventListener('click', onClick);
  return b;
}

export function isTypingTarget(node) {
  if (!node || !node.tagName) return false;
  const tag = node.tagName;
  return tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT' || node.isContentEditable;
}

/** Fills a <dl> from [labelKey, value] rows; value may be text or a Node. */
export function fillDl(dl, entries) {
  dl.replaceChildren();
  for (const [labelKey, value] of entries) {
    dl.append(el('dt', null, t(labelKey)));
    const dd = el('dd');
    if (value instanceof Node) dd.append(value);
    else dd.textContent = value === null || value === undefined || value === '' ? t('dash') : String(value);
    dl.append(dd);
  }
}

/** A clickable phone number (tel: link), digits and + only in the link. */
export function phoneLink(phone, className = 'phone') {
  const a = el('a', className, phone);
  a.setAttribute('href', `tel:${String(phone).replace(/[^0-9+]/g, '')}`);
  return a;
}

// ---------------------------------------------------------------------------
// Time and numbers
// ---------------------------------------------------------------------------

let clockOffsetMs = 0;

/** Local clock corrected by the server's Date header when they differ notably. */
export function nowMs() {
  return Date.now() + clockOffsetMs;
}

export function timeMs(iso) {
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms : 0;
}

/**
 * Ages are computed on this machine; if its clock is off, every age would be
 * wrong. The Date header has one-second resolution, so only offsets larger
 * than a few seconds are applied.
 */
function noteServerClock(res) {
  const header = res.headers.get('Date');
  const serverMs = header ? Date.parse(header) : NaN;
  if (!Number.isFinite(serverMs)) return;
  const offset = serverMs + 500 - Date.now();
  clockOffsetMs = Math.abs(offset) > 3000 ? offset : 0;
}

const formatters = new Map(); // `${lang}|${kind}` -> Intl.DateTimeFormat

function dateFormatter(kind) {
  const key = `${getLang()}|${kind}`;
  if (!formatters.has(key)) {
    const opts = kind === 'date'
      ? { year: 'numeric', month: '2-digit', day: '2-digit' }
      : kind === 'clock'
        ? { hour: '2-digit', minute: '2-digit', second: '2-digit' }
        : { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' };
    formatters.set(key, new Intl.DateTimeFormat(locale(), opts));
  }
  return formatters.get(key);
}

function fmtWith(kind, iso) {
  if (!iso) return t('dash');
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) return String(iso);
  return dateFormatter(kind).format(new Date(ms));
}

/** Date and time in the page language, local time zone. */
export const fmtTime = (iso) => fmtWith('datetime', iso);
export const fmtDate = (iso) => fmtWith('date', iso);
export const fmtClock = (iso) => fmtWith('clock', iso);

const pad2 = (n) => String(n).padStart(2, '0');

/** "45 s", "2 min 05 s", "1 h 02 min", "1 d 03 h". */
export function fmtAge(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(total / 86400);
  const h = Math.floor((total % 86400) / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (d > 0) return t('age_d_h', { d, h: pad2(h) });
  if (h > 0) return t('age_h_min', { h, m: pad2(m) });
  if (m > 0) return t('age_min_s', { m, s: pad2(s) });
  return t('age_s', { s });
}

export function fmtNumber(n, digits) {
  return new Intl.NumberFormat(locale(), {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  }).format(n);
}

export function fmtDistance(m) {
  if (m >= 1000) return t('dist_km', { n: fmtNumber(m / 1000, m >= 10000 || m % 1000 === 0 ? 0 : 1) });
  return t('dist_m', { n: fmtNumber(Math.round(m), 0) });
}

/** ISO time -> value for <input type="datetime-local"> in local time. */
export function toLocalInput(iso) {
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) return '';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}T${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

/** <input type="datetime-local"> value (local time) -> RFC 3339 UTC, or null. */
export function fromLocalInput(value) {
  if (!value) return null;
  const ms = new Date(value).getTime();
  return Number.isFinite(ms) ? new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z') : null;
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

/** `field` names the bad input when the server said which (problem+json). */
export class ApiError extends Error {
  constructor(status, message, field = null) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

let onUnauthorized = null;

/** Called when a request gets 401 during a session (the session has ended). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

const GET_RETRY_DELAY_MS = 400;

/**
 * JSON request to the same-origin API. Throws ApiError with a user-readable
 * message (problem+json detail or title) and the offending field, if named.
 * A read that meets a server error or a dropped connection is tried once
 * more: a console watched all night should ride out a passing hiccup rather
 * than show an error. Changes are never repeated (they might have happened).
 */
export async function api(method, path, body) {
  try {
    return await request(method, path, body);
  } catch (err) {
    // A request that already waited out its timeout is not made to wait twice.
    if (method !== 'GET' || err.timedOut || !(err.status === 0 || err.status >= 500)) throw err;
    await new Promise((r) => setTimeout(r, GET_RETRY_DELAY_MS));
    return request(method, path, body);
  }
}

async function request(method, path, body) {
  const headers = { Accept: 'application/json, application/problem+json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';

  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), REQUEST_TIMEOUT_MS);
  try {
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
        cache: 'no-store',
        signal: ctrl.signal,
      });
    } catch (err) {
      const timedOut = Boolean(err && err.name === 'AbortError');
      const failure = new ApiError(0, t(timedOut ? 'err_timeout' : 'err_network'));
      failure.timedOut = timedOut;
      throw failure;
    }
    noteServerClock(res);
    const data = await readBody(res);
    if (res.status === 401 && path !== '/api/login' && onUnauthorized) onUnauthorized();
    if (!res.ok) {
      const field = data && typeof data.field === 'string' ? data.field : null;
      throw new ApiError(res.status, problemMessage(data, res.status), field);
    }
    return data;
  } finally {
    clearTimeout(timer);
  }
}

/** Like api(), but null when the endpoint does not exist (older servers). */
export async function apiOptional(method, path) {
  try {
    return await api(method, path);
  } catch (err) {
    if (err.status === 404 || err.status === 405) return null;
    throw err;
  }
}

async function readBody(res) {
  if (res.status === 204) return null;
  const text = await res.text().catch(() => '');
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function problemMessage(data, status) {
  if (status === 403) return t('err_forbidden');
  if (status === 429) return t('err_too_many');
  if (data && typeof data === 'object') {
    if (typeof data.detail === 'string' && data.detail) return data.detail;
    if (typeof data.title === 'string' && data.title) return data.title;
  }
  return t('err_http', { status });
}

// ---------------------------------------------------------------------------
// Forms: errors next to the field the server (or we) named
// ---------------------------------------------------------------------------

/**
 * Inputs carry data-field="name" (the API's field path, e.g. "restrained.name");
 * each has an error line after it. The server names the most specific path
 * ("zones[0].geometry"), so the longest data-field that prefixes it wins.
 */
function fieldInput(form, field) {
  if (!field) return null;
  let best = null;
  for (const node of form.querySelectorAll('[data-field]')) {
    const name = node.dataset.field;
    const matches = field === name || field.startsWith(`${name}.`) || field.startsWith(`${name}[`);
    if (matches && (!best || name.length > best.dataset.field.length)) best = node;
  }
  return best;
}

export function clearFormErrors(form) {
  for (const node of form.querySelectorAll('.field-error')) node.remove();
  for (const node of form.querySelectorAll('[aria-invalid]')) {
    node.removeAttribute('aria-invalid');
    node.removeAttribute('aria-describedby');
  }
  const summary = form.querySelector('.form-error');
  if (summary) {
    summary.textContent = '';
    summary.hidden = true;
  }
}

let errorSeq = 0;

/**
 * Shows `message` right after the input, linked for screen readers, and
 * focuses it. The message goes as soon as the input is changed: a corrected
 * field should not keep saying it is wrong.
 */
export function showFieldError(form, input, message) {
  const id = `field-error-${++errorSeq}`;
  const line = el('p', 'field-error', message);
  line.id = id;
  (input.closest('.field') || input).after(line);
  input.setAttribute('aria-invalid', 'true');
  input.setAttribute('aria-describedby', id);
  input.addEventListener('input', () => clearFieldError(form, input, line), { once: true });
  input.addEventListener('change', () => clearFieldError(form, input, line), { once: true });
  input.focus();
}

function clearFieldError(form, input, line) {
  if (!line.isConnected) return;
  line.remove();
  input.removeAttribute('aria-invalid');
  input.removeAttribute('aria-describedby');
  const summary = form.querySelector('.form-error');
  if (summary && !form.querySelector('.field-error')) {
    summary.textContent = '';
    summary.hidden = true;
  }
}

/** The form's summary line (role=alert), for errors that belong to no field. */
export function showFormError(form, message) {
  const summary = form.querySelector('.form-error');
  if (!summary) return;
  summary.textContent = message;
  summary.hidden = false;
}

/** Puts an API error next to its field when the server named one, else in the summary. */
export function reportFormError(form, err) {
  const input = fieldInput(form, err.field);
  if (input) {
    // "restrained.name: must not be empty" -> "must not be empty"
    const detail = err.message.startsWith(`${err.field}: `) ? err.message.slice(err.field.length + 2) : err.message;
    showFieldError(form, input, t('err_field', { detail }));
    showFormError(form, t('form_has_errors'));
  } else {
    showFormError(form, err.message);
  }
}

// ---------------------------------------------------------------------------
// Enumerations the API uses
// ---------------------------------------------------------------------------

export const RISKS = ['low', 'medium', 'high', 'critical'];
export const ORDER_KINDS = ['contact_ban', 'extended', 'special_extended', 'shared_residence'];
export const OUTCOMES = ['police_dispatched', 'false_alarm', 'technical', 'test', 'other'];
export const ROLES = ['officer', 'coordinator', 'investigator', 'admin'];
export const DEVICE_KINDS = ['alarm', 'tag'];

// ---------------------------------------------------------------------------
// Login form (same markup on both pages: #login-form, #login-username, ...)
// ---------------------------------------------------------------------------

export function setLoginMessage(message, notice = false) {
  const box = $('login-error');
  box.textContent = message;
  box.className = notice ? 'muted' : 'error';
  box.hidden = !message;
}

/** Submits the login form; calls onLoggedIn(user) after a successful login. */
export function wireLoginForm(onLoggedIn) {
  $('login-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const username = $('login-username').value.trim();
    const password = $('login-password').value;
    const totp = $('login-totp').value.replace(/\s+/g, '');
    if (!username || !password) {
      setLoginMessage(t('login_missing'));
      return;
    }
    const body = { username, password };
    if (totp) body.totp = totp;
    const submit = $('login-submit');
    submit.disabled = true;
    submit.textContent = t('login_busy');
    try {
      const user = await api('POST', '/api/login', body);
      $('login-password').value = '';
      $('login-totp').value = '';
      setLoginMessage('');
      onLoggedIn(user);
    } catch (err) {
      // A wrong password and a wrong or missing one-time code get the same answer.
      if (err.status === 401) setLoginMessage(t('login_failed'));
      else if (err.status === 429) setLoginMessage(t('login_wait'));
      else setLoginMessage(err.message);
    } finally {
      submit.disabled = false;
      submit.textContent = t('login_submit');
    }
  });
}

/** The caller as the pages use it: strings, region null when national. */
export function normaliseUser(user) {
  return {
    username: String(user && user.username != null ? user.username : ''),
    role: user && user.role != null ? String(user.role) : '',
    region: user && user.region != null ? String(user.region) : null,
  };
}
