// Maps drawn as inline SVG from geometry alone, so they work with no internet
// at all; when the server names a tile server (GET /api/console-config) the
// street tiles are laid beneath the same geometry.
//
// Projection: Web Mercator (the tiles' projection), shifted to the map's
// centre and scaled by cos(lat0) so one unit is one metre near the centre.
// Over the few kilometres a situation map spans the error is far below 1 %,
// and lines stay straight, which a duty officer's eye relies on.

import { t } from './i18n.js';
import { el, fmtDistance } from './common.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const MAP_W = 640;
const MAP_H = 400;
const R_MERC = 6378137;          // Web Mercator sphere (tiles)
const R_EARTH = 6371008.8;       // mean radius (distances)
const MAX_TILES = 64;
let mapSeq = 0;

export function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

const r1 = (n) => Math.round(n * 10) / 10;
const rad = (deg) => (deg * Math.PI) / 180;
const mercY = (lat) => Math.log(Math.tan(Math.PI / 4 + rad(lat) / 2));

function isLonLat(c) {
  return Array.isArray(c) && c.length >= 2 && Number.isFinite(c[0]) && Number.isFinite(c[1])
    && Math.abs(c[0]) <= 180 && Math.abs(c[1]) <= 85;
}

/** {lat, lon, acc} from an API position, or null when it is not usable. */
export function validPosition(p) {
  if (!p || !isLonLat([p.lon, p.lat])) return null;
  return { lat: p.lat, lon: p.lon, acc: Number.isFinite(p.acc_m) && p.acc_m > 0 ? p.acc_m : 0 };
}

// ---------------------------------------------------------------------------
// Zones
// ---------------------------------------------------------------------------

/** An API zone (GeoJSON Point + radius_m, or Polygon) as {name, type, ...}, or null. */
export function parseZone(zone) {
  const g = zone && zone.geometry;
  const name = (zone && zone.name) || '';
  if (!g) return null;
  if (g.type === 'Point' && isLonLat(g.coordinates)) {
    const r = Number(zone.radius_m);
    return Number.isFinite(r) && r > 0
      ? { name, type: 'circle', center: g.coordinates.slice(0, 2), r }
      : { name, type: 'point', center: g.coordinates.slice(0, 2) };
  }
  if (g.type === 'Polygon' && Array.isArray(g.coordinates)) {
    const rings = g.coordinates
      .filter((ring) => Array.isArray(ring) && ring.length >= 4 && ring.every(isLonLat))
      .map((ring) => ring.map((c) => c.slice(0, 2)));
    if (rings.length > 0) return { name, type: 'polygon', rings };
  }
  return null;
}

/** The API form of a parsed zone (what POST/PATCH of an order takes). */
export function zoneToApi(zone) {
  if (zone.type === 'polygon') {
    return { name: zone.name, geometry: { type: 'Polygon', coordinates: zone.rings.map(closeRing) } };
  }
  const out = { name: zone.name, geometry: { type: 'Point', coordinates: zone.center } };
  if (zone.type === 'circle') out.radius_m = Math.round(zone.r);
  return out;
}

/** GeoJSON rings repeat the first point at the end. */
function closeRing(ring) {
  const first = ring[0];
  const last = ring[ring.length - 1];
  return first[0] === last[0] && first[1] === last[1] ? ring : [...ring, first];
}

/**
 * Zones of every order; names of the ones that cannot be drawn are returned apart, and
 * so are those whose geometry the server withheld (a protected person's, no reason given).
 */
export function collectZones(orders) {
  const zones = [];
  const bad = [];
  const masked = [];
  for (const order of Array.isArray(orders) ? orders : []) {
    for (const zone of Array.isArray(order && order.zones) ? order.zones : []) {
      if (zone && zone.masked === true) {
        masked.push(zone.name || t('dash'));
        continue;
      }
      const parsed = parseZone(zone);
      if (parsed) zones.push(parsed);
      else bad.push((zone && zone.name) || t('dash'));
    }
  }
  return { zones, bad, masked };
}

// ---------------------------------------------------------------------------
// Distances (great circle for points, local plane for edges)
// ---------------------------------------------------------------------------

export function distanceM([lon1, lat1], [lon2, lat2]) {
  const dLat = rad(lat2 - lat1);
  const dLon = rad(lon2 - lon1);
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(rad(lat1)) * Math.cos(rad(lat2)) * Math.sin(dLon / 2) ** 2;
  return 2 * R_EARTH * Math.asin(Math.min(1, Math.sqrt(a)));
}

/** Plane metres around `origin`, precise enough for edges a few km long. */
function localPlane([lon0, lat0]) {
  const kx = Math.cos(rad(lat0)) * (R_EARTH * Math.PI) / 180;
  const ky = (R_EARTH * Math.PI) / 180;
  return {
    to: ([lon, lat]) => [(lon - lon0) * kx, (lat - lat0) * ky],
    from: ([x, y]) => [lon0 + x / kx, lat0 + y / ky],
  };
}

function pointInRing([x, y], ring) {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i, i += 1) {
    const [xi, yi] = ring[i];
    const [xj, yj] = ring[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function nearestOnSegment([px, py], [ax, ay], [bx, by]) {
  const dx = bx - ax;
  const dy = by - ay;
  const len2 = dx * dx + dy * dy;
  const k = len2 === 0 ? 0 : Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / len2));
  return [ax + k * dx, ay + k * dy];
}

/**
 * Where `point` ([lon, lat]) stands relative to a zone: inside or not, the
 * distance to its edge in metres, and the nearest edge point ([lon, lat]).
 */
function zoneRelation(point, zone) {
  const plane = localPlane(point);
  const p = [0, 0];
  if (zone.type !== 'polygon') {
    const c = plane.to(zone.center);
    const d = Math.hypot(c[0], c[1]);
    const r = zone.type === 'circle' ? zone.r : 0;
    const k = d === 0 ? 0 : (d - r) / d;
    return { inside: d <= r, edgeM: Math.abs(d - r), nearest: plane.from([c[0] * (1 - k), c[1] * (1 - k)]) };
  }
  const rings = zone.rings.map((ring) => ring.map(plane.to));
  // Holes are extra rings: inside the outer ring and in no hole.
  const inside = pointInRing(p, rings[0]) && !rings.slice(1).some((h) => pointInRing(p, h));
  let best = null;
  for (const ring of rings) {
    for (let i = 0; i < ring.length - 1; i += 1) {
      const q = nearestOnSegment(p, ring[i], ring[i + 1]);
      const d = Math.hypot(q[0], q[1]);
      if (!best || d < best.d) best = { d, q };
    }
  }
  return { inside, edgeM: best ? best.d : 0, nearest: best ? plane.from(best.q) : point };
}

// ---------------------------------------------------------------------------
// Views: projection + scale + centre, immutable
// ---------------------------------------------------------------------------

/**
 * A view of width W × height H px around projected centre (cx, cy) metres at
 * `s` px per metre, for a projection anchored at (lat0, lon0).
 */
export function makeView({ lat0, lon0, s, cx = 0, cy = 0, W = MAP_W, H = MAP_H }) {
  const k = R_MERC * Math.cos(rad(lat0));
  const y0 = mercY(lat0);
  const project = ([lon, lat]) => [rad(lon - lon0) * k, (mercY(lat) - y0) * k];
  const view = {
    lat0, lon0, s, cx, cy, W, H,
    project,
    px: (xy) => [W / 2 + (xy[0] - cx) * s, H / 2 - (xy[1] - cy) * s],
    toPx: (lonlat) => view.px(project(lonlat)),
    toLonLat: ([x, y]) => {
      const X = (x - W / 2) / s + cx;
      const Y = -(y - H / 2) / s + cy;
      const lon = lon0 + (X / k) * (180 / Math.PI);
      const lat = (2 * Math.atan(Math.exp(Y / k + y0)) - Math.PI / 2) * (180 / Math.PI);
      return [lon, lat];
    },
    /** Same anchor, scaled by `factor` around the screen point `at`. */
    zoom: (factor, at = [W / 2, H / 2]) => {
      const [X, Y] = [(at[0] - W / 2) / s + cx, -(at[1] - H / 2) / s + cy];
      const s2 = Math.min(Math.max(s * factor, 0.0005), 20);
      return makeView({ lat0, lon0, W, H, s: s2, cx: X - (at[0] - W / 2) / s2, cy: Y + (at[1] - H / 2) / s2 });
    },
    /** Moved so the content shifts by (dx, dy) screen px. */
    pan: (dx, dy) => makeView({ lat0, lon0, W, H, s, cx: cx - dx / s, cy: cy + dy / s }),
  };
  return view;
}

/** A view that shows every [lon, lat] (with radii in metres) with a margin. */
export function fitView(points, { pad = 44, minSpanM = 300, W = MAP_W, H = MAP_H } = {}) {
  const [lon0, lat0] = points[0].c;
  const base = makeView({ lat0, lon0, s: 1, W, H });
  let minX = Infinity; let minY = Infinity; let maxX = -Infinity; let maxY = -Infinity;
  for (const { c, r = 0 } of points) {
    const [x, y] = base.project(c);
    minX = Math.min(minX, x - r); maxX = Math.max(maxX, x + r);
    minY = Math.min(minY, y - r); maxY = Math.max(maxY, y + r);
  }
  const spanX = Math.max(maxX - minX, minSpanM);
  const spanY = Math.max(maxY - minY, minSpanM);
  const s = Math.min((W - 2 * pad) / spanX, (H - 2 * pad) / spanY);
  return makeView({ lat0, lon0, s, cx: (minX + maxX) / 2, cy: (minY + maxY) / 2, W, H });
}

/** Every coordinate of the zones, for fitting a view around them. */
export function zonePoints(zones) {
  const out = [];
  for (const z of zones) {
    if (z.type === 'polygon') z.rings[0].forEach((c) => out.push({ c }));
    else out.push({ c: z.center, r: z.type === 'circle' ? z.r : 0 });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Drawing
// ---------------------------------------------------------------------------

/** The <svg> root with its accessible title and background. */
export function mapRoot(title, { className = 'map-svg', W = MAP_W, H = MAP_H } = {}) {
  const titleId = `map-title-${++mapSeq}`;
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: className, role: 'img', 'aria-labelledby': titleId });
  root.append(svg('title', { id: titleId }, title));
  root.append(svg('rect', { x: 0, y: 0, width: W, height: H, class: 'map-bg' }));
  return root;
}

/** "https://tile.example/{z}/{x}/{y}.png" with {s} for subdomains, if any. */
function tileHref(template, z, x, y) {
  return template.replace('{z}', z).replace('{x}', x).replace('{y}', y).replace('{s}', 'a');
}

/**
 * Street tiles beneath the geometry. The zoom level is the one whose tiles
 * come closest to 256 screen px; tiles are placed in the view's own pixels,
 * so they line up with everything drawn on top.
 */
export function drawTiles(root, view, template) {
  if (!template) return;
  const k = view.s * R_MERC * Math.cos(rad(view.lat0)); // screen px per radian of longitude
  const z = Math.max(1, Math.min(19, Math.round(Math.log2((2 * Math.PI * k) / 256))));
  const n = 2 ** z;
  const tilePx = (2 * Math.PI * k) / n;
  const [lonL, latT] = view.toLonLat([0, 0]);
  const [lonR, latB] = view.toLonLat([view.W, view.H]);
  const tx = (lon) => Math.floor(((lon + 180) / 360) * n);
  const ty = (lat) => Math.floor(((1 - mercY(lat) / Math.PI) / 2) * n);
  const x0 = tx(lonL); const x1 = tx(lonR); const y0 = ty(latT); const y1 = ty(latB);
  if ((x1 - x0 + 1) * (y1 - y0 + 1) > MAX_TILES) return;
  const g = svg('g', { class: 'map-tiles', 'aria-hidden': 'true' });
  for (let x = x0; x <= x1; x += 1) {
    for (let y = y0; y <= y1; y += 1) {
      if (y < 0 || y >= n) continue;
      const lon = (x / n) * 360 - 180;
      const lat = (Math.atan(Math.sinh(Math.PI * (1 - (2 * y) / n))) * 180) / Math.PI;
      const [px, py] = view.toPx([lon, lat]);
      g.append(svg('image', {
        href: tileHref(template, z, ((x % n) + n) % n, y),
        x: r1(px), y: r1(py), width: r1(tilePx + 0.5), height: r1(tilePx + 0.5),
        preserveAspectRatio: 'none',
      }));
    }
  }
  root.append(g);
  let host = '';
  try { host = new URL(template.replace(/[{}]/g, '')).host; } catch { /* shown without a host */ }
  root.append(svg('text', { x: view.W - 6, y: view.H - 6, 'text-anchor': 'end', class: 'map-attrib' }, t('map_tiles_from', { host })));
}

/** A round length (1, 2 or 5 × 10^n metres) no longer than `maxM`. */
function niceLength(maxM) {
  const pow = 10 ** Math.floor(Math.log10(Math.max(maxM, 1)));
  for (const m of [5, 2, 1]) if (m * pow <= maxM) return m * pow;
  return pow;
}

/** Faint grid at the scale-bar step, to judge distances where no tiles are drawn. */
export function drawGrid(root, view) {
  const step = niceLength(view.W / view.s / 4);
  const stepPx = step * view.s;
  if (stepPx < 20) return;
  const g = svg('g', { class: 'map-grid', 'aria-hidden': 'true' });
  const [ox, oy] = view.px([0, 0]);
  const start = (o) => o - Math.ceil(o / stepPx) * stepPx;
  for (let x = start(ox); x < view.W; x += stepPx) g.append(svg('line', { x1: r1(x), y1: 0, x2: r1(x), y2: view.H }));
  for (let y = start(oy); y < view.H; y += stepPx) g.append(svg('line', { x1: 0, y1: r1(y), x2: view.W, y2: r1(y) }));
  root.append(g);
}

function centroid(ring) {
  const pts = ring.length > 1 ? ring.slice(0, -1) : ring;
  const sum = pts.reduce((acc, [x, y]) => [acc[0] + x, acc[1] + y], [0, 0]);
  return [sum[0] / pts.length, sum[1] / pts.length];
}

/** An exclusion zone; `hit` marks the one the alarm lies inside. */
export function drawZone(root, view, zone, { hit = false, className = '' } = {}) {
  const g = svg('g', { class: `map-zone${hit ? ' zone-hit' : ''}${className ? ` ${className}` : ''}` });
  // Labels sit just inside the top edge, leaving the middle (where the
  // address or the alarm often is) free.
  let labelAt;
  if (zone.type === 'polygon') {
    const outer = zone.rings[0].map((c) => view.toPx(c));
    // Holes are extra rings; evenodd leaves them unfilled.
    const d = zone.rings.map((ring) => `M${ring.map((c) => view.toPx(c).map(r1).join(',')).join('L')}Z`).join('');
    g.append(svg('path', { d, 'fill-rule': 'evenodd', class: 'zone-shape' }));
    const top = Math.min(...outer.map((p) => p[1]));
    const height = Math.max(...outer.map((p) => p[1])) - top;
    labelAt = [view.toPx(centroid(zone.rings[0]))[0], height > 40 ? top + 16 : top - 6];
  } else {
    const [x, y] = view.toPx(zone.center);
    const r = zone.type === 'circle' ? Math.max(zone.r * view.s, 3) : 5;
    g.append(svg('circle', { cx: r1(x), cy: r1(y), r: r1(r), class: zone.type === 'circle' ? 'zone-shape' : 'zone-point' }));
    labelAt = [x, r > 40 ? y - r + 18 : y - r - 6];
  }
  if (zone.name) {
    g.append(svg('text', { x: r1(labelAt[0]), y: r1(labelAt[1]), class: 'map-label zone-label', 'text-anchor': 'middle' }, zone.name));
  }
  root.append(g);
}

/**
 * The registered address: a small house. Its label goes to the left when the
 * alarm (labelled to the right) is close by, which is the usual case: an
 * alarm at home.
 */
export function drawAddress(root, view, lonlat, { avoid = null } = {}) {
  const [x, y] = view.toPx(lonlat);
  const g = svg('g', { class: 'map-address' });
  g.append(svg('path', { d: `M${r1(x - 7)},${r1(y + 7)}V${r1(y - 1)}L${r1(x)},${r1(y - 8)}L${r1(x + 7)},${r1(y - 1)}V${r1(y + 7)}Z` }));
  const crowded = avoid && Math.abs(avoid[0] - x) < 90 && Math.abs(avoid[1] - y) < 40;
  g.append(svg('text', crowded
    ? { x: r1(x - 11), y: r1(y + 14), class: 'map-label', 'text-anchor': 'end' }
    : { x: r1(x + 11), y: r1(y + 14), class: 'map-label' }, t('map_address')));
  root.append(g);
}

/** The alarm: a dot with a cross and its accuracy circle. */
function drawPosition(root, view, pos) {
  const [x, y] = view.toPx([pos.lon, pos.lat]);
  const g = svg('g', { class: 'map-position' });
  if (pos.acc > 0) g.append(svg('circle', { cx: r1(x), cy: r1(y), r: r1(Math.max(pos.acc * view.s, 1)), class: 'acc' }));
  g.append(svg('circle', { cx: r1(x), cy: r1(y), r: 7, class: 'dot' }));
  g.append(svg('path', { d: `M${r1(x - 12)},${r1(y)}H${r1(x + 12)}M${r1(x)},${r1(y - 12)}V${r1(y + 12)}`, class: 'cross' }));
  g.append(svg('text', { x: r1(x + 12), y: r1(y - 10), class: 'map-label' }, t('map_alarm')));
  root.append(g);
}

/** A dashed measuring line between two [lon, lat] with its length halfway. */
function drawDistance(root, view, from, to, metres, className = '') {
  const [x1, y1] = view.toPx(from);
  const [x2, y2] = view.toPx(to);
  if (Math.hypot(x2 - x1, y2 - y1) < 24) return; // too short to be readable; the legend says it
  const g = svg('g', { class: `map-distance ${className}`.trim() });
  g.append(svg('line', { x1: r1(x1), y1: r1(y1), x2: r1(x2), y2: r1(y2) }));
  g.append(svg('text', { x: r1((x1 + x2) / 2 + 6), y: r1((y1 + y2) / 2 - 6), class: 'map-label' }, fmtDistance(metres)));
  root.append(g);
}

export function drawNorthArrow(root, view) {
  const x = view.W - 28;
  const y = 16;
  const g = svg('g', { class: 'map-north', 'aria-hidden': 'true' });
  g.append(svg('rect', { x: x - 16, y: y - 6, width: 32, height: 52, rx: 4, class: 'map-box' }));
  g.append(svg('path', { d: `M${x},${y}L${x + 8},${y + 22}L${x},${y + 17}L${x - 8},${y + 22}Z` }));
  g.append(svg('text', { x, y: y + 40, 'text-anchor': 'middle', class: 'map-label north-label' }, t('map_north')));
  root.append(g);
}

export function drawScaleBar(root, view) {
  const metres = niceLength(view.W / view.s / 4);
  const len = metres * view.s;
  const x = 16;
  const y = view.H - 18;
  const g = svg('g', { class: 'map-scale' });
  g.append(svg('rect', { x: x - 8, y: y - 24, width: r1(len + 16), height: 34, rx: 4, class: 'map-box' }));
  g.append(svg('path', { d: `M${x},${y - 6}V${y}H${r1(x + len)}V${y - 6}`, class: 'scale-line' }));
  g.append(svg('text', { x, y: y - 10, class: 'map-label' }, fmtDistance(metres)));
  root.append(g);
}

// ---------------------------------------------------------------------------
// The situation map of an alert
// ---------------------------------------------------------------------------

/**
 * Draws the alarm position, exclusion zones and registered address with
 * distances, scale bar and north arrow; fills the legend (which also says
 * in words what the map shows, for screen readers and for a quick read).
 */
export function renderSituationMap(container, legend, { position, address, orders, tileUrl }) {
  // Drawn at the size it is shown, so labels keep their size on any screen.
  const W = Math.max(280, Math.round(container.clientWidth || MAP_W));
  const H = Math.round(W * 0.62);
  container.replaceChildren();
  legend.replaceChildren();

  const pos = validPosition(position);
  const addr = address && isLonLat([address.lon, address.lat]) ? [address.lon, address.lat] : null;
  const { zones, bad, masked } = collectZones(orders);
  const relations = pos ? zones.map((z) => ({ zone: z, ...zoneRelation([pos.lon, pos.lat], z) })) : [];

  const points = [];
  if (pos) points.push({ c: [pos.lon, pos.lat], r: pos.acc });
  if (addr) points.push({ c: addr });
  points.push(...zonePoints(zones));
  if (points.length === 0) {
    container.append(el('p', 'muted', t('map_empty')));
    addLegendNotes(legend, pos, bad, masked);
    return;
  }
  const view = fitView(pos ? aroundAlarm(points, pos) : points, { W, H });
  const root = mapRoot(t('map_title'), { W, H });
  drawTiles(root, view, tileUrl);
  if (!tileUrl) drawGrid(root, view);
  for (const rel of relations.length ? relations : zones.map((zone) => ({ zone }))) {
    drawZone(root, view, rel.zone, { hit: rel.inside === true });
  }
  if (addr) drawAddress(root, view, addr, { avoid: pos ? view.toPx([pos.lon, pos.lat]) : null });
  if (pos) drawDistances(root, view, pos, addr, relations);
  if (pos) drawPosition(root, view, pos);
  drawNorthArrow(root, view);
  drawScaleBar(root, view);
  container.append(root);
  separateLabels(root, view);

  buildLegend(legend, pos, zones, addr, relations);
  addLegendNotes(legend, pos, bad, masked);
}

/** Home and zones further than this from the alarm stay off a map zoomed to it. */
const CONTEXT_M = 1000;

/**
 * The map is zoomed to the alarm and its accuracy circle, the street level a
 * patrol needs; the address and zones come into view when they are within
 * CONTEXT_M of it. Further away they would shrink the alarm to a dot: the
 * location line above the map says how far and which way they are, and the
 * legend names them.
 */
function aroundAlarm(points, pos) {
  const at = [pos.lon, pos.lat];
  return [points[0], ...points.slice(1).filter((p) => distanceM(at, p.c) - (p.r || 0) <= CONTEXT_M)];
}

/**
 * Moves labels apart so that none covers another: the boxed north arrow and
 * scale bar stay, then the alarm's label, the address's, the zones' and the
 * distances' each take the first free spot near where they were drawn (above,
 * below, beside), inside the map. A label with no free spot is hidden; the
 * legend says what it said.
 */
export function separateLabels(root, view) {
  const rank = (node) => {
    if (node.closest('.map-north, .map-scale')) return 0;
    if (node.closest('.map-position')) return 1;
    if (node.closest('.map-address')) return 2;
    if (node.closest('.map-zone')) return 3;
    return 4;
  };
  const labels = [...root.querySelectorAll('text.map-label')]
    .map((node, i) => ({ node, rank: rank(node), i }))
    .sort((a, b) => a.rank - b.rank || a.i - b.i);
  const placed = [];
  const overlaps = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
  const fits = (b) => b.x >= 0 && b.y >= 0 && b.x + b.w <= view.W && b.y + b.h <= view.H;
  for (const { node, rank: r } of labels) {
    let box;
    try { box = node.getBBox(); } catch { continue; } // not rendered (hidden container)
    if (!box || box.width === 0) continue;
    const gap = 2;
    const b = { x: box.x - gap, y: box.y - gap, w: box.width + 2 * gap, h: box.height + 2 * gap };
    if (r === 0) { placed.push(b); continue; }
    const step = b.h;
    const moves = [[0, 0], [0, -step], [0, step], [0, -2 * step], [0, 2 * step],
      [-(b.w / 2 + 8), 0], [b.w / 2 + 8, 0], [-(b.w / 2 + 8), -step], [b.w / 2 + 8, step], [0, -3 * step], [0, 3 * step]];
    const free = moves.find(([dx, dy]) => {
      const c = { ...b, x: b.x + dx, y: b.y + dy };
      return fits(c) && !placed.some((p) => overlaps(p, c));
    });
    if (!free) {
      node.setAttribute('visibility', 'hidden');
      node.classList.add('label-hidden');
      continue;
    }
    const [dx, dy] = free;
    if (dx || dy) {
      node.setAttribute('x', r1(Number(node.getAttribute('x')) + dx));
      node.setAttribute('y', r1(Number(node.getAttribute('y')) + dy));
    }
    placed.push({ ...b, x: b.x + dx, y: b.y + dy });
  }
}

/** The nearest zone the alarm is outside of, when it is inside none. */
function nearestOutside(relations) {
  if (relations.some((r) => r.inside)) return null;
  return relations.reduce((best, r) => (!best || r.edgeM < best.edgeM ? r : best), null);
}

function drawDistances(root, view, pos, addr, relations) {
  const p = [pos.lon, pos.lat];
  if (addr) drawDistance(root, view, p, addr, distanceM(p, addr), 'dist-address');
  const near = nearestOutside(relations);
  if (near) drawDistance(root, view, p, near.nearest, near.edgeM, 'dist-zone');
}

function legendItem(legend, swatch, text) {
  const li = el('li');
  li.append(el('span', `swatch ${swatch}`), el('span', null, text));
  legend.append(li);
}

function buildLegend(legend, pos, zones, addr, relations) {
  if (pos) {
    legendItem(legend, 'swatch-position', pos.acc
      ? t('legend_position', { acc: Math.round(pos.acc) })
      : t('legend_position_noacc'));
  }
  for (const z of zones) {
    const rel = relations.find((r) => r.zone === z);
    let text = z.type === 'circle'
      ? t('legend_zone_circle', { name: z.name, r: Math.round(z.r) })
      : t('legend_zone', { name: z.name });
    if (rel) text += ` – ${rel.inside ? t('legend_inside') : t('legend_outside', { d: fmtDistance(rel.edgeM) })}`;
    legendItem(legend, rel && rel.inside ? 'swatch-zone swatch-zone-hit' : 'swatch-zone', text);
  }
  if (addr) {
    const text = pos
      ? `${t('legend_address')} – ${t('legend_from_alarm', { d: fmtDistance(distanceM([pos.lon, pos.lat], addr)) })}`
      : t('legend_address');
    legendItem(legend, 'swatch-address', text);
  }
}

function addLegendNotes(legend, pos, bad, masked = []) {
  if (!pos) legend.append(el('li', 'muted', t('legend_no_position')));
  for (const name of bad) legend.append(el('li', 'muted', t('legend_zone_bad', { name })));
  for (const name of masked) legend.append(el('li', 'muted masked', t('legend_zone_masked', { name })));
}
