// vakt duty-officer console.
//
// Plain ES module, no build step, no dependencies. Served at /console.js under
// a strict CSP: no inline scripts or styles, no eval, same-origin requests only.
//
// Rules followed throughout:
// - Server-provided strings are only ever written with textContent or
//   setAttribute, never parsed as HTML.
// - All user-visible text comes from i18n.js.
// - Visibility is switched with the `hidden` attribute and CSS classes, never
//   with element.style (CSP style-src 'self').

import { t, tEnum, getLang, setLang, applyStatic, locale } from './i18n.js';

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

const STREAM_URL = '/api/alerts/stream';
const REQUEST_TIMEOUT_MS = 15000;
// Belt and braces: the event stream should carry every change, but a stalled
// proxy can keep a dead stream "open". A periodic re-fetch bounds how long a
// missed event can go unseen.
const RESYNC_INTERVAL_MS = 30000;
const SYNC_RETRY_MS = 5000;
const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 30000;
// While an urgent notice is unanswered the alarm sound repeats this often.
const ALARM_REPEAT_MS = 15000;
// A lost live connection gets an audible warning once it lasts this long.
const LOST_SOUND_AFTER_MS = 20000;
const FLASH_OK_MS = 6000;

const STATE_RANK = { open: 0, acknowledged: 1, resolved: 2 };
const OUTCOMES = ['police_dispatched', 'false_alarm', 'technical', 'test', 'other'];
const URGENT_NOTICES = new Set(['new_p1', 'overdue', 'repeated']);

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

const state = {
  user: null,                 // {username, role, region} while logged in
  alerts: new Map(),          // String(id) -> alert; open and acknowledged only
  finished: new Set(),        // ids seen resolved; never re-added to the queue
  pending: new Set(),         // ids with an ack/resolve request in flight
  notices: new Map(),         // id -> {kind, alert}
  selectedId: null,           // id whose detail is shown
  detail: null,               // {id, data, reason} of the shown detail
  detailSeq: 0,               // guards against out-of-order detail responses
  detailFormsFor: null,       // id the action forms were last reset for
  focusResolveOnLoad: false,  // 'r' pressed before the detail had loaded
  systemStatus: null,         // last `status` event payload
  conn: 'idle',               // idle | connecting | live | lost | syncing
  lostSince: 0,
  syncFailed: false,
  clockOffsetMs: 0,           // server clock minus local clock, when notable
};

const stream = { es: null, retryMs: RECONNECT_MIN_MS, retryTimer: 0, syncRetryTimer: 0 };
const timers = { tick: 0, resync: 0, alarm: 0, flashOk: 0 };
const sync = { running: null, queued: null, buffer: null };
const sound = { ctx: null, on: false, busyUntil: 0, busyRank: -1 };
const rows = new Map();       // id -> <tr>, reused across renders to keep focus
const noticeNodes = new Map(); // id -> {node, signature} currently in the notice box

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------
// Small DOM and formatting helpers
// ---------------------------------------------------------------------------

/** Creates an element with an optional class and text (always as textContent). */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function keyOf(id) {
  return String(id);
}

function timeMs(iso) {
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms : 0;
}

/** Local clock corrected by the server's Date header when they differ notably. */
function nowMs() {
  return Date.now() + state.clockOffsetMs;
}

let dateFormatter = null;
let dateFormatterLang = null;

function fmtTime(iso) {
  if (!iso) return t('dash');
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) return String(iso);
  if (dateFormatterLang !== getLang()) {
    dateFormatter = new Intl.DateTimeFormat(locale(), {
      year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit',
    });
    dateFormatterLang = getLang();
  }
  return dateFormatter.format(new Date(ms));
}

const pad2 = (n) => String(n).padStart(2, '0');

/** "45 s", "2 min 05 s", "1 h 02 min", "1 d 03 h". */
function fmtAge(ms) {
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

function fmtNumber(n, digits) {
  return new Intl.NumberFormat(locale(), {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  }).format(n);
}

function fmtDistance(m) {
  if (m >= 1000) return t('dist_km', { n: fmtNumber(m / 1000, m % 1000 === 0 ? 0 : 1) });
  return t('dist_m', { n: fmtNumber(Math.round(m), 0) });
}

function isTypingTarget(node) {
  if (!node || !node.tagName) return false;
  const tag = node.tagName;
  return tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT' || node.isContentEditable;
}

/** Fills a <dl> from [labelKey, value] rows; value may be text or a Node. */
function fillDl(dl, entries) {
  dl.replaceChildren();
  for (const [labelKey, value] of entries) {
    dl.append(el('dt', null, t(labelKey)));
    const dd = el('dd');
    if (value instanceof Node) dd.append(value);
    else dd.textContent = value === null || value === undefined || value === '' ? t('dash') : String(value);
    dl.append(dd);
  }
}

function prioClass(priority) {
  return [1, 2, 3, 4].includes(priority) ? `prio-${priority}` : 'prio-x';
}

/** The big priority badge: colour from the class, and the number as text. */
function fillPrioBadge(node, priority) {
  node.className = `prio-badge ${prioClass(priority)}`;
  node.replaceChildren(
    el('span', 'sr-only', `${t('priority_sr_prefix')} `),
    el('span', 'prio-num', priority ?? '?'),
  );
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/**
 * JSON request to the same-origin API. Throws ApiError with a user-readable
 * message (problem+json detail or title). A 401 during a session ends it.
 */
async function api(method, path, body) {
  const headers = { Accept: 'application/json, application/problem+json' };
  if (method !== 'GET') headers['X-Vakt-Csrf'] = '1';
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
      throw new ApiError(0, t(err && err.name === 'AbortError' ? 'err_timeout' : 'err_network'));
    }
    noteServerClock(res);
    const data = await readBody(res);
    if (res.status === 401 && state.user && path !== '/api/login') {
      onSessionExpired();
    }
    if (!res.ok) throw new ApiError(res.status, problemMessage(data, res.status));
    return data;
  } finally {
    clearTimeout(timer);
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
  if (data && typeof data === 'object') {
    if (typeof data.detail === 'string' && data.detail) return data.detail;
    if (typeof data.title === 'string' && data.title) return data.title;
  }
  return t('err_http', { status });
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
  state.clockOffsetMs = Math.abs(offset) > 3000 ? offset : 0;
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

function showError(message) {
  // Unchanged text is not rewritten, so the alert region does not repeat itself.
  if ($('flash-error-text').textContent !== message || $('flash-error').hidden) {
    $('flash-error-text').textContent = message;
  }
  $('flash-error').hidden = false;
}

function hideError() {
  $('flash-error').hidden = true;
  $('flash-error-text').textContent = '';
}

function showOk(message) {
  const box = $('flash-ok');
  box.textContent = message;
  clearTimeout(timers.flashOk);
  timers.flashOk = setTimeout(() => { box.textContent = ''; }, FLASH_OK_MS);
}

/** Action errors go next to the buttons when that alert's detail is open. */
function reportActionError(id, message) {
  if (!state.user) return; // the session ended; the login form says why
  if (state.detail && state.detail.id === id) {
    $('action-error').textContent = message;
    $('action-error').hidden = false;
  } else {
    showError(message);
  }
}

function clearActionError() {
  $('action-error').hidden = true;
  $('action-error').textContent = '';
}

// ---------------------------------------------------------------------------
// Session: login, logout, start and end
// ---------------------------------------------------------------------------

/** `notice` is an informational line (e.g. "logged out"), not an error. */
function showLoginView(message, { notice = false } = {}) {
  $('boot').hidden = true;
  $('console-view').hidden = true;
  $('status-strip').hidden = true;
  $('logout-btn').hidden = true;
  $('sound-toggle').hidden = true;
  $('sound-prompt').hidden = true;
  $('login-view').hidden = false;
  setLoginError(message || '', notice);
  $('login-username').focus();
}

function setLoginError(message, notice = false) {
  const box = $('login-error');
  box.textContent = message;
  box.className = notice ? 'muted' : 'error';
  box.hidden = !message;
}

async function onLoginSubmit(event) {
  event.preventDefault();
  const username = $('login-username').value.trim();
  const password = $('login-password').value;
  const totp = $('login-totp').value.replace(/\s+/g, '');
  if (!username || !password) {
    setLoginError(t('login_missing'));
    return;
  }
  const body = { username, password };
  if (totp) body.totp = totp;

  const button = $('login-submit');
  button.disabled = true;
  button.textContent = t('login_busy');
  try {
    const user = await api('POST', '/api/login', body);
    $('login-password').value = '';
    $('login-totp').value = '';
    startSession(user);
  } catch (err) {
    setLoginError(err.status === 401 ? err.message || t('login_failed') : err.message);
  } finally {
    button.disabled = false;
    button.textContent = t('login_submit');
  }
}

function startSession(user) {
  state.user = {
    username: String(user && user.username != null ? user.username : ''),
    role: user && user.role != null ? String(user.role) : '',
    region: user && user.region != null ? String(user.region) : null,
  };
  setLoginError('');
  hideError();
  $('boot').hidden = true;
  $('login-view').hidden = true;
  $('console-view').hidden = false;
  $('status-strip').hidden = false;
  $('logout-btn').hidden = false;
  $('sound-toggle').hidden = false;
  renderSound();
  renderUser();
  renderQueue();
  renderDetailPanel();

  stopTimers();
  timers.tick = setInterval(tickAges, 1000);
  timers.resync = setInterval(() => { resyncQueue(); }, RESYNC_INTERVAL_MS);
  timers.alarm = setInterval(repeatAlarm, ALARM_REPEAT_MS);

  openStream();
  // Put the keyboard in the queue once it has loaded, unless the officer
  // has already moved focus somewhere.
  resyncQueue().then(focusFirstRowIfIdle);
}

/** Tears down everything that belongs to a session. */
function endSession(message, options) {
  closeStream();
  stopTimers();
  state.user = null;
  state.alerts.clear();
  state.finished.clear();
  state.pending.clear();
  state.notices.clear();
  state.selectedId = null;
  state.detail = null;
  state.detailSeq += 1;
  state.detailFormsFor = null;
  state.systemStatus = null;
  state.syncFailed = false;
  setConn('idle');
  rows.clear();
  $('queue-body').replaceChildren();
  renderNotices();
  renderDetailPanel();
  hideError();
  document.title = t('app_title');
  showLoginView(message, options);
}

function stopTimers() {
  clearInterval(timers.tick);
  clearInterval(timers.resync);
  clearInterval(timers.alarm);
  clearTimeout(stream.retryTimer);
  clearTimeout(stream.syncRetryTimer);
}

function onSessionExpired() {
  if (state.user) endSession(t('session_ended'));
}

async function onLogout() {
  const button = $('logout-btn');
  button.disabled = true;
  try {
    await api('POST', '/api/logout', {});
    endSession(t('logged_out'), { notice: true });
  } catch (err) {
    if (err.status === 401) endSession(t('logged_out'), { notice: true });
    else showError(t('err_logout', { msg: err.message }));
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------
// Live stream (Server-Sent Events)
// ---------------------------------------------------------------------------

function openStream() {
  closeStream();
  if (state.conn !== 'lost') setConn('connecting');
  const es = new EventSource(STREAM_URL);
  stream.es = es;
  es.addEventListener('open', () => { if (stream.es === es) onStreamOpen(); });
  es.addEventListener('error', () => { if (stream.es === es) onStreamError(); });
  es.addEventListener('alert', (ev) => { if (stream.es === es) onAlertEvent(ev); });
  es.addEventListener('status', (ev) => { if (stream.es === es) onStatusEvent(ev); });
}

function closeStream() {
  if (stream.es) {
    stream.es.close();
    stream.es = null;
  }
}

/**
 * (Re)connected. Events may have been missed while down, so the queue is
 * fetched again before the "connection lost" banner goes away.
 */
async function onStreamOpen() {
  stream.retryMs = RECONNECT_MIN_MS;
  clearTimeout(stream.syncRetryTimer);
  const wasLost = state.conn === 'lost' || state.conn === 'syncing';
  if (wasLost) setConn('syncing');
  const ok = await resyncQueue();
  if (!state.user || !stream.es || stream.es.readyState !== EventSource.OPEN) return;
  if (ok) {
    setConn('live');
  } else {
    // Keep the banner up and try the re-fetch again shortly.
    setConn('syncing');
    stream.syncRetryTimer = setTimeout(() => {
      if (stream.es && stream.es.readyState === EventSource.OPEN) onStreamOpen();
    }, SYNC_RETRY_MS);
  }
}

function onStreamError() {
  if (!state.user) return;
  setConn('lost');
  // CONNECTING: the browser retries by itself (sending Last-Event-ID).
  // CLOSED: it gave up (e.g. an HTTP error status); retry ourselves after
  // checking that the session is still valid.
  if (stream.es && stream.es.readyState === EventSource.CLOSED) scheduleReconnect();
}

function scheduleReconnect() {
  clearTimeout(stream.retryTimer);
  const delay = stream.retryMs;
  stream.retryMs = Math.min(stream.retryMs * 2, RECONNECT_MAX_MS);
  stream.retryTimer = setTimeout(async () => {
    try {
      await api('GET', '/api/me'); // a 401 here ends the session
    } catch {
      // Server unreachable: the new stream will fail and reschedule.
    }
    if (state.user) openStream();
  }, delay);
}

function onAlertEvent(ev) {
  const alert = parseEventData(ev);
  if (!isAlert(alert)) return;
  if (sync.buffer) sync.buffer.push(alert);
  applyAlert(alert);
  renderAll();
}

function onStatusEvent(ev) {
  const data = parseEventData(ev);
  if (!data || typeof data !== 'object') return;
  state.systemStatus = data;
  renderSystemStatus();
}

function parseEventData(ev) {
  try {
    return JSON.parse(ev.data);
  } catch {
    return null;
  }
}

function setConn(conn) {
  if (conn === 'lost' && state.conn !== 'lost' && state.conn !== 'syncing') state.lostSince = Date.now();
  state.conn = conn;
  renderConn();
}

// ---------------------------------------------------------------------------
// Queue model
// ---------------------------------------------------------------------------

function isAlert(a) {
  return a && typeof a === 'object' && (typeof a.id === 'number' || typeof a.id === 'string')
    && typeof a.state === 'string' && a.state in STATE_RANK;
}

/** Overdue means "not acknowledged in time", so it only matters while open. */
function isOverdue(alert) {
  return alert.overdue === true && alert.state === 'open';
}

/** Queue order: priority 1 first, then oldest first. */
function compareAlerts(a, b) {
  return (Number(a.priority) || 99) - (Number(b.priority) || 99)
    || timeMs(a.first_at) - timeMs(b.first_at)
    || keyOf(a.id).localeCompare(keyOf(b.id), 'en', { numeric: true });
}

/**
 * True when `next` must not replace `prev` because it is older: alert state
 * only moves forward, and last_at never decreases. Replayed events and
 * snapshots that raced with live events are dropped by this rule.
 */
function isStale(prev, next) {
  if (!prev) return false;
  const rankDiff = STATE_RANK[next.state] - STATE_RANK[prev.state];
  if (rankDiff !== 0) return rankDiff < 0;
  return timeMs(next.last_at) < timeMs(prev.last_at);
}

/** Inserts, replaces or removes one alert, and raises notices when needed. */
function applyAlert(next) {
  const id = keyOf(next.id);
  if (state.finished.has(id)) return;
  const prev = state.alerts.get(id);
  if (isStale(prev, next)) return;

  if (next.state === 'resolved') {
    state.alerts.delete(id);
    state.finished.add(id);
    state.notices.delete(id);
  } else {
    state.alerts.set(id, next);
    considerNotice(prev, next);
  }
  mergeIntoDetail(next);
}

/**
 * Fetches open and acknowledged alerts and makes them the queue. Live events
 * that arrive meanwhile are buffered and re-applied on top, so the snapshot
 * never undoes something newer. Calls made during a run are coalesced into
 * one follow-up run. Resolves to true on success.
 */
function resyncQueue() {
  if (!state.user) return Promise.resolve(false);
  if (!sync.running) {
    sync.running = runSync().finally(() => { sync.running = null; });
    return sync.running;
  }
  if (!sync.queued) {
    sync.queued = sync.running.then(() => {
      sync.queued = null;
      return resyncQueue();
    });
  }
  return sync.queued;
}

async function runSync() {
  sync.buffer = [];
  try {
    const [open, acked] = await Promise.all([
      api('GET', '/api/alerts?state=open'),
      api('GET', '/api/alerts?state=acknowledged'),
    ]);
    if (!state.user) return false;
    applySnapshot([...(Array.isArray(open) ? open : []), ...(Array.isArray(acked) ? acked : [])]);
    for (const alert of sync.buffer) applyAlert(alert);
    state.syncFailed = false;
    renderAll();
    return true;
  } catch (err) {
    if (state.user) {
      state.syncFailed = true;
      renderConn();
      showError(t('err_queue', { msg: err.message }));
    }
    return false;
  } finally {
    sync.buffer = null;
  }
}

function applySnapshot(list) {
  const present = new Set();
  for (const alert of list) {
    if (!isAlert(alert)) continue;
    present.add(keyOf(alert.id));
    applyAlert(alert);
  }
  // Anything not in the snapshot was resolved (or left our region) meanwhile.
  for (const id of [...state.alerts.keys()]) {
    if (!present.has(id)) {
      state.alerts.delete(id);
      state.notices.delete(id);
      if (state.detail && state.detail.id === id) setTimeout(refreshDetail, 0);
    }
  }
}

function sortedAlerts() {
  return [...state.alerts.values()].sort(compareAlerts);
}

// ---------------------------------------------------------------------------
// Notices and sound
// ---------------------------------------------------------------------------

/**
 * Decides whether a change must be announced: a new (or newly raised)
 * priority-1 alert, one that became overdue, a repeated alarm on an open
 * priority-1 alert, or the holder pressing cancel.
 */
function considerNotice(prev, next) {
  const id = keyOf(next.id);
  if (next.cancel_pressed && !(prev && prev.cancel_pressed)) {
    addNotice(id, 'cancel', next);
    playPattern('chime');
  }
  if (next.state !== 'open') {
    // Acknowledged: someone is on it; urgent notices are no longer needed.
    const existing = state.notices.get(id);
    if (existing && URGENT_NOTICES.has(existing.kind)) state.notices.delete(id);
    else if (existing) existing.alert = next;
    return;
  }
  const becameOverdue = next.overdue === true && !(prev && prev.overdue === true);
  const becameP1 = next.priority === 1 && !(prev && prev.priority === 1);
  const repeated = prev && next.priority === 1 && Number(next.count) > Number(prev.count);

  if (becameOverdue) addNotice(id, 'overdue', next);
  else if (becameP1) addNotice(id, 'new_p1', next);
  else if (repeated) addNotice(id, 'repeated', next);
  else if (!prev && next.priority === 2) playPattern('chime');
  else {
    const existing = state.notices.get(id);
    if (existing) existing.alert = next;
    return;
  }
  if (becameOverdue || becameP1 || repeated) playPattern('alarm');
}

function addNotice(id, kind, alert) {
  // Re-inserting moves the notice to the end, so the latest one is read out.
  state.notices.delete(id);
  state.notices.set(id, { kind, alert });
}

/**
 * The notice box is an assertive live region: screen readers read out what
 * is added or changed. So notices are reconciled, not rebuilt, and a notice
 * is only replaced when its wording changes.
 */
function renderNotices() {
  const box = $('notices');
  for (const [id, entry] of noticeNodes) {
    if (!state.notices.has(id)) {
      entry.node.remove();
      noticeNodes.delete(id);
    }
  }
  for (const [id, notice] of state.notices) {
    const heading = t(`notice_${notice.kind}`);
    const text = noticeText(notice.alert);
    const signature = `${notice.kind}|${heading}|${text}`;
    const entry = noticeNodes.get(id);
    if (entry && entry.signature === signature) continue;
    const node = buildNotice(id, notice.kind, heading, text);
    if (entry) entry.node.replaceWith(node);
    else box.append(node);
    noticeNodes.set(id, { node, signature });
  }
}

function noticeText(alert) {
  return t('notice_text', {
    priority: alert.priority ?? '?',
    kind: tEnum('kind', alert.kind),
    case: alert.case_reference || alert.case_id || t('dash'),
    region: alert.region || t('dash'),
  });
}

function buildNotice(id, kind, heading, body) {
  const item = el('div', `notice notice-${kind}`);
  const text = el('p', 'notice-text');
  text.append(el('strong', null, heading), ' ', el('span', null, body));
  const open = el('button', 'btn btn-small', t('notice_open'));
  open.type = 'button';
  open.addEventListener('click', () => selectAlert(id, { focusRow: true }));
  const dismiss = el('button', 'btn btn-small', t('notice_dismiss'));
  dismiss.type = 'button';
  dismiss.addEventListener('click', () => {
    state.notices.delete(id);
    renderNotices();
    updateTitle();
  });
  item.append(text, open, dismiss);
  return item;
}

const PATTERNS = {
  // Three rising double-tones: hard to mistake for anything else.
  alarm: [0, 0.5, 1.0].flatMap((s) => [
    { f: 880, at: s, dur: 0.18, type: 'square', vol: 0.22 },
    { f: 1175, at: s + 0.22, dur: 0.18, type: 'square', vol: 0.22 },
  ]),
  chime: [
    { f: 660, at: 0, dur: 0.15, type: 'sine', vol: 0.3 },
    { f: 880, at: 0.2, dur: 0.2, type: 'sine', vol: 0.3 },
  ],
  lost: [
    { f: 392, at: 0, dur: 0.35, type: 'triangle', vol: 0.35 },
    { f: 262, at: 0.45, dur: 0.5, type: 'triangle', vol: 0.35 },
  ],
  confirm: [
    { f: 660, at: 0, dur: 0.1, type: 'sine', vol: 0.25 },
    { f: 990, at: 0.14, dur: 0.12, type: 'sine', vol: 0.25 },
  ],
};

/**
 * Several alerts arriving together play one pattern, not a cacophony; but a
 * more important pattern is never held back by a less important one.
 */
const PATTERN_GAP_S = 2;
const PATTERN_RANK = { confirm: 0, chime: 1, lost: 2, alarm: 3 };

function playPattern(name) {
  if (!sound.on || !sound.ctx) return;
  const ctx = sound.ctx;
  if (ctx.currentTime < sound.busyUntil && PATTERN_RANK[name] <= sound.busyRank) return;
  if (ctx.state === 'suspended') ctx.resume().catch(() => {});
  const start = ctx.currentTime + 0.05;
  const tones = PATTERNS[name];
  for (const tone of tones) playTone(ctx, start + tone.at, tone);
  const last = tones[tones.length - 1];
  sound.busyUntil = start + last.at + last.dur + PATTERN_GAP_S;
  sound.busyRank = PATTERN_RANK[name];
}

/** One oscillator tone with a short attack/release so it does not click. */
function playTone(ctx, at, { f, dur, type, vol }) {
  const osc = ctx.createOscillator();
  const gain = ctx.createGain();
  osc.type = type;
  osc.frequency.setValueAtTime(f, at);
  gain.gain.setValueAtTime(0, at);
  gain.gain.linearRampToValueAtTime(vol, at + 0.01);
  gain.gain.setValueAtTime(vol, at + dur - 0.02);
  gain.gain.linearRampToValueAtTime(0, at + dur);
  osc.connect(gain).connect(ctx.destination);
  osc.start(at);
  osc.stop(at + dur + 0.01);
}

/** Must run inside a user gesture, or the browser keeps audio blocked. */
function enableSound() {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) {
    showError(t('sound_unavailable'));
    return;
  }
  try {
    if (!sound.ctx) sound.ctx = new Ctx();
    sound.ctx.resume().catch(() => {});
  } catch {
    showError(t('sound_unavailable'));
    return;
  }
  sound.on = true;
  renderSound();
  playPattern('confirm');
}

function toggleSound() {
  if (sound.on) {
    sound.on = false;
    renderSound();
  } else {
    enableSound();
  }
}

function renderSound() {
  const toggle = $('sound-toggle');
  toggle.textContent = sound.on ? t('sound_on') : t('sound_off');
  toggle.setAttribute('aria-pressed', String(sound.on));
  toggle.classList.toggle('btn-warn', !sound.on);
  $('sound-prompt').hidden = !state.user || sound.on;
}

/** Periodic reminder while an urgent notice is unanswered or the link is down. */
function repeatAlarm() {
  const urgent = [...state.notices.values()].some((n) => URGENT_NOTICES.has(n.kind));
  if (urgent) playPattern('alarm');
  else if (isLost() && Date.now() - state.lostSince >= LOST_SOUND_AFTER_MS) playPattern('lost');
}

// ---------------------------------------------------------------------------
// Rendering: status strip
// ---------------------------------------------------------------------------

function renderAll() {
  renderQueue();
  renderNotices();
  renderDetailPanel();
}

function renderUser() {
  if (!state.user) return;
  $('st-user').textContent = t('user_label', {
    user: state.user.username,
    role: tEnum('role', state.user.role),
  });
  $('st-region').textContent = t('user_region', { region: state.user.region || t('region_all') });
}

function isLost() {
  return state.conn === 'lost' || state.conn === 'syncing';
}

function renderConn() {
  const node = $('st-conn');
  node.className = `st-item conn conn-${state.conn}`;
  node.textContent = state.conn === 'idle' ? '' : t(`conn_${state.conn}`);

  const banner = $('conn-banner');
  let text = '';
  if (state.user && state.conn === 'lost') text = t('banner_lost');
  else if (state.user && state.conn === 'syncing') text = t(state.syncFailed ? 'banner_sync_failed' : 'banner_syncing');
  // Only rewrite when changed: role="alert" re-announces on every change.
  if (banner.textContent !== text) banner.textContent = text;
  banner.hidden = !text;
  $('st-system').classList.toggle('stale', isLost());
}

function renderCounts() {
  const box = $('st-counts');
  box.replaceChildren(el('span', 'muted', t('counts_label')));
  const open = [0, 0, 0, 0];
  let acked = 0;
  for (const a of state.alerts.values()) {
    if (a.state === 'acknowledged') acked += 1;
    else if ([1, 2, 3, 4].includes(a.priority)) open[a.priority - 1] += 1;
  }
  open.forEach((n, i) => {
    // Short visible text; the full wording for screen readers.
    const item = el('span', `count ${n > 0 ? prioClass(i + 1) : 'count-zero'}`);
    const visible = el('span', null, t('count_prio_short', { p: i + 1, n }));
    visible.setAttribute('aria-hidden', 'true');
    item.append(visible, el('span', 'sr-only', t('count_prio', { p: i + 1, n })));
    box.append(item);
  });
  box.append(el('span', 'count count-acked', t('count_acked', { n: acked })));
}

function renderSystemStatus() {
  const box = $('st-system');
  const s = state.systemStatus;
  box.replaceChildren();
  if (!s) {
    box.hidden = true;
    return;
  }
  const flag = (labelKey, value) => {
    if (typeof value !== 'boolean') return;
    box.append(el('span', value ? 'sys sys-ok' : 'sys sys-down',
      `${t(labelKey)}: ${t(value ? 'sys_ok' : 'sys_down')}`));
  };
  flag('sys_broker', s.broker);
  flag('sys_database', s.database);
  if (Number.isFinite(s.devices_silent)) {
    box.append(el('span', s.devices_silent > 0 ? 'sys sys-warn' : 'sys sys-ok',
      t('sys_silent', { n: s.devices_silent })));
  }
  box.hidden = box.childElementCount === 0;
  // Values from before a lost connection may be out of date.
  box.classList.toggle('stale', isLost());
}

function updateTitle() {
  let p1 = 0;
  for (const a of state.alerts.values()) if (a.state === 'open' && a.priority === 1) p1 += 1;
  document.title = p1 > 0 ? t('title_p1', { n: p1 }) : t('app_title');
}

// ---------------------------------------------------------------------------
// Rendering: queue table
// ---------------------------------------------------------------------------

/**
 * Reconciles the table with the model. Rows are kept per id and only moved
 * when the order changes, so keyboard focus survives live updates.
 */
function renderQueue() {
  const body = $('queue-body');
  const active = document.activeElement;
  const focusedId = active && active.dataset && active.parentElement === body ? active.dataset.id : null;
  const focusedIndex = focusedId ? [...body.children].indexOf(active) : -1;

  for (const [id, tr] of rows) {
    if (!state.alerts.has(id)) {
      tr.remove();
      rows.delete(id);
    }
  }
  const list = sortedAlerts();
  list.forEach((alert, index) => {
    const id = keyOf(alert.id);
    let tr = rows.get(id);
    if (!tr) {
      tr = createRow(id);
      rows.set(id, tr);
    }
    fillRow(tr, alert);
    if (body.children[index] !== tr) body.insertBefore(tr, body.children[index] || null);
  });

  restoreRowFocus(focusedId, focusedIndex);
  $('queue-empty').hidden = list.length > 0;
  $('queue-table').hidden = list.length === 0;
  renderCounts();
  updateTitle();
}

function restoreRowFocus(focusedId, focusedIndex) {
  if (focusedId === null) return;
  if (document.activeElement !== document.body && document.activeElement !== null) return;
  const body = $('queue-body');
  const target = rows.get(focusedId)
    || body.children[Math.min(focusedIndex, body.children.length - 1)];
  if (target) target.focus();
}

function createRow(id) {
  const tr = document.createElement('tr');
  tr.dataset.id = id;
  tr.tabIndex = 0;
  for (let i = 0; i < 8; i += 1) tr.append(document.createElement('td'));
  return tr;
}

function fillRow(tr, alert) {
  const id = keyOf(alert.id);
  const [cPrio, cKind, cCase, cRisk, cRegion, cAge, cState, cCount] = tr.children;
  tr.className = [
    'row', prioClass(alert.priority), `state-${alert.state}`,
    isOverdue(alert) ? 'overdue' : '', state.selectedId === id ? 'selected' : '',
  ].filter(Boolean).join(' ');
  if (state.selectedId === id) tr.setAttribute('aria-current', 'true');
  else tr.removeAttribute('aria-current');

  const badge = el('span');
  fillPrioBadge(badge, alert.priority);
  cPrio.replaceChildren(badge);

  cKind.replaceChildren(el('span', 'kind', tEnum('kind', alert.kind)));
  if (alert.cancel_pressed) cKind.append(el('span', 'tag tag-warn', t('cancel_marker')));

  cCase.textContent = alert.case_reference || alert.case_id || t('dash');
  cRisk.replaceChildren(el('span', `risk risk-${alert.risk}`, alert.risk ? tEnum('risk', alert.risk) : t('dash')));
  cRegion.textContent = alert.region || t('dash');

  cAge.className = 'num age';
  tr.dataset.firstAt = String(timeMs(alert.first_at));
  cAge.textContent = fmtAge(nowMs() - timeMs(alert.first_at));

  cState.replaceChildren(el('span', `state state-${alert.state}`, tEnum('state', alert.state)));
  if (alert.state === 'acknowledged' && alert.acknowledged_by) {
    cState.append(el('span', 'muted small', t('acked_by', { user: alert.acknowledged_by })));
  }
  if (isOverdue(alert)) cState.append(el('span', 'tag tag-overdue', t('overdue')));

  cCount.className = 'num';
  cCount.textContent = alert.count ?? 1;
}

/** Updates only the age texts, once a second. */
function tickAges() {
  const now = nowMs();
  for (const tr of rows.values()) {
    const cell = tr.children[5];
    const text = fmtAge(now - Number(tr.dataset.firstAt));
    if (cell.textContent !== text) cell.textContent = text;
  }
  if (state.detail) renderDetailSub(state.detail.data.alert);
}

function focusFirstRowIfIdle() {
  const active = document.activeElement;
  if (active && active !== document.body) return;
  const first = $('queue-body').firstElementChild;
  if (first) first.focus();
}

// ---------------------------------------------------------------------------
// Keyboard and pointer on the queue
// ---------------------------------------------------------------------------

function rowIdFrom(node) {
  const tr = node && node.closest ? node.closest('#queue-body > tr') : null;
  return tr ? tr.dataset.id : null;
}

function onQueueClick(event) {
  const id = rowIdFrom(event.target);
  if (id !== null) selectAlert(id);
}

function onKeyDown(event) {
  if (!state.user || event.defaultPrevented) return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (isTypingTarget(event.target)) return;

  const rowId = rowIdFrom(event.target);
  const inPanels = event.target === document.body || (event.target.closest && event.target.closest('#console-view'));
  const targetId = rowId !== null ? rowId : state.selectedId;

  switch (event.key) {
    case 'Enter':
      if (rowId === null) return;
      selectAlert(rowId);
      break;
    case 'ArrowDown':
    case 'ArrowUp':
      if (rowId === null) return;
      moveRowFocus(event.target.closest('tr'), event.key === 'ArrowDown' ? 1 : -1);
      break;
    case 'a':
    case 'A':
      if (!inPanels || targetId === null) return;
      acknowledge(targetId, '');
      break;
    case 'r':
    case 'R':
      if (!inPanels || targetId === null) return;
      openResolve(targetId);
      break;
    default:
      return;
  }
  event.preventDefault();
}

function moveRowFocus(tr, step) {
  const target = step > 0 ? tr.nextElementSibling : tr.previousElementSibling;
  if (target) target.focus();
}

function highlightSelectedRow() {
  for (const [id, tr] of rows) {
    const selected = id === state.selectedId;
    tr.classList.toggle('selected', selected);
    if (selected) tr.setAttribute('aria-current', 'true');
    else tr.removeAttribute('aria-current');
  }
}

// ---------------------------------------------------------------------------
// Detail: loading and model
// ---------------------------------------------------------------------------

function selectAlert(id, { focusRow = false } = {}) {
  const key = keyOf(id);
  const sameAsShown = state.detail && state.detail.id === key;
  state.selectedId = key;
  highlightSelectedRow();
  if (focusRow && rows.get(key)) rows.get(key).focus();
  if (!sameAsShown) loadDetail(key, null);
}

function closeDetail() {
  state.selectedId = null;
  state.detail = null;
  state.detailSeq += 1;
  state.focusResolveOnLoad = false;
  highlightSelectedRow();
  renderDetailPanel();
}

/** `reason` is only set after the officer stated one to reveal a protected identity. */
async function loadDetail(id, reason) {
  const seq = ++state.detailSeq;
  const switching = !state.detail || state.detail.id !== id;
  if (switching) state.detail = null;
  $('detail-loading').hidden = false;
  $('detail-error').hidden = true;
  renderDetailPanel();

  const query = reason ? `?reason=${encodeURIComponent(reason)}` : '';
  try {
    const data = await api('GET', `/api/alerts/${encodeURIComponent(id)}${query}`);
    if (seq !== state.detailSeq) return; // a newer selection won
    if (!data || !isAlert(data.alert)) throw new ApiError(0, t('err_bad_response'));
    // The queue may already hold a newer version from the live stream.
    const live = state.alerts.get(id);
    if (live && isStale(live, data.alert)) data.alert = live;
    state.detail = { id, data, reason };
  } catch (err) {
    if (seq !== state.detailSeq) return;
    $('detail-error').textContent = t('detail_error', { msg: err.message });
    $('detail-error').hidden = false;
  } finally {
    if (seq === state.detailSeq) {
      $('detail-loading').hidden = true;
      renderDetailPanel();
    }
  }
}

function refreshDetail() {
  if (state.detail) loadDetail(state.detail.id, state.detail.reason);
  else if (state.selectedId !== null) loadDetail(state.selectedId, null);
}

/** Keeps the open detail in step with live updates of its alert. */
function mergeIntoDetail(alert) {
  if (!state.detail || state.detail.id !== keyOf(alert.id)) return;
  if (isStale(state.detail.data.alert, alert)) return;
  state.detail.data.alert = alert;
}

function openResolve(id) {
  const key = keyOf(id);
  if (state.detail && state.detail.id === key) {
    focusResolve();
  } else {
    state.focusResolveOnLoad = true;
    selectAlert(key);
  }
}

function focusResolve() {
  const select = $('resolve-outcome');
  if (!select.disabled) select.focus();
  $('resolve-form').scrollIntoView({ block: 'nearest' });
}

// ---------------------------------------------------------------------------
// Detail: actions
// ---------------------------------------------------------------------------

function currentAlert(id) {
  return state.alerts.get(id) || (state.detail && state.detail.id === id ? state.detail.data.alert : null);
}

async function acknowledge(id, note) {
  const key = keyOf(id);
  const alert = currentAlert(key);
  if (!alert || alert.state !== 'open') {
    reportActionError(key, t('err_not_open'));
    return;
  }
  if (state.pending.has(key)) return;
  await runAction(key, 'ack', note ? { note } : {}, () => {
    if (state.detail && state.detail.id === key) $('ack-note').value = '';
    showOk(t('msg_acked', { case: alert.case_reference || key }));
  });
}

async function resolve(id, outcome, note) {
  const key = keyOf(id);
  const alert = currentAlert(key);
  if (!alert || alert.state === 'resolved') {
    reportActionError(key, t('err_already_resolved'));
    return;
  }
  if (!OUTCOMES.includes(outcome)) {
    reportActionError(key, t('resolve_need_outcome'));
    $('resolve-outcome').focus();
    return;
  }
  if (state.pending.has(key)) return;
  const body = note ? { outcome, note } : { outcome };
  await runAction(key, 'resolve', body, () => {
    if (state.detail && state.detail.id === key) {
      $('resolve-outcome').value = '';
      $('resolve-note').value = '';
    }
    showOk(t('msg_resolved', { case: alert.case_reference || key }));
  });
}

/** POSTs an action, applies the returned alert, and re-reads the detail. */
async function runAction(key, verb, body, onSuccess) {
  state.pending.add(key);
  clearActionError();
  renderDetailPanel();
  try {
    const updated = await api('POST', `/api/alerts/${encodeURIComponent(key)}/${verb}`, body);
    if (isAlert(updated)) applyAlert(updated);
    onSuccess();
    renderAll();
    if (state.detail && state.detail.id === key) refreshDetail();
  } catch (err) {
    reportActionError(key, err.message);
    // 404/409: someone else changed it; make sure we show the truth.
    if (err.status === 404 || err.status === 409) resyncQueue();
  } finally {
    state.pending.delete(key);
    renderDetailPanel();
  }
}

function onAckSubmit(event) {
  event.preventDefault();
  if (state.detail) acknowledge(state.detail.id, $('ack-note').value.trim());
}

function onResolveSubmit(event) {
  event.preventDefault();
  if (state.detail) resolve(state.detail.id, $('resolve-outcome').value, $('resolve-note').value.trim());
}

function onRevealSubmit(event) {
  event.preventDefault();
  const reason = $('reveal-reason').value.trim();
  if (reason.length < 3) {
    $('reveal-error').textContent = t('reveal_need_reason');
    $('reveal-error').hidden = false;
    $('reveal-reason').focus();
    return;
  }
  if (!state.detail) return;
  $('reveal-error').hidden = true;
  $('reveal-form').hidden = true;
  $('reveal-reason').value = '';
  loadDetail(state.detail.id, reason);
}

function showRevealForm() {
  $('reveal-form').hidden = false;
  $('reveal-error').hidden = true;
  $('reveal-reason').focus();
}

function hideRevealForm() {
  $('reveal-form').hidden = true;
  $('reveal-reason').value = '';
  $('reveal-btn').focus();
}

// ---------------------------------------------------------------------------
// Detail: rendering
// ---------------------------------------------------------------------------

function renderDetailPanel() {
  const detail = state.detail;
  const hasSelection = state.selectedId !== null;
  $('detail-placeholder').hidden = hasSelection;
  $('detail-close').hidden = !hasSelection;
  $('detail-refresh').hidden = !detail;
  $('detail').hidden = !detail;
  if (!hasSelection) {
    $('detail-loading').hidden = true;
    $('detail-error').hidden = true;
  }
  if (!detail) return;

  resetFormsIfNewAlert(detail.id);
  const { alert } = detail.data;
  renderDetailHeader(alert);
  renderActions(alert);
  renderReasons(alert.reasons);
  renderCase(detail.data.case, alert);
  renderPerson(detail.data.person, detail.reason);
  renderMap($('d-map'), $('d-map-legend'), alert, detail.data.person, detail.data.orders);
  renderOrders(detail.data.orders);
  renderDevice(detail.data.device, alert);
  renderAlertFacts(alert);
  renderHistory(detail.data.history);

  if (state.focusResolveOnLoad) {
    state.focusResolveOnLoad = false;
    focusResolve();
  }
}

/** Typed notes belong to one alert: clear them when another is shown. */
function resetFormsIfNewAlert(id) {
  if (state.detailFormsFor === id) return;
  state.detailFormsFor = id;
  $('ack-note').value = '';
  $('resolve-outcome').value = '';
  $('resolve-note').value = '';
  $('reveal-form').hidden = true;
  $('reveal-reason').value = '';
  $('reveal-error').hidden = true;
  clearActionError();
}

function renderDetailHeader(alert) {
  fillPrioBadge($('d-priority'), alert.priority);
  $('d-title').textContent = t('detail_title', {
    kind: tEnum('kind', alert.kind),
    case: alert.case_reference || alert.case_id || t('dash'),
  });
  renderDetailSub(alert);
  $('detail').className = `detail ${prioClass(alert.priority)}${isOverdue(alert) ? ' overdue' : ''}`;

  $('d-overdue').hidden = !isOverdue(alert);
  $('d-cancel').hidden = !alert.cancel_pressed || alert.state === 'resolved';
  const resolved = $('d-resolved');
  resolved.hidden = alert.state !== 'resolved';
  resolved.textContent = alert.state === 'resolved'
    ? t('resolved_banner', {
      user: alert.resolved_by || t('dash'),
      at: fmtTime(alert.resolved_at),
      outcome: alert.outcome ? tEnum('outcome', alert.outcome) : t('dash'),
    })
    : '';
}

function renderDetailSub(alert) {
  const text = [
    tEnum('state', alert.state),
    t('detail_age', { age: fmtAge(nowMs() - timeMs(alert.first_at)) }),
    t('detail_count', { n: alert.count ?? 1 }),
  ].join(' · ');
  if ($('d-sub').textContent !== text) $('d-sub').textContent = text;
}

function renderActions(alert) {
  const pending = state.pending.has(keyOf(alert.id));
  const canAck = alert.state === 'open' && !pending;
  const canResolve = alert.state !== 'resolved' && !pending;
  $('ack-btn').disabled = !canAck;
  $('ack-note').disabled = !canAck;
  $('d-actions').hidden = alert.state === 'resolved';
  $('ack-form').hidden = alert.state !== 'open';
  $('resolve-form').hidden = alert.state === 'resolved';
  $('resolve-outcome').disabled = !canResolve;
  $('resolve-note').disabled = !canResolve;
  syncResolveButton();
  if (pending) $('resolve-btn').disabled = true;
}

/** Resolve stays disabled until an outcome is chosen. */
function syncResolveButton() {
  const select = $('resolve-outcome');
  $('resolve-btn').disabled = select.disabled || !OUTCOMES.includes(select.value);
}

function renderReasons(reasons) {
  const list = $('d-reasons');
  list.replaceChildren();
  const items = Array.isArray(reasons) ? reasons : [];
  for (const reason of items) list.append(el('li', null, reason));
  if (items.length === 0) list.append(el('li', 'muted', t('no_reasons')));
}

function renderCase(kase, alert) {
  const c = kase || {};
  fillDl($('d-case'), [
    ['f_reference', c.reference || alert.case_reference],
    ['f_risk', el('span', `risk risk-${c.risk || alert.risk}`, tEnum('risk', c.risk || alert.risk))],
    ['f_region', c.region || alert.region],
  ]);
  const plan = $('d-plan');
  plan.textContent = c.response_plan || t('no_plan');
  plan.classList.toggle('muted', !c.response_plan);
}

function renderPerson(person, reason) {
  const p = person || {};
  const masked = p.masked === true;
  const note = $('d-person-note');
  if (masked) {
    note.textContent = t(reason ? 'reveal_still_masked' : 'masked_note');
  } else if (p.protected_identity) {
    note.textContent = t('revealed_note');
  }
  note.hidden = !(masked || p.protected_identity);

  const phone = p.phone ? el('a', 'phone', p.phone) : null;
  if (phone) phone.setAttribute('href', `tel:${String(p.phone).replace(/[^0-9+]/g, '')}`);
  fillDl($('d-person'), [
    ['f_name', p.name],
    ['f_phone', phone],
    ['f_address', p.address && p.address.text],
    ['f_protected', t(p.protected_identity ? 'yes' : 'no')],
  ]);
  $('reveal-area').hidden = !masked;
}

function renderOrders(orders) {
  const box = $('d-orders');
  box.replaceChildren();
  const list = Array.isArray(orders) ? orders : [];
  if (list.length === 0) {
    box.append(el('p', 'muted', t('no_orders')));
    return;
  }
  for (const order of list) box.append(buildOrder(order));
}

function buildOrder(order) {
  const card = el('div', 'order');
  const restrained = order.restrained || {};
  card.append(el('p', 'order-kind', tEnum('order', order.kind)));
  const dl = el('dl', 'kv');
  const zones = Array.isArray(order.zones) ? order.zones : [];
  fillDl(dl, [
    ['f_restrained', restrained.name],
    ['f_description', restrained.description],
    ['f_valid', t('valid_range', { from: fmtTime(order.valid_from), to: fmtTime(order.valid_to) })],
    ['f_zones', zones.map((z) => (z && z.name) || t('dash')).join(', ')],
    ['f_order_id', order.id],
  ]);
  card.append(dl);
  return card;
}

function renderDevice(device, alert) {
  const dl = $('d-device');
  if (!device) {
    fillDl(dl, [['f_device_id', alert.device_id]]);
    dl.append(el('dd', 'muted', t('no_device')));
    return;
  }
  // Health is what the device last told about itself (GET /api/devices/{id}).
  const health = device.health || {};
  fillDl(dl, [
    ['f_device_id', device.id],
    ['f_device_kind', device.kind ? tEnum('devkind', device.kind) : null],
    ['f_model', device.model],
    ['f_status', device.status ? tEnum('devstatus', device.status) : null],
    ['f_connection', health.connection ? tEnum('devstatus', health.connection) : null],
    ['f_last_heard', health.last_heard_at ? fmtTime(health.last_heard_at) : null],
    ['f_battery', Number.isFinite(health.battery)
      ? t(health.charging ? 'battery_pct_charging' : 'battery_pct', { n: health.battery }) : null],
    ['f_signal', Number.isFinite(health.rssi) ? t('rssi_dbm', { n: health.rssi }) : null],
    ['f_firmware', health.fw],
  ]);
}

function renderAlertFacts(alert) {
  const pos = validPosition(alert.position);
  fillDl($('d-alert'), [
    ['f_alert_id', alert.id],
    ['f_first_at', fmtTime(alert.first_at)],
    ['f_last_at', fmtTime(alert.last_at)],
    ['f_count', alert.count ?? 1],
    ['f_position', pos ? t(pos.acc ? 'position_fmt' : 'position_fmt_noacc', {
      lat: pos.lat.toFixed(5), lon: pos.lon.toFixed(5), acc: pos.acc ? Math.round(pos.acc) : 0,
    }) : t('position_none')],
    ['f_acked', alert.acknowledged_by
      ? t('by_at', { user: alert.acknowledged_by, at: fmtTime(alert.acknowledged_at) }) : null],
    ['f_resolved', alert.resolved_by
      ? t('by_at', { user: alert.resolved_by, at: fmtTime(alert.resolved_at) }) : null],
    ['f_outcome', alert.outcome ? tEnum('outcome', alert.outcome) : null],
  ]);
}

function renderHistory(history) {
  const list = $('d-history');
  list.replaceChildren();
  const items = Array.isArray(history) ? history : [];
  if (items.length === 0) {
    list.append(el('li', 'muted', t('no_history')));
    return;
  }
  for (const h of items) {
    const li = el('li');
    li.append(
      el('time', 'h-at', fmtTime(h.at)),
      el('span', 'h-action', tEnum('action', h.action)),
      el('span', 'h-actor', h.actor || t('actor_system')),
    );
    if (h.note) li.append(el('span', 'h-note', h.note));
    list.append(li);
  }
}

// ---------------------------------------------------------------------------
// Situation map: inline SVG, no tiles, north up
// ---------------------------------------------------------------------------

const SVG_NS = 'http://www.w3.org/2000/svg';
const MAP_W = 640;
const MAP_H = 400;
const MAP_PAD = 44;          // px kept free around the shapes for markers and labels
const MAP_MIN_SPAN_M = 300;  // never zoom in further than this, so a lone point has context
const M_PER_DEG = (6371008.8 * Math.PI) / 180;
let mapSeq = 0;

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

const r1 = (n) => Math.round(n * 10) / 10;

function isLonLat(c) {
  return Array.isArray(c) && c.length >= 2 && Number.isFinite(c[0]) && Number.isFinite(c[1])
    && Math.abs(c[0]) <= 180 && Math.abs(c[1]) <= 90;
}

function validPosition(p) {
  if (!p || !isLonLat([p.lon, p.lat])) return null;
  return { lat: p.lat, lon: p.lon, acc: Number.isFinite(p.acc_m) && p.acc_m > 0 ? p.acc_m : 0 };
}

/** Reads zones from the orders; GeoJSON Point (+radius_m) or Polygon. */
function collectZones(orders) {
  const zones = [];
  const bad = [];
  for (const order of Array.isArray(orders) ? orders : []) {
    for (const zone of Array.isArray(order && order.zones) ? order.zones : []) {
      const parsed = parseZone(zone);
      if (parsed) zones.push(parsed);
      else bad.push((zone && zone.name) || t('dash'));
    }
  }
  return { zones, bad };
}

function parseZone(zone) {
  const g = zone && zone.geometry;
  const name = (zone && zone.name) || '';
  if (!g) return null;
  if (g.type === 'Point' && isLonLat(g.coordinates)) {
    const r = Number(zone.radius_m);
    return Number.isFinite(r) && r > 0
      ? { name, type: 'circle', center: g.coordinates, r }
      : { name, type: 'point', center: g.coordinates };
  }
  if (g.type === 'Polygon' && Array.isArray(g.coordinates)) {
    const rings = g.coordinates.filter((ring) => Array.isArray(ring) && ring.length >= 3 && ring.every(isLonLat));
    if (rings.length > 0) return { name, type: 'polygon', rings };
  }
  return null;
}

/**
 * Local equirectangular projection around (lat0, lon0): metres east and north.
 * x = (lon - lon0)·cos(lat0), y = lat - lat0, both scaled to metres. Good to
 * well under 1 % over the few kilometres a situation map spans.
 */
function makeProjection(lat0, lon0) {
  const kx = Math.cos((lat0 * Math.PI) / 180) * M_PER_DEG;
  return ([lon, lat]) => [(lon - lon0) * kx, (lat - lat0) * M_PER_DEG];
}

function makeBounds() {
  return {
    minX: Infinity, minY: Infinity, maxX: -Infinity, maxY: -Infinity,
    add([x, y], r = 0) {
      this.minX = Math.min(this.minX, x - r);
      this.maxX = Math.max(this.maxX, x + r);
      this.minY = Math.min(this.minY, y - r);
      this.maxY = Math.max(this.maxY, y + r);
    },
  };
}

/** Uniform scale so everything fits with a margin; SVG y grows downwards. */
function fitView(b) {
  const cx = (b.minX + b.maxX) / 2;
  const cy = (b.minY + b.maxY) / 2;
  const spanX = Math.max(b.maxX - b.minX, MAP_MIN_SPAN_M);
  const spanY = Math.max(b.maxY - b.minY, MAP_MIN_SPAN_M);
  const s = Math.min((MAP_W - 2 * MAP_PAD) / spanX, (MAP_H - 2 * MAP_PAD) / spanY);
  return { s, px: ([x, y]) => [MAP_W / 2 + (x - cx) * s, MAP_H / 2 - (y - cy) * s] };
}

function renderMap(container, legend, alert, person, orders) {
  container.replaceChildren();
  legend.replaceChildren();

  const pos = validPosition(alert.position);
  const addr = person && person.address && isLonLat([person.address.lon, person.address.lat])
    ? person.address : null;
  const { zones, bad } = collectZones(orders);

  const origin = pos || addr || firstZoneCoordinate(zones);
  if (!origin) {
    container.append(el('p', 'muted', t('map_empty')));
    addLegendNotes(legend, pos, bad);
    return;
  }
  const project = makeProjection(origin.lat, origin.lon);
  const shapes = projectShapes(project, pos, addr, zones);
  const view = fitView(shapes.bounds);

  const titleId = `map-title-${++mapSeq}`;
  const root = svg('svg', {
    viewBox: `0 0 ${MAP_W} ${MAP_H}`, class: 'map-svg', role: 'img', 'aria-labelledby': titleId,
  });
  root.append(svg('title', { id: titleId }, t('map_title')));
  root.append(svg('rect', { x: 0, y: 0, width: MAP_W, height: MAP_H, class: 'map-bg' }));
  drawGrid(root, view);
  for (const zone of shapes.zones) drawZone(root, view, zone);
  if (shapes.addr) drawAddress(root, view, shapes.addr);
  if (shapes.pos) drawPosition(root, view, shapes.pos);
  drawNorthArrow(root);
  drawScaleBar(root, view);
  container.append(root);

  buildLegend(legend, pos, zones, addr);
  addLegendNotes(legend, pos, bad);
}

function firstZoneCoordinate(zones) {
  const z = zones[0];
  if (!z) return null;
  const c = z.type === 'polygon' ? z.rings[0][0] : z.center;
  return { lon: c[0], lat: c[1] };
}

function projectShapes(project, pos, addr, zones) {
  const bounds = makeBounds();
  const out = { bounds, pos: null, addr: null, zones: [] };
  if (pos) {
    out.pos = { c: project([pos.lon, pos.lat]), r: pos.acc };
    bounds.add(out.pos.c, pos.acc);
  }
  if (addr) {
    out.addr = { c: project([addr.lon, addr.lat]) };
    bounds.add(out.addr.c);
  }
  for (const z of zones) {
    if (z.type === 'polygon') {
      const rings = z.rings.map((ring) => ring.map(project));
      rings.forEach((ring) => ring.forEach((p) => bounds.add(p)));
      out.zones.push({ name: z.name, type: 'polygon', rings });
    } else {
      const c = project(z.center);
      bounds.add(c, z.r || 0);
      out.zones.push({ name: z.name, type: z.type, c, r: z.r || 0 });
    }
  }
  return out;
}

/** Faint grid at the scale-bar step, to help judge distances. */
function drawGrid(root, view) {
  const step = niceLength(MAP_W / view.s / 4);
  const stepPx = step * view.s;
  if (stepPx < 20) return;
  const g = svg('g', { class: 'map-grid' });
  for (let x = (MAP_W / 2) % stepPx; x < MAP_W; x += stepPx) g.append(svg('line', { x1: r1(x), y1: 0, x2: r1(x), y2: MAP_H }));
  for (let y = (MAP_H / 2) % stepPx; y < MAP_H; y += stepPx) g.append(svg('line', { x1: 0, y1: r1(y), x2: MAP_W, y2: r1(y) }));
  root.append(g);
}

function drawZone(root, view, zone) {
  const g = svg('g', { class: 'map-zone' });
  // Labels sit just inside the top edge, leaving the middle (where the
  // address or the alarm often is) free.
  let labelAt;
  if (zone.type === 'polygon') {
    // Holes are extra rings; evenodd leaves them unfilled.
    const outer = zone.rings[0].map((p) => view.px(p));
    const d = zone.rings.map((ring) => `M${ring.map((p) => view.px(p).map(r1).join(',')).join('L')}Z`).join('');
    g.append(svg('path', { d, 'fill-rule': 'evenodd', class: 'zone-shape' }));
    const top = Math.min(...outer.map((p) => p[1]));
    const height = Math.max(...outer.map((p) => p[1])) - top;
    labelAt = [view.px(centroid(zone.rings[0]))[0], height > 40 ? top + 16 : top - 6];
  } else {
    const [x, y] = view.px(zone.c);
    const r = zone.type === 'circle' ? Math.max(zone.r * view.s, 3) : 5;
    g.append(svg('circle', { cx: r1(x), cy: r1(y), r: r1(r), class: zone.type === 'circle' ? 'zone-shape' : 'zone-point' }));
    labelAt = [x, r > 40 ? y - r + 18 : y - r - 6];
  }
  if (zone.name) {
    g.append(svg('text', { x: r1(labelAt[0]), y: r1(labelAt[1]), class: 'map-label zone-label', 'text-anchor': 'middle' }, zone.name));
  }
  root.append(g);
}

function centroid(ring) {
  const n = ring.length;
  const sum = ring.reduce((acc, [x, y]) => [acc[0] + x, acc[1] + y], [0, 0]);
  return [sum[0] / n, sum[1] / n];
}

function drawAddress(root, view, addr) {
  const [x, y] = view.px(addr.c);
  const g = svg('g', { class: 'map-address' });
  // A small house: square body with a roof.
  g.append(svg('path', { d: `M${r1(x - 7)},${r1(y + 7)}V${r1(y - 1)}L${r1(x)},${r1(y - 8)}L${r1(x + 7)},${r1(y - 1)}V${r1(y + 7)}Z` }));
  g.append(svg('text', { x: r1(x + 11), y: r1(y + 4), class: 'map-label' }, t('map_address')));
  root.append(g);
}

function drawPosition(root, view, pos) {
  const [x, y] = view.px(pos.c);
  const g = svg('g', { class: 'map-position' });
  if (pos.r > 0) g.append(svg('circle', { cx: r1(x), cy: r1(y), r: r1(Math.max(pos.r * view.s, 1)), class: 'acc' }));
  g.append(svg('circle', { cx: r1(x), cy: r1(y), r: 7, class: 'dot' }));
  g.append(svg('path', { d: `M${r1(x - 12)},${r1(y)}H${r1(x + 12)}M${r1(x)},${r1(y - 12)}V${r1(y + 12)}`, class: 'cross' }));
  g.append(svg('text', { x: r1(x + 12), y: r1(y - 10), class: 'map-label' }, t('map_alarm')));
  root.append(g);
}

function drawNorthArrow(root) {
  const x = MAP_W - 28;
  const y = 16;
  const g = svg('g', { class: 'map-north' });
  g.append(svg('rect', { x: x - 16, y: y - 6, width: 32, height: 52, rx: 4, class: 'map-box' }));
  g.append(svg('path', { d: `M${x},${y}L${x + 8},${y + 22}L${x},${y + 17}L${x - 8},${y + 22}Z` }));
  g.append(svg('text', { x, y: y + 40, 'text-anchor': 'middle', class: 'map-label north-label' }, t('map_north')));
  root.append(g);
}

/** A round length (1, 2 or 5 × 10^n metres) no longer than `maxM`. */
function niceLength(maxM) {
  const pow = 10 ** Math.floor(Math.log10(Math.max(maxM, 1)));
  for (const m of [5, 2, 1]) if (m * pow <= maxM) return m * pow;
  return pow;
}

function drawScaleBar(root, view) {
  const metres = niceLength(MAP_W / view.s / 4);
  const len = metres * view.s;
  const x = 16;
  const y = MAP_H - 18;
  const g = svg('g', { class: 'map-scale' });
  g.append(svg('rect', { x: x - 8, y: y - 24, width: r1(len + 16), height: 34, rx: 4, class: 'map-box' }));
  g.append(svg('path', { d: `M${x},${y - 6}V${y}H${r1(x + len)}V${y - 6}`, class: 'scale-line' }));
  g.append(svg('text', { x, y: y - 10, class: 'map-label' }, fmtDistance(metres)));
  root.append(g);
}

function buildLegend(legend, pos, zones, addr) {
  const item = (cls, text) => {
    const li = el('li');
    li.append(el('span', `swatch ${cls}`), el('span', null, text));
    legend.append(li);
  };
  if (pos) {
    item('swatch-position', pos.acc
      ? t('legend_position', { acc: Math.round(pos.acc) })
      : t('legend_position_noacc'));
  }
  for (const z of zones) {
    item('swatch-zone', z.type === 'circle'
      ? t('legend_zone_circle', { name: z.name, r: Math.round(z.r) })
      : t('legend_zone', { name: z.name }));
  }
  if (addr) item('swatch-address', t('legend_address'));
}

function addLegendNotes(legend, pos, bad) {
  if (!pos) legend.append(el('li', 'muted', t('legend_no_position')));
  for (const name of bad) legend.append(el('li', 'muted', t('legend_zone_bad', { name })));
}

// ---------------------------------------------------------------------------
// Language
// ---------------------------------------------------------------------------

function onLanguageChange(event) {
  setLang(event.target.value);
  rerenderForLanguage();
}

/** Static texts are handled by applyStatic; everything built in JS is redrawn. */
function rerenderForLanguage() {
  $('lang-select').value = getLang();
  renderSound();
  renderConn();
  renderSystemStatus();
  if (state.user) {
    renderUser();
    renderAll();
  } else {
    document.title = t('app_title');
    $('login-submit').textContent = t('login_submit');
  }
}

// ---------------------------------------------------------------------------
// Start-up
// ---------------------------------------------------------------------------

function wireEvents() {
  $('lang-select').addEventListener('change', onLanguageChange);
  $('login-form').addEventListener('submit', onLoginSubmit);
  $('logout-btn').addEventListener('click', onLogout);
  $('sound-toggle').addEventListener('click', toggleSound);
  $('sound-enable').addEventListener('click', enableSound);
  $('flash-error-close').addEventListener('click', hideError);
  $('queue-body').addEventListener('click', onQueueClick);
  $('detail-close').addEventListener('click', closeDetail);
  $('detail-refresh').addEventListener('click', refreshDetail);
  $('ack-form').addEventListener('submit', onAckSubmit);
  $('resolve-form').addEventListener('submit', onResolveSubmit);
  $('resolve-outcome').addEventListener('change', syncResolveButton);
  $('reveal-btn').addEventListener('click', showRevealForm);
  $('reveal-cancel').addEventListener('click', hideRevealForm);
  $('reveal-form').addEventListener('submit', onRevealSubmit);
  $('reveal-form').addEventListener('keydown', (ev) => { if (ev.key === 'Escape') hideRevealForm(); });
  document.addEventListener('keydown', onKeyDown);
  // Background tabs may throttle timers; catch up as soon as we are visible.
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && state.user) resyncQueue();
  });
}

async function boot() {
  applyStatic(document);
  $('lang-select').value = getLang();
  document.title = t('app_title');
  wireEvents();
  try {
    const me = await api('GET', '/api/me');
    startSession(me);
  } catch (err) {
    showLoginView(err.status === 401 ? '' : err.message);
  }
}

boot();
