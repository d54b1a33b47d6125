// Coordinates as people type and paste them: decimal degrees in either order, with a
// decimal comma or point, SWEREF 99 TM (the national grid on Swedish maps), or a GeoJSON
// Polygon. Pure functions, no page: the browser suite tests them directly in Node.js.

/** Sweden with a little sea around; the server holds the same box (Bounds::SWEDEN). */
export const SWEDEN = { minLat: 55.0, maxLat: 69.5, minLon: 10.5, maxLon: 24.5 };

export function inSweden(lat, lon) {
  return lat >= SWEDEN.minLat && lat <= SWEDEN.maxLat && lon >= SWEDEN.minLon && lon <= SWEDEN.maxLon;
}

/** Accepts a decimal comma as well as a point (Swedish keyboards). */
export function parseDecimal(text) {
  const s = String(text ?? '').trim().replace(',', '.');
  return s === '' ? NaN : Number(s);
}

// SWEREF 99 TM: transverse Mercator on GRS 80, central meridian 15° E, scale 0.9996,
// false easting 500 000 m (Lantmäteriet's Gauss–Krüger formulas).
const A = 6378137.0;
const F = 1 / 298.257222101;
const K0 = 0.9996;
const LON0 = 15.0;
const FALSE_EASTING = 500000.0;

/** Grid north and east (metres) of SWEREF 99 TM to {lat, lon} in WGS 84 degrees. */
export function swerefToWgs84(north, east) {
  const e2 = F * (2 - F);
  const n = F / (2 - F);
  const aRoof = (A / (1 + n)) * (1 + n ** 2 / 4 + n ** 4 / 64);
  const d1 = n / 2 - (2 * n ** 2) / 3 + (37 * n ** 3) / 96 - n ** 4 / 360;
  const d2 = n ** 2 / 48 + n ** 3 / 15 - (437 * n ** 4) / 1440;
  const d3 = (17 * n ** 3) / 480 - (37 * n ** 4) / 840;
  const d4 = (4397 * n ** 4) / 161280;
  const aStar = e2 + e2 ** 2 + e2 ** 3 + e2 ** 4;
  const bStar = -(7 * e2 ** 2 + 17 * e2 ** 3 + 30 * e2 ** 4) / 6;
  const cStar = (224 * e2 ** 3 + 889 * e2 ** 4) / 120;
  const dStar = -(4279 * e2 ** 4) / 1260;
  const xi = north / (K0 * aRoof);
  const eta = (east - FALSE_EASTING) / (K0 * aRoof);
  const xiP = xi
    - d1 * Math.sin(2 * xi) * Math.cosh(2 * eta)
    - d2 * Math.sin(4 * xi) * Math.cosh(4 * eta)
    - d3 * Math.sin(6 * xi) * Math.cosh(6 * eta)
    - d4 * Math.sin(8 * xi) * Math.cosh(8 * eta);
  const etaP = eta
    - d1 * Math.cos(2 * xi) * Math.sinh(2 * eta)
    - d2 * Math.cos(4 * xi) * Math.sinh(4 * eta)
    - d3 * Math.cos(6 * xi) * Math.sinh(6 * eta)
    - d4 * Math.cos(8 * xi) * Math.sinh(8 * eta);
  const phiStar = Math.asin(Math.sin(xiP) / Math.cosh(etaP));
  const dLambda = Math.atan(Math.sinh(etaP) / Math.cos(xiP));
  const s2 = Math.sin(phiStar) ** 2;
  const phi = phiStar + Math.sin(phiStar) * Math.cos(phiStar) * (aStar + bStar * s2 + cStar * s2 ** 2 + dStar * s2 ** 3);
  return { lat: (phi * 180) / Math.PI, lon: LON0 + (dLambda * 180) / Math.PI };
}

/** Whether (north, east) looks like a SWEREF 99 TM position in or near Sweden. */
function isSweref(north, east) {
  return north >= 6_100_000 && north <= 7_700_000 && east >= 200_000 && east <= 1_000_000;
}

/**
 * One typed position as {lat, lon}, or {error} with an i18n key. Takes "59.3366, 18.0612",
 * "59,3366 18,0612", "18.0612 59.3366" (GeoJSON's order: Sweden's latitudes and longitudes
 * do not overlap, so the order is never ambiguous) and "6580822 674032" (SWEREF 99 TM).
 */
export function parsePosition(text) {
  const numbers = splitPair(String(text ?? ''));
  if (!numbers) return { error: 'coords_unreadable' };
  const [a, b] = numbers;
  if (isSweref(a, b)) return roundPosition(swerefToWgs84(a, b));
  if (isSweref(b, a)) return roundPosition(swerefToWgs84(b, a));
  if (inSweden(a, b)) return { lat: a, lon: b };
  if (inSweden(b, a)) return { lat: b, lon: a };
  return { error: 'coords_outside_sweden' };
}

/** Two numbers from "a, b", "a b", "a;b" or "a,b" (with decimal points), else null. */
function splitPair(text) {
  let s = text.trim().replace(/^[[(]|[\])]$/g, '').trim();
  // A comma followed by a space separates; a comma between digits is a decimal comma,
  // unless it is the only separator there is ("59.33,18.06").
  s = s.replace(/\s*\t\s*|,\s+/g, ' ');
  let parts = s.split(/\s+/).filter(Boolean);
  if (parts.length === 1 && /^[^,]*\.[^,]*,[^,]*$/.test(parts[0])) parts = parts[0].split(',');
  if (parts.length !== 2) return null;
  const numbers = parts.map((p) => parseDecimal(p.replace(/[°NnEeOo]$/, '')));
  return numbers.every(Number.isFinite) ? numbers : null;
}

function roundPosition({ lat, lon }) {
  const r = (v) => Math.round(v * 1e6) / 1e6;
  return { lat: r(lat), lon: r(lon) };
}

/**
 * The corners of an area, typed or pasted: one position a line (or separated by ";"),
 * or a GeoJSON Polygon, Feature or FeatureCollection. Returns {ring: [[lon, lat], ...]}
 * closed as GeoJSON wants it, or {error, line?} with an i18n key and the 1-based line.
 */
export function parseCorners(text) {
  const s = String(text ?? '').trim();
  if (!s) return { error: 'corners_empty' };
  let corners;
  if (s.startsWith('{')) {
    const polygon = geoJsonPolygon(s);
    if (!polygon) return { error: 'corners_geojson' };
    corners = [];
    for (const [i, p] of polygon.entries()) {
      const lon = Number(p && p[0]);
      const lat = Number(p && p[1]);
      if (!inSweden(lat, lon)) return { error: 'coords_outside_sweden', line: i + 1 };
      corners.push([lon, lat]);
    }
  } else {
    corners = [];
    const lines = s.split(/\r?\n|;\s*(?=\S)/).map((l) => l.trim());
    for (const [i, line] of lines.entries()) {
      if (!line) continue;
      const p = parsePosition(line);
      if (p.error) return { error: p.error, line: i + 1 };
      corners.push([p.lon, p.lat]);
    }
  }
  const open = corners.filter((p, i) => i === 0 || p[0] !== corners[i - 1][0] || p[1] !== corners[i - 1][1]);
  if (open.length > 1 && sameCorner(open[0], open[open.length - 1])) open.pop();
  if (new Set(open.map((p) => p.join(','))).size < 3) return { error: 'corners_too_few' };
  if (open.length > 500) return { error: 'corners_too_many' };
  return { ring: [...open, open[0]] };
}

function sameCorner(a, b) {
  return a[0] === b[0] && a[1] === b[1];
}

function geoJsonPolygon(text) {
  let v;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (v && v.type === 'FeatureCollection' && Array.isArray(v.features)) {
    v = v.features.find((f) => f && f.geometry && f.geometry.type === 'Polygon');
  }
  if (v && v.type === 'Feature') v = v.geometry;
  if (!v || v.type !== 'Polygon' || !Array.isArray(v.coordinates) || !Array.isArray(v.coordinates[0])) return null;
  return v.coordinates[0];
}

/** A zone's size as the radius of a circle of the same area, in metres. */
export function equivalentRadiusM(zone) {
  if (zone.type === 'circle') return zone.r;
  const ring = zone.rings[0];
  const lat0 = (ring[0][1] * Math.PI) / 180;
  const mPerDegLat = 111_320;
  const mPerDegLon = 111_320 * Math.cos(lat0);
  let twice = 0;
  for (let i = 0; i + 1 < ring.length; i++) {
    const [x1, y1] = [ring[i][0] * mPerDegLon, ring[i][1] * mPerDegLat];
    const [x2, y2] = [ring[i + 1][0] * mPerDegLon, ring[i + 1][1] * mPerDegLat];
    twice += x1 * y2 - x2 * y1;
  }
  return Math.sqrt(Math.abs(twice) / 2 / Math.PI);
}

/** Below this a zone is smaller than a phone's or an ankle tag's position error. */
export const SMALL_ZONE_M = 50;

/** A name that says nothing about what the zone protects ("Zone 1", "Område 2"). */
export function isPlaceholderName(name) {
  return /^\s*(zone|zon|område|omrade|area|polygon|circle|cirkel)\s*\d*\s*$/i.test(String(name ?? ''));
}
