// What keeps the duty-officer console from ever stopping to watch without a
// sound: the rules for the session warning and the attention bar (pure
// functions over plain data), and the alarm that sounds while no alarms can
// arrive. The console (console.js) feeds them and draws what they return.

// The warning comes this long before the session's absolute end …
const SESSION_WARN_MS = 15 * 60 * 1000;

/**
 * … or a third of the session's length, for a short session (a test, a
 * deployment that wants officers to log in often): a warning on arrival would
 * say nothing.
 */
export function sessionWarnLeadMs(absoluteS) {
  const length = Number(absoluteS) * 1000;
  if (!Number.isFinite(length) || length <= 0) return SESSION_WARN_MS;
  return Math.min(SESSION_WARN_MS, Math.floor(length / 3));
}

/**
 * Where a session stands at `now`: 'ok', 'warn' (its absolute end is near) or
 * 'ended'. Only the absolute end warns: the console's own re-reads of the
 * queue keep the idle limit away, and an idle end can only come while the
 * server is unreachable, which the lost state already shows.
 */
export function sessionPhase(info, now) {
  if (!info || !Number.isFinite(info.endsAtMs)) return 'ok';
  const left = info.endsAtMs - now;
  if (left <= 0) return 'ended';
  return left <= sessionWarnLeadMs(info.absoluteS) ? 'warn' : 'ok';
}

/** What needs an officer now: open alerts of priority 1, and open alerts not acknowledged in time. */
export function needsAttention(alert) {
  return alert.state === 'open' && (alert.priority === 1 || alert.overdue === true);
}

const firstAt = (a) => {
  const ms = Date.parse(a.first_at);
  return Number.isFinite(ms) ? ms : 0;
};

/** Higher case risk first among alerts of the same priority; no risk last (the queue's order too). */
export const RISK_RANK = { critical: 0, high: 1, medium: 2, low: 3 };

/**
 * Most urgent first: overdue, then priority, then the case's risk, then the
 * longest waiting; so "Open next" opens what tops the unacknowledged queue.
 */
export function compareUrgency(a, b) {
  return (b.overdue === true) - (a.overdue === true)
    || (Number(a.priority) || 99) - (Number(b.priority) || 99)
    || (RISK_RANK[a.risk] ?? 9) - (RISK_RANK[b.risk] ?? 9)
    || firstAt(a) - firstAt(b)
    || String(a.id).localeCompare(String(b.id), 'en', { numeric: true });
}

/**
 * The attention bar's one line: how many priority-1 and overdue alerts wait
 * unacknowledged, how long the oldest has waited, and which one "Open next"
 * opens (null when none waits).
 */
export function attentionSummary(alerts, now) {
  const waiting = [...alerts].filter(needsAttention).sort(compareUrgency);
  let p1 = 0;
  let overdue = 0;
  let oldest = Infinity;
  for (const a of waiting) {
    if (a.priority === 1) p1 += 1;
    if (a.overdue === true) overdue += 1;
    oldest = Math.min(oldest, firstAt(a));
  }
  return {
    count: waiting.length,
    p1,
    overdue,
    oldestWaitMs: waiting.length ? Math.max(0, now - oldest) : 0,
    next: waiting.length ? waiting[0] : null,
  };
}

// ---------------------------------------------------------------------------
// The "not receiving alarms" sound
// ---------------------------------------------------------------------------

// Repeats this often for as long as no alarm can arrive.
const LOST_REPEAT_MS = 4000;

/**
 * Its own audio context, apart from the alert sounds: it plays whether or not
 * the officer has turned those on, because silence here is the failure. A
 * browser lets audio start only after a gesture on the page; the login click
 * is one, and so is any later click or key press.
 */
const lost = { ctx: null, timer: 0, playing: false };

function audioContext() {
  if (lost.ctx) return lost.ctx;
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) return null;
  try {
    lost.ctx = new Ctx();
  } catch {
    return null;
  }
  return lost.ctx;
}

/** Called on every click and key press: lets the sound start, now or later. */
export function unlockAudio() {
  const ctx = audioContext();
  if (ctx && ctx.state === 'suspended') ctx.resume().catch(() => {});
}

/** True when the browser keeps the sound from playing (no gesture yet, or no audio at all). */
export function audioBlocked() {
  return !lost.ctx || lost.ctx.state !== 'running';
}

/** A low falling two-tone, unlike any alert pattern, then the same again. */
function playLostOnce() {
  const ctx = audioContext();
  if (!ctx) return;
  if (ctx.state === 'suspended') ctx.resume().catch(() => {});
  const start = ctx.currentTime + 0.05;
  for (const [f, at, dur] of [[523, 0, 0.3], [330, 0.35, 0.55], [523, 1.1, 0.3], [330, 1.45, 0.55]]) {
    playTone(ctx, start + at, { f, dur, type: 'triangle', vol: 0.4 });
  }
}

/** One oscillator tone with a short attack/release so it does not click (alert sounds too). */
export function playTone(ctx, at, { f, dur, type, vol }) {
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

export function startLostSound() {
  if (lost.playing) return;
  lost.playing = true;
  playLostOnce();
  lost.timer = setInterval(playLostOnce, LOST_REPEAT_MS);
}

export function stopLostSound() {
  lost.playing = false;
  clearInterval(lost.timer);
}
