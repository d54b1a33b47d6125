// Where an alarm is, in the console: the nearest place and the way from home
// on each queue row and in the detail header, the zone status of a row, and
// the coordinates (WGS84, SWEREF 99 TM) with copy buttons and the street
// address near the top of the detail. The API sends structured fields
// (distance_m, compass codes); the words are made here, in the officer's
// language. See docs/location.md.

import { t, tEnum, getLang } from './i18n.js';
import { el, button, fmtDistance, api } from './common.js';

/** Within this of an exclusion zone's edge a row says "near" (the policy's proximity). */
export const NEAR_ZONE_M = 500;

const COPIED_MS = 2000;

/** "1.5 km W of home" from {distance_m, compass}, or null. */
export function wayFromHome(vector) {
  if (!vector || !Number.isFinite(vector.distance_m) || typeof vector.compass !== 'string') return null;
  if (vector.distance_m < 50) return t('where_at_home');
  return t('where_from_home', { d: fmtDistance(vector.distance_m), dir: tEnum('compass', vector.compass) });
}

/** "Bromma, Stockholms kommun" (the municipality left out where it repeats the name). */
export function placeName(place, { county = false } = {}) {
  if (!place || typeof place.name !== 'string') return null;
  const parts = [place.name];
  const m = typeof place.municipality === 'string' ? place.municipality : '';
  if (m && !m.startsWith(place.name)) parts.push(m);
  const c = typeof place.county === 'string' ? place.county : '';
  if (county && c && !parts.some((p) => p.startsWith(c))) parts.push(c);
  return parts.join(', ');
}

/** "Bromma — 2.3 km NE of the centre" when the alarm is away from the place's centre. */
function wayFromPlace(place) {
  if (!place || !Number.isFinite(place.distance_m) || place.distance_m < 1000) return null;
  return t('where_from_place', { d: fmtDistance(place.distance_m), dir: tEnum('compass', place.compass) });
}

/**
 * The alert's relation to the exclusion zones, from its reasons: inside one,
 * near one (within NEAR_ZONE_M of its edge), or further away. Null when no
 * zone is known (no orders, or the distances are withheld and it is inside none).
 */
export function zoneStatus(alert) {
  const reasons = Array.isArray(alert && alert.reason_details) ? alert.reason_details : [];
  const inside = reasons.find((r) => r && r.code === 'inside_zone');
  if (inside) return { kind: 'inside', text: t('zone_inside', { zone: (inside.values || {}).zone || '' }) };
  const near = reasons.find((r) => r && r.code === 'distance_to_zone');
  const d = near && near.values ? Number(near.values.distance_m) : NaN;
  if (!Number.isFinite(d)) return null;
  const zone = near.values.zone || '';
  if (d <= NEAR_ZONE_M) return { kind: 'near', text: t('zone_near', { zone, d: fmtDistance(d) }) };
  return { kind: 'away', text: t('zone_away', { zone, d: fmtDistance(d) }) };
}

/** The queue's place cell: the place over the way from home, then the zone status. */
export function fillPlaceCell(td, alert) {
  td.className = 'place-cell';
  const name = alert.place ? alert.place.name : null;
  const full = placeName(alert.place, { county: true });
  const line = el('span', 'place-name', name || (alert.position ? t('where_no_place') : t('dash')));
  if (full) line.title = full;
  const m = alert.place && alert.place.municipality;
  const way = wayFromHome(alert.from_home) || (m && !m.startsWith(name) ? m : null);
  td.replaceChildren(line);
  if (way) td.append(el('span', 'sub place-way', way));
  const zone = zoneStatus(alert);
  if (zone) td.append(el('span', `tag zone-tag zone-${zone.kind}`, zone.text));
}

/** "Bromma, Stockholms kommun — 1.5 km W of home" for the detail header. */
export function whereLine(alert, location) {
  const place = (location && location.place) || alert.place;
  const name = placeName(place, { county: true });
  const home = wayFromHome((location && location.from_home) || alert.from_home);
  const parts = [name, home || wayFromPlace(place)].filter(Boolean);
  if (parts.length) return parts.join(' — ');
  return alert.position ? t('where_no_place') : null;
}

/** Groups the SWEREF 99 TM metres as a map reads them: 6 580 743. */
function grouped(n) {
  return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, '\u202f');
}

/**
 * Fills the header's location block: the place line, both coordinate systems
 * with copy buttons, and the street address (asked for once the block shows,
 * so a slow geocoder never holds up the detail).
 */
export function renderWhere(box, alert, location, { alertId, onAddress } = {}) {
  // The detail is drawn again on every live update: keep the block (and a
  // focused copy button, and its "Copied") unless what it shows changed.
  const signature = JSON.stringify([getLang(), alertId, location, alert.place, alert.from_home, alert.position]);
  if (box.dataset.signature === signature) return;
  box.dataset.signature = signature;
  const line = whereLine(alert, location);
  box.hidden = !line && !location;
  const wherePlace = el('p', 'where-line', line || '');
  wherePlace.id = 'd-where-line';
  const nodes = [wherePlace];
  if (location && Number.isFinite(location.lat) && Number.isFinite(location.lon)) {
    const wgs = `${location.lat.toFixed(5)}, ${location.lon.toFixed(5)}`;
    nodes.push(coordRow('coord-wgs84', t('coord_wgs84'), wgs, wgs));
    const s = location.sweref99tm;
    if (s && Number.isFinite(s.n) && Number.isFinite(s.e)) {
      nodes.push(coordRow('coord-sweref', t('coord_sweref'),
        t('coord_sweref_fmt', { n: grouped(s.n), e: grouped(s.e) }), `${s.n}, ${s.e}`));
    }
    const addr = el('p', 'street-address muted', t('street_loading'));
    addr.id = 'd-street';
    nodes.push(addr);
    if (alertId !== undefined) loadStreetAddress(addr, alertId, onAddress);
  }
  if (location && location.measures_masked) nodes.push(el('p', 'muted small', t('where_masked')));
  box.replaceChildren(...nodes);
}

function coordRow(id, label, shown, copied) {
  const row = el('div', 'coord-row');
  row.id = id;
  const value = el('span', 'coord-value', shown);
  const copy = button(t('copy'), 'btn btn-small copy-btn', () => copyText(copied, copy));
  copy.setAttribute('aria-label', t('copy_label', { what: label }));
  row.append(el('span', 'coord-label', label), value, copy);
  return row;
}

/** The street address, cached per alert for this page so re-renders do not ask again. */
const streetCache = new Map();

async function loadStreetAddress(node, alertId, onAddress) {
  const show = (answer) => {
    const shown = { found: 'street_found', none: 'street_none', unavailable: 'street_unavailable' }[answer.status];
    node.classList.toggle('muted', answer.status !== 'found');
    // Without a geocoder (or a position) there is nothing to say: the line goes.
    node.textContent = shown ? t(shown, { text: answer.text }) : '';
    node.hidden = !shown;
    if (onAddress) onAddress(answer);
  };
  const key = String(alertId);
  const cached = streetCache.get(key);
  if (cached) { show(cached); return; }
  try {
    const answer = await api('GET', `/api/alerts/${encodeURIComponent(alertId)}/street-address`);
    if (!answer || typeof answer.status !== 'string') throw new Error('bad answer');
    if (answer.status !== 'unavailable') streetCache.set(key, answer);
    if (node.isConnected) show(answer);
  } catch {
    if (node.isConnected) show({ status: 'unavailable' });
  }
}

/**
 * Copies text to the clipboard: the Clipboard API where the page may use it
 * (HTTPS or localhost), else a selected hidden textarea and execCommand, which
 * a console on plain HTTP inside the police network still allows. The button
 * says it was copied, for sighted users and screen readers alike.
 */
export async function copyText(text, btn) {
  let ok = false;
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      ok = true;
    }
  } catch { ok = false; }
  if (!ok) ok = copyByTextarea(text);
  if (btn) {
    btn.textContent = ok ? t('copied') : t('copy_failed');
    btn.classList.toggle('copied', ok);
    clearTimeout(btn.copyTimer);
    btn.copyTimer = setTimeout(() => {
      btn.textContent = t('copy');
      btn.classList.remove('copied');
    }, COPIED_MS);
  }
  return ok;
}

function copyByTextarea(text) {
  const area = el('textarea', 'copy-buffer');
  area.value = text;
  area.setAttribute('readonly', '');
  document.body.append(area);
  const focused = document.activeElement;
  area.select();
  let ok = false;
  try { ok = document.execCommand('copy'); } catch { ok = false; }
  area.remove();
  if (focused && focused.focus) focused.focus();
  return ok;
}
