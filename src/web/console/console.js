// vakt duty-officer console: the live alert queue, its detail and actions.
//
// Plain ES module, no build step, no dependencies. Served at /console.js under
// a strict CSP: no inline scripts or styles, no eval, same-origin requests
// only (plus the tile server, when one is configured). See common.js for the
// rules on text and visibility that every page follows.

import { t, tEnum, has as hasText, getLang, setLang, applyStatic } from './i18n.js';
import {
  $, el, button, fillDl, phoneLink, isTypingTarget, nowMs, timeMs, fmtTime, fmtDate, fmtClock, fmtAge, fmtDistance,
  api, apiOptional, ApiError, setUnauthorizedHandler, OUTCOMES, wireLoginForm, setLoginMessage, normaliseUser,
} from './common.js';
import { renderSituationMap, validPosition } from './map.js';
import { fillPlaceCell, renderWhere, placeName, wayFromHome } from './place.js';
import {
  sessionPhase, attentionSummary, unlockAudio, audioBlocked, startLostSound, stopLostSound, RISK_RANK, playTone,
} from './watch.js';

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

const STREAM_URL = '/api/alerts/stream';
// Belt and braces: the event stream should carry every change, but a stalled
// proxy can keep a dead stream "open". A periodic re-fetch bounds how long a
// missed event can go unseen.
const RESYNC_INTERVAL_MS = 30000;
const SYNC_RETRY_MS = 5000;
const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 30000;
// The stream sends `status` every 10 s; without one for this long the strip
// is marked as stale rather than showing old values as current.
const STATUS_STALE_MS = 35000;
// While an urgent notice is unanswered the alarm sound repeats this often.
const ALARM_REPEAT_MS = 15000;
const FLASH_OK_MS = 6000;

const STATE_RANK = { open: 0, acknowledged: 1, resolved: 2 };
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
  detailDirty: false,         // the shown alert changed since the detail was drawn
  systemStatus: null,         // last GET /api/status or `status` event payload
  systemStatusAt: 0,
  tileUrl: null,              // from GET /api/console-config; null: geometry only
  conn: 'idle',               // idle | connecting | live | lost | syncing
  lostSince: 0,
  syncFailed: false,
};

const stream = { es: null, retryMs: RECONNECT_MIN_MS, retryTimer: 0, syncRetryTimer: 0 };
const timers = { tick: 0, resync: 0, alarm: 0, flashOk: 0 };
const sync = { running: null, queued: null, buffer: null };
const sound = { ctx: null, on: false, busyUntil: 0, busyRank: -1 };
const rows = new Map();       // id -> <tr>, reused across renders to keep focus
const noticeNodes = new Map(); // id -> {node, signature} currently in the notice box

const keyOf = (id) => String(id);

function prioClass(priority) {
  return [1, 2, 3, 4].includes(priority) ? `prio-${priority}` : 'prio-x';
}

/** The priority badge: colour from the class, and the number as text. */
function fillPrioBadge(node, priority) {
  node.className = `prio-badge ${prioClass(priority)}`;
  node.replaceChildren(
    el('span', 'sr-only', `${t('priority_sr_prefix')} `),
    el('span', 'prio-num', priority ?? '?'),
  );
}

function caseLabel(alert) {
  return alert.case_reference || alert.case_id || t('dash');
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
  $('admin-link').hidden = true;
  $('sound-toggle').hidden = true;
  $('shortcuts-toggle').hidden = true;
  $('sound-prompt').hidden = true;
  $('login-view').hidden = false;
  setLoginMessage(message || '', notice);
  $('login-username').focus();
}

function startSession(user) {
  state.user = normaliseUser(user);
  // The console is the duty officers' tool (live stream, acknowledge, resolve); an
  // investigator reads alerts through the API and the cases on the read-only case pages.
  if (state.user.role === 'investigator') {
    location.replace('/admin');
    return;
  }
  hideError();
  $('boot').hidden = true;
  $('login-view').hidden = true;
  $('console-view').hidden = false;
  $('status-strip').hidden = false;
  $('logout-btn').hidden = false;
  $('admin-link').hidden = !['coordinator', 'admin'].includes(state.user.role);
  $('sound-toggle').hidden = false;
  $('shortcuts-toggle').hidden = false;
  renderSound();
  renderShortcuts();
  renderUser();
  renderQueue();
  renderDetailPanel();

  stopTimers();
  timers.tick = setInterval(tick, 1000);
  timers.resync = setInterval(() => { resyncQueue(); }, RESYNC_INTERVAL_MS);
  timers.alarm = setInterval(repeatAlarm, ALARM_REPEAT_MS);

  loadConsoleConfig();
  loadSystemStatus();
  openStream();
  startWatch();
  // Put the keyboard in the queue once it has loaded, unless the officer
  // has already moved focus somewhere.
  resyncQueue().then(focusFirstRowIfIdle);
}

/** Tile server for the situation map; absent or null means geometry only. */
async function loadConsoleConfig() {
  try {
    const config = await apiOptional('GET', '/api/console-config');
    const url = config && typeof config.tile_url === 'string' ? config.tile_url : null;
    state.tileUrl = url && /^https?:\/\//.test(url) ? url : null;
    if (state.detail) renderDetailPanel();
  } catch {
    state.tileUrl = null; // the map works without tiles
  }
}

/** The first status comes from the API; afterwards the stream sends one every 10 s. */
async function loadSystemStatus() {
  try {
    const status = await apiOptional('GET', '/api/status');
    if (status && typeof status === 'object') setSystemStatus(status);
  } catch {
    // The stream will bring it.
  }
}

/** Tears down everything that belongs to a session. */
function endSession(message, options) {
  closeStream();
  stopTimers();
  stopWatch();
  state.user = null;
  state.alerts.clear();
  state.finished.clear();
  state.pending.clear();
  state.notices.clear();
  clearAnnouncements();
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
  renderSystemStatus();
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
  if (state.user) onSessionLost();
}

async function onLogout() {
  const logout = $('logout-btn');
  logout.disabled = true;
  try {
    await api('POST', '/api/logout', {});
    endSession(t('logged_out'), { notice: true });
  } catch (err) {
    if (err.status === 401) endSession(t('logged_out'), { notice: true });
    else showError(t('err_logout', { msg: err.message }));
  } finally {
    logout.disabled = false;
  }
}

// ---------------------------------------------------------------------------
// Live stream (Server-Sent Events)
// ---------------------------------------------------------------------------

function openStream() {
  closeStream();
  if (state.conn !== 'lost') setConn('connecting');
  const es = new EventSource(streamUrl());
  stream.es = es;
  watchStream(es);
  es.addEventListener('open', () => { if (stream.es === es) onStreamOpen(); });
  es.addEventListener('error', () => { if (stream.es === es) onStreamError(); });
  es.addEventListener('alert', (ev) => { if (stream.es === es) onAlertEvent(ev); });
  es.addEventListener('status', (ev) => { if (stream.es === es) onStatusEvent(ev); });
  es.addEventListener('session_end', (ev) => { if (stream.es === es) onSessionEndEvent(ev); });
}

/**
 * The server ends the stream when the session ends (logout here or in another tab,
 * idle or absolute limit): show the login at once instead of reconnecting.
 */
function onSessionEndEvent(ev) {
  const data = parseEventData(ev) || {};
  closeStream();
  if (!state.user) return;
  if (data.reason === 'logged_out') endSession(t('logged_out'), { notice: true });
  else if (data.reason === 'unverified') {
    // The server could not check the session just now: connect again, which asks
    // GET /api/me first and shows the login if the session is over.
    setConn('lost');
    scheduleReconnect();
  } else onSessionLost();
}

function closeStream() {
  if (stream.es) {
    stream.es.close();
    stream.es = null;
  }
}

/**
 * (Re)connected. The browser sent Last-Event-ID, so the server replays what
 * we missed; the queue is also fetched again before the "connection lost"
 * banner goes away, in case the gap was longer than the server keeps.
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
    if (state.user && !watch.sessionLost) openStream();
  }, delay);
}

function onAlertEvent(ev) {
  const alert = parseEventData(ev);
  if (!isAlert(alert)) return;
  if (sync.buffer) sync.buffer.push(alert);
  applyAlert(alert);
  renderLive();
}

function onStatusEvent(ev) {
  const data = parseEventData(ev);
  if (data && typeof data === 'object') setSystemStatus(data);
}

function setSystemStatus(data) {
  state.systemStatus = data;
  state.systemStatusAt = Date.now();
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

/**
 * Queue order: open before acknowledged (what nobody has taken yet comes
 * first), then priority 1 first, then the higher case risk, then oldest first.
 */
function compareAlerts(a, b) {
  return (STATE_RANK[a.state] ?? 9) - (STATE_RANK[b.state] ?? 9)
    || (Number(a.priority) || 99) - (Number(b.priority) || 99)
    || (RISK_RANK[a.risk] ?? 9) - (RISK_RANK[b.risk] ?? 9)
    || timeMs(a.first_at) - timeMs(b.first_at)
    || keyOf(a.id).localeCompare(keyOf(b.id), 'en', { numeric: true });
}

/**
 * True when `next` must not replace `prev` because it is older: alert state
 * only moves forward, and last_at never decreases. Replayed events and
 * snapshots that raced with live events are dropped by this rule. (Overdue
 * and priority changes keep last_at, so equal times are applied.)
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
  if (!state.user || watch.sessionLost) return Promise.resolve(false);
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
    renderLive();
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
    if (prev && prev.state === 'open') withdrawAnnouncements(id);
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
  // Re-inserting moves the notice to the end, so the latest one is shown last.
  state.notices.delete(id);
  state.notices.set(id, { kind, alert });
  announce(id, kind, alert);
}

// ---------------------------------------------------------------------------
// Screen-reader announcements
// ---------------------------------------------------------------------------

// How long an announcement stays in the live region; screen readers read it
// when it is added, the removal is only housekeeping.
const ANNOUNCE_KEEP_MS = 20000;
const announced = new Map(); // id -> signature of the last announcement

/**
 * Reads out the alert itself (what, which case, where), never the notice's
 * buttons, and once per event: a new priority-1 alert, each escalation, each
 * repeat, a cancel. The visible notice may be redrawn (its waiting time every
 * minute) without a word being repeated.
 */
function announce(id, kind, alert) {
  const signature = `${kind}|${alert.priority}|${alert.count}`;
  if (announced.get(id) === signature) return;
  announced.set(id, signature);
  const line = el('p', null, t(`announce_${kind}`, { alert: announcementText(alert) }));
  line.dataset.id = id;
  $('announcer').append(line);
  setTimeout(() => line.remove(), ANNOUNCE_KEEP_MS);
}

/** "priority 1, Panic, case SE-2026-0417, Stockholm, inside exclusion zone “Home”". */
function announcementText(alert) {
  const parts = [t('notice_text', {
    priority: alert.priority ?? '?',
    kind: tEnum('kind', alert.kind),
    case: caseLabel(alert),
    region: alert.region || t('dash'),
  })];
  // Where it is, as the row says it: the place and the way from home, then the zone.
  const place = placeName(alert.place);
  if (place) parts.push(t('announce_where', { place }));
  const way = wayFromHome(alert.from_home);
  if (way) parts.push(way);
  const zone = (Array.isArray(alert.reason_details) ? alert.reason_details : [])
    .find((r) => r && r.code === 'inside_zone' && r.values && r.values.zone);
  if (zone) parts.push(t('announce_place', { zone: zone.values.zone }));
  return parts.join(', ');
}

/** Someone took the alert: what was waiting to be read about it is no longer news. */
function withdrawAnnouncements(id) {
  announced.delete(id);
  for (const line of [...$('announcer').children]) if (line.dataset.id === id) line.remove();
}

function clearAnnouncements() {
  announced.clear();
  $('announcer').replaceChildren();
}

/**
 * The notice box is what the eye sees: notices are reconciled, not rebuilt,
 * and a notice is only replaced when its wording changes (an overdue notice
 * names how many whole minutes the alert has waited). Screen readers hear the
 * alert from `announce`, once, not from this box.
 */
function renderNotices() {
  const box = $('notices');
  // One line in the attention bar: only the latest notice is shown (and read out).
  const latest = [...state.notices].slice(-1);
  for (const [id, entry] of noticeNodes) {
    if (!latest.some(([shown]) => shown === id)) {
      entry.node.remove();
      noticeNodes.delete(id);
    }
  }
  renderAttention();
  for (const [id, notice] of latest) {
    const heading = t(`notice_${notice.kind}`);
    const text = noticeText(notice.kind, notice.alert);
    const signature = `${notice.kind}|${heading}|${text}`;
    const entry = noticeNodes.get(id);
    if (entry && entry.signature === signature) continue;
    const node = buildNotice(id, notice.kind, heading, text);
    if (entry) entry.node.replaceWith(node);
    else box.append(node);
    noticeNodes.set(id, { node, signature });
  }
}

function noticeText(kind, alert) {
  const text = t('notice_text', {
    priority: alert.priority ?? '?',
    kind: tEnum('kind', alert.kind),
    case: caseLabel(alert),
    region: alert.region || t('dash'),
  });
  if (kind !== 'overdue') return text;
  const minutes = Math.floor((nowMs() - timeMs(alert.first_at)) / 60000);
  return minutes < 1 ? text : `${text} – ${t('notice_waiting', { n: minutes })}`;
}

function buildNotice(id, kind, heading, body) {
  const item = el('div', `notice notice-${kind}`);
  const text = el('p', 'notice-text');
  text.append(el('strong', null, heading), ' ', el('span', null, body));
  const open = button(t('notice_open'), 'btn btn-small', () => selectAlert(id, { focusRow: true }));
  const dismiss = button(t('notice_dismiss'), 'btn btn-small', () => {
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
const PATTERN_RANK = { confirm: 0, chime: 1, alarm: 2 };

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

const SOUND_KEY = 'vakt.console.sound';
const SHORTCUTS_KEY = 'vakt.console.shortcuts';

// ---------------------------------------------------------------------------
// Keyboard shortcuts setting
// ---------------------------------------------------------------------------

/** A and R can be turned off, e.g. by an officer who types notes a lot; remembered per browser. */
const shortcuts = { on: readShortcutsSetting() };

function readShortcutsSetting() {
  try {
    return localStorage.getItem(SHORTCUTS_KEY) !== 'off';
  } catch {
    return true;
  }
}

function toggleShortcuts() {
  shortcuts.on = !shortcuts.on;
  try {
    localStorage.setItem(SHORTCUTS_KEY, shortcuts.on ? 'on' : 'off');
  } catch {
    // Not remembered, but still switched for this page.
  }
  renderShortcuts();
}

/** The toggle, the queue hint and the action buttons say whether A and R work. */
function renderShortcuts() {
  const toggle = $('shortcuts-toggle');
  toggle.textContent = shortcuts.on ? t('shortcuts_on') : t('shortcuts_off');
  toggle.setAttribute('aria-pressed', String(shortcuts.on));
  $('queue-hint').textContent = shortcuts.on ? t('queue_hint') : t('queue_hint_no_shortcuts');
  $('ack-btn').textContent = shortcuts.on ? t('ack_submit') : t('ack_submit_plain');
  $('resolve-btn').textContent = shortcuts.on ? t('resolve_submit') : t('resolve_submit_plain');
  for (const [id, key] of [['ack-btn', 'A'], ['resolve-outcome', 'R']]) {
    if (shortcuts.on) $(id).setAttribute('aria-keyshortcuts', key);
    else $(id).removeAttribute('aria-keyshortcuts');
  }
}

/** The officer's choice survives a reload; the browser still needs a gesture to play. */
function rememberSound(on) {
  try {
    localStorage.setItem(SOUND_KEY, on ? 'on' : 'off');
  } catch {
    // Not remembered; the prompt asks again after a reload.
  }
}

function soundWasOn() {
  try {
    return localStorage.getItem(SOUND_KEY) === 'on';
  } catch {
    return false;
  }
}

/**
 * After a reload the officer's first click or key press anywhere turns the
 * sound back on, if it was on before: no one has to remember to do it.
 */
function restoreSoundOnFirstGesture() {
  if (!soundWasOn()) return;
  const restore = () => {
    document.removeEventListener('pointerdown', restore, true);
    document.removeEventListener('keydown', restore, true);
    if (!sound.on) enableSound();
  };
  document.addEventListener('pointerdown', restore, true);
  document.addEventListener('keydown', restore, true);
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
  rememberSound(true);
  renderSound();
  playPattern('confirm');
}

function toggleSound() {
  if (sound.on) {
    sound.on = false;
    rememberSound(false);
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
  $('sound-prompt-text').textContent = t(soundWasOn() ? 'sound_prompt_again' : 'sound_prompt');
}

/** Periodic reminder while an urgent notice is unanswered or the link is down. */
function repeatAlarm() {
  const urgent = [...state.notices.values()].some((n) => URGENT_NOTICES.has(n.kind));
  // A lost connection has its own repeating sound (see renderWatch).
  if (urgent) playPattern('alarm');
}

// ---------------------------------------------------------------------------
// Rendering: status strip
// ---------------------------------------------------------------------------

function renderAll() {
  renderQueue();
  renderNotices();
  renderDetailPanel();
}

/**
 * After live events: the queue and notices always, the detail (with its map)
 * only when its own alert changed, so a busy night does not redraw it for
 * every other device's message.
 */
function renderLive() {
  renderQueue();
  renderNotices();
  if (state.detailDirty) renderDetailPanel();
}

function renderUser() {
  if (!state.user) return;
  $('st-user').textContent = t('user_label', {
    user: state.user.username,
    role: tEnum('role', state.user.role),
  });
  $('st-region').textContent = state.user.region || t('region_all');
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
  renderSystemStatus();
  renderWatch();
}

/** Open alerts per priority as this officer's queue holds them, plus acknowledged. */
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

/** Broker, database and silent devices, from GET /api/status and the stream. */
function renderSystemStatus() {
  const box = $('st-system');
  const s = state.systemStatus;
  box.replaceChildren();
  if (!s || !state.user) {
    box.hidden = true;
    return;
  }
  const flag = (labelKey, value) => {
    if (typeof value !== 'boolean') return;
    const item = el('span', value ? 'sys sys-ok' : 'sys sys-down', `${t(labelKey)}: ${t(value ? 'sys_ok' : 'sys_down')}`);
    box.append(item);
  };
  flag('sys_broker', s.broker);
  flag('sys_database', s.database);
  if (Number.isFinite(s.devices_silent)) {
    box.append(el('span', s.devices_silent > 0 ? 'sys sys-warn' : 'sys sys-ok', t('sys_silent', { n: s.devices_silent })));
  }
  box.hidden = box.childElementCount === 0;
  // Values from before a lost connection, or too old, may be out of date.
  const stale = isLost() || Date.now() - state.systemStatusAt > STATUS_STALE_MS;
  box.classList.toggle('stale', stale);
  if (stale) box.setAttribute('title', t('sys_stale'));
  else box.removeAttribute('title');
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

  rovingTabStop();
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
  tr.tabIndex = -1; // one Tab stop for the whole queue: see rovingTabStop
  for (let i = 0; i < 7; i += 1) tr.append(document.createElement('td'));
  return tr;
}

const AGE_CELL = 3;
const PLACE_CELL = 6;

/** Two lines per row (kind over case, risk over region) keep the queue narrow. */
function fillRow(tr, alert) {
  const id = keyOf(alert.id);
  const [cPrio, cKindCase, cRiskRegion, cAge, cState, cCount] = tr.children;
  tr.className = [
    'row', prioClass(alert.priority), `state-${alert.state}`,
    isOverdue(alert) ? 'overdue' : '', state.selectedId === id ? 'selected' : '',
  ].filter(Boolean).join(' ');
  if (state.selectedId === id) tr.setAttribute('aria-current', 'true');
  else tr.removeAttribute('aria-current');

  const badge = el('span');
  fillPrioBadge(badge, alert.priority);
  cPrio.replaceChildren(badge);

  cKindCase.replaceChildren(el('span', 'kind', tEnum('kind', alert.kind)), el('span', 'sub case-ref', caseLabel(alert)));
  if (alert.cancel_pressed) cKindCase.append(el('span', 'tag tag-warn', t('cancel_marker')));

  cRiskRegion.replaceChildren(
    el('span', `risk risk-${alert.risk}`, alert.risk ? tEnum('risk', alert.risk) : t('dash')),
    el('span', 'sub muted', alert.region || t('dash')),
  );

  cAge.className = 'num age';
  tr.dataset.firstAt = String(timeMs(alert.first_at));
  cAge.textContent = fmtAge(nowMs() - timeMs(alert.first_at));

  cState.replaceChildren(el('span', `state state-${alert.state}`, tEnum('state', alert.state)));
  if (alert.state === 'acknowledged' && alert.acknowledged_by) {
    cState.append(el('span', 'muted small by', t('acked_by', { user: alert.acknowledged_by })));
  }
  if (isOverdue(alert)) cState.append(el('span', 'tag tag-overdue', t('overdue')));

  cCount.className = 'num';
  cCount.textContent = alert.count ?? 1;

  fillPlaceCell(tr.children[PLACE_CELL], alert);
}

/** Once a second: ages, the clock, overdue notices' waiting time, status staleness. */
function tick() {
  const now = nowMs();
  for (const tr of rows.values()) {
    const cell = tr.children[AGE_CELL];
    const text = fmtAge(now - Number(tr.dataset.firstAt));
    if (cell.textContent !== text) cell.textContent = text;
  }
  if (state.detail) renderDetailSub(state.detail.data.alert, state.detail.data.case);
  $('st-clock').textContent = fmtClock(new Date(now).toISOString());
  renderNotices();
  if (state.systemStatus) renderSystemStatus();
}

/** On the first load the most urgent alert has focus and is open, as if ↓ had reached it. */
function focusFirstRowIfIdle() {
  const active = document.activeElement;
  if (active && active !== document.body) return;
  const first = $('queue-body').firstElementChild;
  if (!first) return;
  if (state.selectedId === null) selectAlert(first.dataset.id, { focusRow: true });
  else first.focus();
}

/**
 * A control that was disabled, hidden or removed by an action drops focus to
 * the page; put it back on the alert's row (or the row now in its place) so
 * the keyboard keeps working. Focus the officer moved elsewhere is left alone.
 */
function keepFocusInQueue(key, index) {
  const active = document.activeElement;
  if (active && active !== document.body && active.isConnected && !active.disabled
    && active.getClientRects().length > 0) return;
  const body = $('queue-body');
  const target = rows.get(key) || body.children[Math.min(index, body.children.length - 1)];
  if (target) target.focus();
  else $('queue-panel').focus();
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

/**
 * The arrow keys move the selection and the detail together. A and R act only
 * on the alert whose detail is shown, so an officer never acts on an alert
 * whose plan they have not seen; on a queue row that is not the one shown
 * (reached with Tab, say) they do nothing. The officer can turn A and R off.
 */
function onKeyDown(event) {
  if (!state.user || event.defaultPrevented) return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (isTypingTarget(event.target)) return;

  const rowId = rowIdFrom(event.target);
  const inPanels = event.target === document.body || (event.target.closest && event.target.closest('#console-view'));
  const shownId = state.detail && (rowId === null || rowId === state.detail.id) ? state.detail.id : null;

  switch (event.key) {
    case 'Enter':
      if (rowId === null) return;
      selectAlert(rowId);
      break;
    case 'ArrowDown':
    case 'ArrowUp':
      if (rowId === null) return;
      moveSelection(event.target.closest('tr'), event.key === 'ArrowDown' ? 1 : -1);
      break;
    case 'Home':
    case 'End':
      if (rowId === null) return;
      selectRowAt(event.key === 'Home' ? 0 : -1);
      break;
    case 'a':
    case 'A':
      if (!shortcuts.on || !inPanels || shownId === null) return;
      acknowledge(shownId, '');
      break;
    case 'r':
    case 'R':
      if (!shortcuts.on || !inPanels || shownId === null) return;
      focusResolve();
      break;
    default:
      return;
  }
  event.preventDefault();
}

function moveSelection(tr, step) {
  const target = step > 0 ? tr.nextElementSibling : tr.previousElementSibling;
  if (target) selectAlert(target.dataset.id, { focusRow: true });
}

function selectRowAt(index) {
  const body = $('queue-body');
  const target = index < 0 ? body.lastElementChild : body.children[index];
  if (target) selectAlert(target.dataset.id, { focusRow: true });
}

function focusRowAt(index) {
  const body = $('queue-body');
  const target = index < 0 ? body.lastElementChild : body.children[index];
  if (target) target.focus();
}

function highlightSelectedRow() {
  for (const [id, tr] of rows) {
    const selected = id === state.selectedId;
    tr.classList.toggle('selected', selected);
    if (selected) tr.setAttribute('aria-current', 'true');
    else tr.removeAttribute('aria-current');
  }
  rovingTabStop();
}

/**
 * The queue is one Tab stop, not one per alert: Tab reaches the selected row
 * (the first, before any is selected) and the next Tab leaves the queue; the
 * arrow keys move within it. Every other row has tabindex -1, so a click or
 * script can still focus it.
 */
function rovingTabStop() {
  const body = $('queue-body');
  const stop = rows.get(state.selectedId) || body.firstElementChild;
  for (const tr of body.children) {
    const index = tr === stop ? 0 : -1;
    if (tr.tabIndex !== index) tr.tabIndex = index;
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
  const id = state.selectedId;
  state.selectedId = null;
  state.detail = null;
  state.detailSeq += 1;
  highlightSelectedRow();
  renderDetailPanel();
  // Back to where the officer came from, not to the top of the page.
  const row = id !== null ? rows.get(id) : null;
  if (row) row.focus();
  else focusRowAt(0);
}

/**
 * `reason` is only set after the officer stated one to reveal a protected
 * identity; `handling` when the officer who acknowledged the alert revealed it
 * in one action (the server checks that and words the logged reason).
 */
async function loadDetail(id, reason, handling = false) {
  const seq = ++state.detailSeq;
  const switching = !state.detail || state.detail.id !== id;
  if (switching) state.detail = null;
  $('detail-loading').hidden = false;
  $('detail-error').hidden = true;
  renderDetailPanel();

  let query = reason ? `?reason=${encodeURIComponent(reason)}` : '';
  if (handling) query = '?handling=true';
  try {
    const data = await api('GET', `/api/alerts/${encodeURIComponent(id)}${query}`);
    if (seq !== state.detailSeq) return; // a newer selection won
    if (!data || !isAlert(data.alert)) throw new ApiError(0, t('err_bad_response'));
    // The queue may already hold a newer version from the live stream.
    const live = state.alerts.get(id);
    if (live && isStale(live, data.alert)) data.alert = live;
    state.detail = { id, data, reason, handling };
  } catch (err) {
    if (seq !== state.detailSeq) return;
    // No longer the officer handling it (resolved, say): show it as anyone sees it.
    if (handling && err.status === 422) {
      loadDetail(id, null);
      return;
    }
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
  if (state.detail) {
    const { id, reason, handling, data } = state.detail;
    loadDetail(id, reason, handling && isHandledByMe(data.alert));
  }
  else if (state.selectedId !== null) loadDetail(state.selectedId, null);
}

/** Keeps the open detail in step with live updates of its alert. */
function mergeIntoDetail(alert) {
  if (!state.detail || state.detail.id !== keyOf(alert.id)) return;
  const shown = state.detail.data.alert;
  if (isStale(shown, alert)) return;
  state.detail.data.alert = alert;
  state.detailDirty = true;
  // History, device health and position context come with the detail only.
  if (alert.state !== shown.state || alert.count !== shown.count) scheduleDetailRefresh();
}

let detailRefreshTimer = 0;

/** Several changes in a burst (e.g. repeated presses) cost one re-read. */
function scheduleDetailRefresh() {
  clearTimeout(detailRefreshTimer);
  detailRefreshTimer = setTimeout(refreshDetail, 300);
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
    showOk(t('msg_acked', { case: caseLabel(alert) }));
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
    showOk(t('msg_resolved', { case: caseLabel(alert) }));
  });
}

/** POSTs an action, applies the returned alert, and re-reads the detail. */
async function runAction(key, verb, body, onSuccess) {
  const index = [...$('queue-body').children].indexOf(rows.get(key));
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
    keepFocusInQueue(key, Math.max(index, 0));
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
  $('d-person-note').hidden = true;
  $('reveal-error').hidden = true;
  $('reveal-reason').focus();
}

function hideRevealForm() {
  $('reveal-form').hidden = true;
  $('d-person-note').hidden = false;
  $('reveal-reason').value = '';
  $('reveal-btn').focus();
}

// ---------------------------------------------------------------------------
// Detail: rendering
// ---------------------------------------------------------------------------

function renderDetailPanel() {
  state.detailDirty = false;
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
  const { alert, person, orders } = detail.data;
  const kase = detail.data.case;
  renderDetailHeader(alert, kase);
  renderWhere($('d-where'), alert, detail.data.location, { alertId: alert.id });
  renderLinked(detail.data.linked_alert_ids);
  renderActions(alert);
  renderPlan(kase);
  renderPerson(person, detail.reason, kase);
  renderHandlingReveal(alert, person);
  renderOrders(orders);
  renderSituationMap($('d-map'), $('d-map-legend'), {
    position: alert.position,
    address: person && person.address,
    orders,
    tileUrl: state.tileUrl,
  });
  renderReasons(alert);
  renderDevice(detail.data.device, alert);
  renderAlertFacts(alert);
  renderHistory(detail.data.history);
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
  $('detail-panel').scrollTop = 0;
}

function renderDetailHeader(alert, kase) {
  fillPrioBadge($('d-priority'), alert.priority);
  $('d-title').textContent = t('detail_title', { kind: tEnum('kind', alert.kind), case: caseLabel(alert) });
  renderDetailSub(alert, kase);
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

/** "Risk high · Stockholm · Open · age 1 min 05 s · count 2", refreshed every second. */
function renderDetailSub(alert, kase) {
  const risk = (kase && kase.risk) || alert.risk;
  const text = [
    risk ? t('detail_risk', { risk: tEnum('risk', risk) }) : null,
    (kase && kase.region) || alert.region,
    tEnum('state', alert.state),
    t('detail_age', { age: fmtAge(nowMs() - timeMs(alert.first_at)) }),
    t('detail_count', { n: alert.count ?? 1 }),
  ].filter(Boolean).join(' · ');
  if ($('d-sub').textContent !== text) $('d-sub').textContent = text;
}

/** Another device of the same case has an unresolved alert: one incident, shown together. */
function renderLinked(ids) {
  const box = $('d-linked');
  const list = (Array.isArray(ids) ? ids : []).map(keyOf);
  box.replaceChildren();
  box.hidden = list.length === 0;
  if (list.length === 0) return;
  box.append(el('span', null, t('linked_alerts')), ' ');
  list.forEach((id, i) => {
    if (i > 0) box.append(', ');
    const link = button(t('linked_alert', { id }), 'linklike', () => selectAlert(id, { focusRow: true }));
    box.append(link);
  });
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

function renderPlan(kase) {
  const plan = $('d-plan');
  const masked = Boolean(kase && kase.masked);
  const text = kase && kase.response_plan;
  plan.textContent = masked ? t('plan_masked') : (text || t('no_plan'));
  plan.classList.toggle('muted', masked || !text);
  plan.classList.toggle('masked', masked);
}

function renderReasons(alert) {
  const list = $('d-reasons');
  list.replaceChildren();
  const coded = Array.isArray(alert.reason_details) ? alert.reason_details : null;
  const items = coded || (Array.isArray(alert.reasons) ? alert.reasons : []);
  for (const reason of items) {
    list.append(el('li', null, typeof reason === 'string' ? reason : reasonText(reason)));
  }
  if (items.length === 0) list.append(el('li', 'muted', t('no_reasons')));
  if (alert.reasons_masked === true) list.append(el('li', 'muted masked', t('reasons_masked')));
}

/**
 * One reason in the page language, from its code and facts. A code this page does not
 * know (a newer server) is shown in the server's own words, never dropped.
 */
function reasonText(reason) {
  const v = reason.values || {};
  let key = `reason_${reason.code}`;
  if (reason.code === 'low_battery_reported' && Number.isFinite(v.battery_pct)) key += '_pct';
  if (!hasText(key)) return reason.text || '';
  const details = [v.description, v.vehicle].filter(Boolean).map((d) => `, ${d}`).join('');
  return t(key, {
    ...v,
    kind: v.kind ? tEnum('kind', v.kind) : v.kind,
    outcome: v.outcome ? tEnum('outcome', v.outcome) : v.outcome,
    origin: originText(v),
    raised: Number.isFinite(v.raised_to) ? t('raised_to', { p: v.raised_to }) : '',
    note: v.note ? `: ${v.note}` : '',
    risk: v.risk ? tEnum('risk', v.risk).toLowerCase() : v.risk,
    from: v.from ? tEnum('risk', v.from).toLowerCase() : v.from,
    to: v.to ? tEnum('risk', v.to).toLowerCase() : v.to,
    method: v.method ? tEnum('method', v.method) : v.method,
    order_kind: v.order_kind ? tEnum('order', v.order_kind) : v.order_kind,
    valid_to: v.valid_to ? (reason.code === 'order_ending' ? fmtTime(v.valid_to) : fmtDate(v.valid_to)) : v.valid_to,
    last_heard_at: v.last_heard_at ? fmtTime(v.last_heard_at) : v.last_heard_at,
    device_time: v.device_time ? fmtTime(v.device_time) : v.device_time,
    distance: Number.isFinite(v.distance_m) ? fmtDistance(v.distance_m) : undefined,
    details,
  });
}

/**
 * The person and the relatives to call. A masked person shows one line and
 * the reveal button, not rows of "***".
 */
function renderPerson(person, reason, kase) {
  const p = person || {};
  const masked = p.masked === true;
  let note = '';
  if (masked) note = t(reason ? 'reveal_still_masked' : 'masked_note');
  else if (p.protected_identity) note = t('revealed_note');
  $('d-person-note-text').textContent = note;
  $('d-person-note').hidden = !note;
  $('reveal-btn').hidden = !masked;
  if (!masked) $('reveal-form').hidden = true;

  const rows = masked ? [] : [
    ['f_name', p.name ? el('strong', 'person-name', p.name) : null],
    ['f_phone', p.phone ? phoneLink(p.phone) : null],
    ['f_address', p.address && p.address.text],
  ];
  rows.push(['sec_relatives', relativesList(kase)]);
  fillDl($('d-person'), rows);
}

/** The officer who acknowledged an alert is handling it (the server decides; this only offers). */
function isHandledByMe(alert) {
  return Boolean(alert && state.user && alert.state === 'acknowledged'
    && alert.acknowledged_by === state.user.username);
}

/**
 * The officer handling the alert is the one its plan tells to call the
 * protected person: one button reveals, no typed reason. Everyone else states
 * a reason as before.
 */
function renderHandlingReveal(alert, person) {
  const btn = $('reveal-handling-btn');
  const offer = Boolean(person && person.masked === true) && isHandledByMe(alert);
  btn.hidden = !offer;
  if (offer) btn.textContent = t('reveal_handling', { id: alert.id });
}

function revealAsHandling() {
  if (state.detail && isHandledByMe(state.detail.data.alert)) loadDetail(state.detail.id, null, true);
}

/** Relatives from the case (name, relation, phone): who else to call. */
function relativesList(kase) {
  if (kase && kase.masked) return el('span', 'muted masked', t('relatives_masked'));
  const relatives = kase && Array.isArray(kase.relatives) ? kase.relatives : [];
  if (relatives.length === 0) return el('span', 'muted', t('no_relatives'));
  const list = el('ul', 'relatives');
  for (const r of relatives) {
    const li = el('li');
    li.append(el('span', 'rel-name', r.name || t('dash')));
    if (r.relation) li.append(' ', el('span', 'muted', `(${r.relation})`));
    if (r.phone) li.append(' ', phoneLink(r.phone));
    list.append(li);
  }
  return list;
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

/** The restrained person first and large: the officer passes it on to the patrol. */
function buildOrder(order) {
  const card = el('div', 'order');
  const restrained = order.restrained || {};
  const head = el('p', 'order-head');
  head.append(el('span', 'order-label', t('f_restrained')), ' ', el('strong', 'restrained-name', restrained.name || t('dash')));
  card.append(head);
  const dl = el('dl', 'kv');
  const zones = Array.isArray(order.zones) ? order.zones : [];
  fillDl(dl, [
    ['f_description', restrained.description],
    ['f_vehicle', restrained.vehicle],
    ['f_order_kind', tEnum('order', order.kind)],
    ['f_valid', t('valid_range', { from: fmtTime(order.valid_from), to: fmtTime(order.valid_to) })],
    ['f_zones', zones.map((z) => (z && z.name) || t('dash')).join(', ')],
    ['f_tag', order.tag_device_id],
  ].filter(([key, value]) => key !== 'f_tag' || value));
  card.append(dl);
  if (order.zones_masked === true) card.append(el('p', 'muted masked', t('zones_masked')));
  return card;
}

function renderDevice(device, alert) {
  const dl = $('d-device');
  const feedback = feedbackState(alert);
  if (!device) {
    fillDl(dl, [['f_device_id', alert.device_id]]);
    if (alert.device_id) dl.append(el('dd', 'muted', t('no_device')));
    return;
  }
  // Health is what the device last told about itself.
  const health = device.health || {};
  const connection = health.connection
    ? el('span', `conn-state conn-state-${health.connection}`, tEnum('devstatus', health.connection))
    : null;
  fillDl(dl, [
    ['f_device_id', device.id],
    ['f_device_kind', device.kind ? tEnum('devkind', device.kind) : null],
    ['f_feedback', feedback ? t(`feedback_${feedback}`) : null],
    ['f_connection', connection],
    ['f_last_heard', health.last_heard_at ? fmtTime(health.last_heard_at) : null],
    ['f_battery', Number.isFinite(health.battery)
      ? t(health.charging ? 'battery_pct_charging' : 'battery_pct', { n: health.battery }) : null],
    ['f_signal', Number.isFinite(health.rssi) ? t('rssi_dbm', { n: health.rssi }) : null],
    ['f_last_test', health.last_test_at ? fmtTime(health.last_test_at) : null],
    ['f_model', device.model],
    ['f_firmware', health.fw],
  ].filter(([key, value]) => key !== 'f_feedback' || value));
}

/** What the holder's device has been told about this alarm, as the server says. */
function feedbackState(alert) {
  return ['received', 'accepted', 'resolved'].includes(alert.feedback) ? alert.feedback : null;
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
    }) : t(alert.position_masked ? 'position_masked' : 'position_none')],
    ['f_acked', alert.acknowledged_by
      ? t('by_at', { user: alert.acknowledged_by, at: fmtTime(alert.acknowledged_at) }) : null],
    ['f_resolved', alert.resolved_by
      ? t('by_at', { user: alert.resolved_by, at: fmtTime(alert.resolved_at) }) : null],
    ['f_outcome', alert.outcome ? tEnum('outcome', alert.outcome) : null],
  ]);
}

/**
 * Which message of the device an alarm was, in words: its counter since the
 * device started, and whether the device restarted since the alert's first
 * message (`restarted`, set by renderHistory). The raw boot counter means
 * nothing to an officer and is left out.
 */
function originText(v) {
  if (!Number.isFinite(v.boot) || !Number.isFinite(v.seq)) return '';
  return t(v.restarted ? 'origin_seq_restarted' : 'origin_seq', { seq: v.seq });
}

/** History notes with the restart between messages marked (see originText). */
function withRestarts(items) {
  let firstBoot = null;
  return items.map((h) => {
    const v = h && h.note_values;
    if (!v || !Number.isFinite(v.boot)) return h;
    if (firstBoot === null) firstBoot = v.boot;
    return v.boot === firstBoot ? h : { ...h, note_values: { ...v, restarted: true } };
  });
}

function renderHistory(history) {
  const list = $('d-history');
  list.replaceChildren();
  const items = withRestarts(Array.isArray(history) ? history : []);
  if (items.length === 0) {
    list.append(el('li', 'muted', t('no_history')));
    return;
  }
  for (const h of items) {
    const li = el('li');
    const at = el('time', 'h-at', fmtTime(h.at));
    if (h.at) at.setAttribute('datetime', h.at);
    li.append(at, el('span', 'h-action', tEnum('action', h.action)), el('span', 'h-actor', h.actor || t('actor_system')));
    // The backend's own notes come with a code and facts: worded in the page language.
    const note = h.note_code ? reasonText({ code: h.note_code, values: h.note_values, text: h.note }) : h.note;
    if (note) li.append(el('span', 'h-note', note));
    list.append(li);
  }
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
  renderShortcuts();
  renderConn();
  renderAttention();
  if (state.user) {
    renderUser();
    renderAll();
  } else {
    document.title = t('app_title');
    $('login-submit').textContent = t('login_submit');
  }
}

// ---------------------------------------------------------------------------
// Watching: the session's end, the state of not receiving alarms, readiness,
// and the attention bar. The console must never stop watching silently.
// ---------------------------------------------------------------------------

// The stream sends `status` every 10 s: this long without any event, it is dead
// however open it looks (a stalled proxy), and is opened again.
const STREAM_SILENT_MS = 35000;
// An event older than this is shown as late in the status strip.
const HEARD_LATE_MS = 25000;
const READY_POLL_MS = 10000;

const watch = {
  session: null,       // {endsAtMs, absoluteS, secondFactor} from GET /api/session
  sessionLost: false,  // the session ended while the page was watching
  lostAt: 0,           // when the session was lost (Date.now)
  lastEventId: null,   // id of the last alert event, for a new stream to catch up from
  heardAt: 0,          // last open or event of the stream (Date.now)
  ready: null,         // 'ready' | 'not_ready' | 'unreachable' from GET /readyz
  readyDown: [],       // what /readyz said is down
  shown: null,         // what the lost screen last showed, to focus only on a change
  timer: 0,
  readyTimer: 0,
};

function startWatch() {
  watch.sessionLost = false;
  watch.heardAt = 0;
  clearInterval(watch.timer);
  clearInterval(watch.readyTimer);
  watch.timer = setInterval(watchTick, 1000);
  watch.readyTimer = setInterval(checkReady, READY_POLL_MS);
  loadSessionInfo();
  checkReady();
  renderWatch();
  renderAttention();
}

function stopWatch() {
  clearInterval(watch.timer);
  clearInterval(watch.readyTimer);
  Object.assign(watch, {
    session: null, sessionLost: false, lastEventId: null, heardAt: 0, ready: null, readyDown: [], shown: null,
  });
  stopLostSound();
  $('reauth-password').value = '';
  $('reauth-totp').value = '';
  $('reauth-error').hidden = true;
}

/** A new stream (after logging in again, or after giving up) catches up from the last alert seen. */
function streamUrl() {
  return watch.lastEventId ? `${STREAM_URL}?last_event_id=${encodeURIComponent(watch.lastEventId)}` : STREAM_URL;
}

/** Notes when the stream was last heard from, and the id of the last alert event. */
function watchStream(es) {
  const heard = (ev) => {
    if (stream.es !== es) return;
    watch.heardAt = Date.now();
    if (ev && ev.type === 'alert' && ev.lastEventId) watch.lastEventId = ev.lastEventId;
  };
  for (const type of ['open', 'alert', 'status']) es.addEventListener(type, heard);
}

/** The limits of this session, to warn before its absolute end. */
async function loadSessionInfo() {
  try {
    const info = await apiOptional('GET', '/api/session');
    if (!info || !state.user) return;
    watch.session = {
      endsAtMs: timeMs(info.ends_at) || NaN,
      absoluteS: Number(info.absolute_s),
      secondFactor: info.second_factor === true,
    };
  } catch {
    // Asked again after the next login; the lost screen covers an end meanwhile.
  }
  renderWatch();
}

/** The session is over (expired, or the server no longer knows it): keep the page, ask for the password. */
function onSessionLost() {
  if (!state.user) return;
  if (!watch.sessionLost) watch.lostAt = Date.now();
  watch.sessionLost = true;
  closeStream();
  clearTimeout(stream.retryTimer);
  clearTimeout(stream.syncRetryTimer);
  setConn('lost');
}

/** /readyz, as a load balancer sees the server; unreachable is said as such. */
async function checkReady() {
  if (!state.user) return;
  try {
    const res = await fetch('/readyz', { cache: 'no-store', credentials: 'omit' });
    const body = await res.json().catch(() => null);
    watch.ready = res.ok ? 'ready' : 'not_ready';
    watch.readyDown = body && typeof body === 'object'
      ? ['database', 'broker'].filter((k) => body[k] === false) : [];
  } catch {
    watch.ready = 'unreachable';
    watch.readyDown = [];
  }
  renderWatch();
}

function watchTick() {
  if (!state.user) return;
  // Open but silent for too long: as good as lost.
  if (state.conn === 'live' && watch.heardAt && Date.now() - watch.heardAt > STREAM_SILENT_MS) {
    closeStream();
    setConn('lost');
    scheduleReconnect();
  }
  renderWatch();
}

/** Why no alarm can arrive now, or null when they can. */
function lostReason() {
  if (!state.user) return null;
  if (watch.sessionLost) return 'session';
  if (state.conn !== 'lost') return null;
  return watch.ready === 'unreachable' ? 'server' : 'stream';
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/** The lost screen and its sound, the stale mark on the queue, the session panel and readiness. */
function renderWatch() {
  const why = lostReason();
  const since = why === 'session' ? watch.lostAt : state.lostSince;
  const view = $('console-view');
  $('watch-lost').hidden = !why;
  view.classList.toggle('stale', Boolean(why));
  if (why) {
    const at = new Date(since).toISOString();
    setText($('watch-lost-why'), t(`lost_${why}`, { since: fmtClock(at), age: fmtAge(Date.now() - since) }));
    const blocked = audioBlocked();
    $('watch-lost-sound').hidden = !blocked;
    setText($('watch-lost-sound'), t('lost_sound_blocked'));
    view.dataset.stale = t('stale_label', { since: fmtClock(at) });
    startLostSound();
  } else {
    stopLostSound();
    delete view.dataset.stale;
  }
  renderSessionPanel(why);
  renderReadiness();
}

function renderSessionPanel(why) {
  const panel = $('session-panel');
  const phase = why === 'session' ? 'lost' : state.user ? sessionPhase(watch.session, nowMs()) : 'ok';
  const show = phase !== 'ok';
  const wasShown = !panel.hidden;
  panel.hidden = !show;
  panel.classList.toggle('session-lost', phase === 'lost');
  if (!show) {
    watch.shown = null;
    return;
  }
  const endsAt = watch.session ? new Date(watch.session.endsAtMs).toISOString() : null;
  setText($('session-text'), phase === 'lost'
    ? t('session_lost_text')
    : t('session_warn_text', { time: endsAt ? fmtClock(endsAt) : t('dash') }));
  setText($('session-left'), phase === 'lost' || !watch.session
    ? '' : t('session_left', { age: fmtAge(watch.session.endsAtMs - nowMs()) }));
  const code = Boolean(watch.session && watch.session.secondFactor);
  $('reauth-totp').hidden = !code;
  $('reauth-totp-label').hidden = !code;
  // Focus goes to the password only when the session is lost: a warning must not
  // take the keyboard from an officer typing a note.
  if (phase === 'lost' && watch.shown !== 'lost' && (!wasShown || !isTypingTarget(document.activeElement))) {
    $('reauth-password').focus();
  }
  watch.shown = phase;
}

function renderReadiness() {
  const heard = $('st-heard');
  const ready = $('st-ready');
  if (!state.user) {
    heard.hidden = true;
    ready.hidden = true;
    return;
  }
  heard.hidden = false;
  const age = watch.heardAt ? Date.now() - watch.heardAt : null;
  setText(heard, age === null ? t('heard_never') : t('heard_ago', { age: fmtAge(age) }));
  heard.className = `st-item st-heard ${age === null || age > HEARD_LATE_MS || isLost() ? 'sys-warn' : ''}`;
  ready.hidden = watch.ready === null;
  if (watch.ready === null) return;
  const down = watch.readyDown.map((k) => t(`sys_${k}`)).join(', ');
  setText(ready, watch.ready === 'ready' ? t('ready_ok')
    : watch.ready === 'unreachable' ? t('ready_unreachable') : t('ready_down', { what: down || t('dash') }));
  ready.className = `st-item st-ready sys ${watch.ready === 'ready' ? 'sys-ok' : 'sys-down'}`;
}

/** Logs the same officer in again, keeping the page, and reopens the stream on the new session. */
async function onReauthSubmit(event) {
  event.preventDefault();
  if (!state.user) return;
  const error = $('reauth-error');
  const password = $('reauth-password').value;
  const totp = $('reauth-totp').value.replace(/\s+/g, '');
  if (!password) {
    error.textContent = t('reauth_missing');
    error.hidden = false;
    return;
  }
  const body = { username: state.user.username, password };
  if (totp) body.totp = totp;
  const submit = $('reauth-submit');
  submit.disabled = true;
  try {
    await api('POST', '/api/login', body);
    $('reauth-password').value = '';
    $('reauth-totp').value = '';
    error.hidden = true;
    watch.sessionLost = false;
    watch.session = null;
    await loadSessionInfo();
    stream.retryMs = RECONNECT_MIN_MS;
    openStream();
    resyncQueue();
    renderWatch();
    showOk(t('reauth_done'));
  } catch (err) {
    error.textContent = err.status === 401 ? t('login_failed') : err.status === 429 ? t('login_wait') : err.message;
    error.hidden = false;
  } finally {
    submit.disabled = false;
  }
}

/** The single attention bar: same height with no alert waiting or with many. */
function renderAttention() {
  const bar = $('attention');
  bar.hidden = !state.user;
  if (!state.user) return;
  const s = attentionSummary(state.alerts.values(), nowMs());
  const level = s.overdue > 0 ? 'overdue' : s.count > 0 ? 'p1' : 'none';
  const className = `attention attention-${level}`;
  if (bar.className !== className) bar.className = className;
  let text = t('attention_none');
  if (s.count > 0) {
    const parts = [];
    if (s.p1 > 0) parts.push(t('attention_p1', { n: s.p1 }));
    if (s.overdue > 0) parts.push(t('attention_overdue', { n: s.overdue }));
    parts.push(t('attention_oldest', { age: fmtAge(s.oldestWaitMs) }));
    text = parts.join(', ');
  }
  setText($('attention-summary'), text);
  $('attention-next').disabled = !s.next;
}

/** Opens the most urgent unacknowledged alert: overdue first, then priority 1, the longest waiting. */
function openNextAttention() {
  const { next } = attentionSummary(state.alerts.values(), nowMs());
  if (next) selectAlert(keyOf(next.id), { focusRow: true });
}

function wireWatch() {
  $('reauth-form').addEventListener('submit', onReauthSubmit);
  $('attention-next').addEventListener('click', openNextAttention);
  // Every click and key press lets the lost sound play later; the login click is the first.
  document.addEventListener('pointerdown', unlockAudio, true);
  document.addEventListener('keydown', unlockAudio, true);
}

// ---------------------------------------------------------------------------
// Start-up
// ---------------------------------------------------------------------------

/** The map is drawn at its shown width; redraw when that changes notably. */
function watchMapWidth() {
  if (typeof ResizeObserver === 'undefined') return;
  let lastWidth = 0;
  const observer = new ResizeObserver((entries) => {
    const width = Math.round(entries[0].contentRect.width);
    if (Math.abs(width - lastWidth) < 16 || !state.detail) return;
    lastWidth = width;
    renderDetailPanel();
  });
  observer.observe($('d-map'));
}

function wireEvents() {
  $('lang-select').addEventListener('change', onLanguageChange);
  wireLoginForm(startSession);
  $('logout-btn').addEventListener('click', onLogout);
  $('sound-toggle').addEventListener('click', toggleSound);
  $('shortcuts-toggle').addEventListener('click', toggleShortcuts);
  $('sound-enable').addEventListener('click', enableSound);
  $('flash-error-close').addEventListener('click', hideError);
  $('queue-body').addEventListener('click', onQueueClick);
  $('detail-close').addEventListener('click', closeDetail);
  $('detail-refresh').addEventListener('click', refreshDetail);
  $('ack-form').addEventListener('submit', onAckSubmit);
  $('resolve-form').addEventListener('submit', onResolveSubmit);
  $('resolve-outcome').addEventListener('change', syncResolveButton);
  $('reveal-btn').addEventListener('click', showRevealForm);
  $('reveal-handling-btn').addEventListener('click', revealAsHandling);
  $('reveal-cancel').addEventListener('click', hideRevealForm);
  $('reveal-form').addEventListener('submit', onRevealSubmit);
  $('reveal-form').addEventListener('keydown', (ev) => { if (ev.key === 'Escape') hideRevealForm(); });
  document.addEventListener('keydown', onKeyDown);
  wireWatch();
  watchMapWidth();
  // Background tabs may throttle timers; catch up as soon as we are visible.
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && state.user) resyncQueue();
  });
}

async function boot() {
  applyStatic(document);
  $('lang-select').value = getLang();
  document.title = t('app_title');
  setUnauthorizedHandler(onSessionExpired);
  wireEvents();
  restoreSoundOnFirstGesture();
  try {
    const me = await api('GET', '/api/me');
    startSession(me);
  } catch (err) {
    showLoginView(err.status === 401 ? '' : err.message);
  }
}

boot();
