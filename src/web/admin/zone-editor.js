// Interactive maps for the coordinators' pages: drawing exclusion zones
// (polygons and circles) and picking an address. Built on map.js, so the
// drawing works with no internet (geometry, grid and scale bar) and shows
// street tiles beneath when a tile server is configured.
//
// Pointer: click to add corners or set a circle, drag to pan, wheel or the
// +/− buttons to zoom. Keyboard: the map takes focus (arrows pan, + and −
// zoom) and every zone can also be entered as numbers (a circle by centre
// and radius, an area by its corners typed or pasted), so nothing here needs
// a mouse.

import { t } from './i18n.js';
import { el, button, fmtDistance } from './common.js';
import {
  svg, fitView, mapRoot, drawTiles, drawGrid, drawZone, drawAddress,
  drawNorthArrow, drawScaleBar, distanceM, zonePoints, parseZone, zoneToApi,
} from './map.js';
import {
  parseDecimal, parsePosition, parseCorners, equivalentRadiusM, isPlaceholderName, SMALL_ZONE_M,
} from './coords.js';

// Where a map opens when nothing is known yet: Stockholm city centre.
const DEFAULT_CENTRE = [18.0686, 59.3293];
const CLICK_SLOP_PX = 5;        // more movement than this between down and up is a drag
const CLOSE_RING_PX = 12;       // a click this near the first corner closes the polygon
const MIN_RADIUS_M = 10;
const ROUND = 1e6;              // coordinates kept to 6 decimals (~0.1 m)

const round6 = (n) => Math.round(n * ROUND) / ROUND;
const roundLonLat = ([lon, lat]) => [round6(lon), round6(lat)];

// ---------------------------------------------------------------------------
// The interactive map: pan, zoom, click; two layers so tiles are not
// re-created on every pointer move
// ---------------------------------------------------------------------------

/**
 * `drawOverlay(layer, view)` draws what changes (zones, previews);
 * `onClick(lonlat, px)` and `onHover(lonlat | null)` report the pointer.
 */
function createInteractiveMap(container, { initialPoints, minSpanM, tileUrl, title, drawOverlay, onClick, onHover }) {
  const W = Math.max(300, Math.round(container.clientWidth || 640));
  const H = Math.round(W * 0.62);
  let view = initialPoints.length
    ? fitView(initialPoints, { W, H, minSpanM, pad: 50 })
    : fitView([{ c: DEFAULT_CENTRE, r: minSpanM / 2 }], { W, H, minSpanM, pad: 50 });

  const root = mapRoot(title, { W, H, className: 'map-svg map-interactive' });
  root.setAttribute('tabindex', '0');
  const base = svg('g', { class: 'map-base' });
  const overlay = svg('g', { class: 'map-overlay' });
  const chrome = svg('g', { class: 'map-chrome' });
  root.append(base, overlay, chrome);
  container.append(root);

  function redrawBase() {
    base.replaceChildren();
    drawTiles(base, view, tileUrl);
    if (!tileUrl) drawGrid(base, view);
    chrome.replaceChildren();
    drawNorthArrow(chrome, view);
    drawScaleBar(chrome, view);
  }
  function redrawOverlay() {
    overlay.replaceChildren();
    drawOverlay(overlay, view);
  }
  function redraw() {
    redrawBase();
    redrawOverlay();
  }
  function setView(next) {
    view = next;
    redraw();
  }

  /** Pointer position in the SVG's own pixels (it is scaled to the page width). */
  function toSvgPx(event) {
    const rect = root.getBoundingClientRect();
    return [((event.clientX - rect.left) * W) / rect.width, ((event.clientY - rect.top) * H) / rect.height];
  }

  let press = null; // {start, last, dragging}
  root.addEventListener('pointerdown', (event) => {
    if (event.button !== 0) return;
    root.setPointerCapture(event.pointerId);
    const p = toSvgPx(event);
    press = { start: p, last: p, dragging: false };
  });
  root.addEventListener('pointermove', (event) => {
    const p = toSvgPx(event);
    if (press) {
      if (!press.dragging && Math.hypot(p[0] - press.start[0], p[1] - press.start[1]) > CLICK_SLOP_PX) press.dragging = true;
      if (press.dragging) {
        view = view.pan(p[0] - press.last[0], p[1] - press.last[1]);
        press.last = p;
        redraw();
        return;
      }
    }
    if (onHover) onHover(view.toLonLat(p));
  });
  root.addEventListener('pointerup', (event) => {
    if (!press) return;
    const wasDrag = press.dragging;
    press = null;
    if (!wasDrag && onClick) {
      const p = toSvgPx(event);
      onClick(view.toLonLat(p), p, view);
    }
  });
  root.addEventListener('pointerleave', () => { if (onHover) onHover(null); });
  root.addEventListener('wheel', (event) => {
    event.preventDefault();
    setView(view.zoom(event.deltaY < 0 ? 1.25 : 0.8, toSvgPx(event)));
  }, { passive: false });
  root.addEventListener('keydown', (event) => {
    const step = 60;
    const moves = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
    if (moves[event.key]) setView(view.pan(...moves[event.key]));
    else if (event.key === '+' || event.key === '=') setView(view.zoom(1.5));
    else if (event.key === '-') setView(view.zoom(1 / 1.5));
    else return;
    event.preventDefault();
  });

  redraw();
  return {
    root,
    redrawOverlay,
    zoomIn: () => setView(view.zoom(1.5)),
    zoomOut: () => setView(view.zoom(1 / 1.5)),
    /** Re-centres on the given points (after adding a zone by numbers, say). */
    fit: (points) => { if (points.length) setView(fitView(points, { W, H, minSpanM, pad: 50 })); },
  };
}

function zoomButtons(map) {
  const box = el('span', 'zoom-buttons');
  const zin = button('+', 'btn btn-small', () => map.zoomIn());
  zin.setAttribute('aria-label', t('map_zoom_in'));
  const zout = button('−', 'btn btn-small', () => map.zoomOut());
  zout.setAttribute('aria-label', t('map_zoom_out'));
  box.append(zin, zout);
  return box;
}

// ---------------------------------------------------------------------------
// Zone editor
// ---------------------------------------------------------------------------

/**
 * Edits a list of zones. `zones` are API zones ({name, geometry, radius_m});
 * `reference` is the protected person's address ({lat, lon}) when known.
 * Returns {getZones(): API zones, validate(): error key or null}.
 */
export function createZoneEditor(container, { zones = [], reference = null, tileUrl = null }) {
  const state = {
    zones: zones.map(parseZone).filter(Boolean),
    mode: null,        // null | 'polygon' | 'circle'
    points: [],        // polygon corners drawn so far, [lon, lat]
    centre: null,      // circle centre while drawing
    hover: null,       // pointer position for the rubber band
  };
  const refLonLat = reference && Number.isFinite(reference.lat) && Number.isFinite(reference.lon)
    ? [reference.lon, reference.lat] : null;

  container.replaceChildren();
  const toolbar = el('div', 'zone-toolbar');
  const polyBtn = button(t('zone_draw_polygon'), 'btn btn-small btn-toggle', () => startDrawing('polygon'));
  const circleBtn = button(t('zone_draw_circle'), 'btn btn-small btn-toggle', () => startDrawing('circle'));
  const finishBtn = button(t('zone_finish'), 'btn btn-small btn-primary', finishPolygon);
  const undoBtn = button(t('zone_undo'), 'btn btn-small', undoPoint);
  const cancelBtn = button(t('zone_cancel_drawing'), 'btn btn-small', cancelDrawing);
  toolbar.append(polyBtn, circleBtn, finishBtn, undoBtn, cancelBtn);
  if (refLonLat) {
    toolbar.append(button(t('zone_around_address'), 'btn btn-small', () => {
      addZone({ type: 'circle', center: refLonLat, r: 300 });
    }));
  }
  const hint = el('p', 'zone-hint');
  hint.setAttribute('aria-live', 'polite');
  const mapBox = el('div', 'map zone-map');
  const list = el('ol', 'zone-list');
  container.append(toolbar, hint, mapBox, list, coordinateForm());

  const initial = [...zonePoints(state.zones)];
  if (refLonLat) initial.push({ c: refLonLat });
  const map = createInteractiveMap(mapBox, {
    initialPoints: initial,
    minSpanM: 1200,
    tileUrl,
    title: t('zone_map_title'),
    drawOverlay,
    onClick,
    onHover: (lonlat) => {
      state.hover = lonlat;
      if (state.mode) map.redrawOverlay();
    },
  });
  toolbar.append(zoomButtons(map));
  render();

  function drawOverlay(layer, view) {
    state.zones.forEach((zone) => drawZone(layer, view, zone));
    if (refLonLat) drawAddress(layer, view, refLonLat);
    if (state.mode === 'polygon' && state.points.length) drawPolygonPreview(layer, view);
    if (state.mode === 'circle' && state.centre) drawCirclePreview(layer, view);
  }

  function drawPolygonPreview(layer, view) {
    const pts = state.points.map((c) => view.toPx(c));
    if (state.hover) pts.push(view.toPx(state.hover));
    layer.append(svg('polyline', { points: pts.map((p) => p.join(',')).join(' '), class: 'draw-line' }));
    state.points.forEach((c, i) => {
      const [x, y] = view.toPx(c);
      layer.append(svg('circle', { cx: x, cy: y, r: i === 0 ? 7 : 4, class: i === 0 ? 'draw-vertex draw-first' : 'draw-vertex' }));
    });
  }

  function drawCirclePreview(layer, view) {
    const [x, y] = view.toPx(state.centre);
    layer.append(svg('circle', { cx: x, cy: y, r: 4, class: 'draw-vertex' }));
    if (!state.hover) return;
    const r = distanceM(state.centre, state.hover);
    layer.append(svg('circle', { cx: x, cy: y, r: Math.max(r * view.s, 1), class: 'draw-line' }));
    const [hx, hy] = view.toPx(state.hover);
    layer.append(svg('text', { x: hx + 10, y: hy - 8, class: 'map-label' }, fmtDistance(r)));
  }

  function onClick(lonlat, px, view) {
    if (state.mode === 'polygon') {
      const first = state.points[0];
      if (first && state.points.length >= 3) {
        const [fx, fy] = view.toPx(first);
        if (Math.hypot(px[0] - fx, px[1] - fy) <= CLOSE_RING_PX) {
          finishPolygon();
          return;
        }
      }
      state.points.push(roundLonLat(lonlat));
      render();
    } else if (state.mode === 'circle') {
      if (!state.centre) {
        state.centre = roundLonLat(lonlat);
        render();
      } else {
        const r = Math.max(MIN_RADIUS_M, Math.round(distanceM(state.centre, lonlat)));
        addZone({ type: 'circle', center: state.centre, r });
      }
    }
  }

  function startDrawing(mode) {
    state.mode = state.mode === mode ? null : mode;
    state.points = [];
    state.centre = null;
    render();
    map.root.focus();
  }

  function finishPolygon() {
    if (state.mode !== 'polygon' || state.points.length < 3) return;
    addZone({ type: 'polygon', rings: [[...state.points, state.points[0]]] });
  }

  function undoPoint() {
    if (state.mode === 'polygon' && state.points.length) state.points.pop();
    else if (state.mode === 'circle') state.centre = null;
    render();
  }

  function cancelDrawing() {
    state.mode = null;
    state.points = [];
    state.centre = null;
    render();
  }

  /**
   * A finished zone has no name yet: focus goes to its name field, and the order is not
   * saved until the zone is named for what it protects ("Home", "School").
   */
  function addZone(zone) {
    zone.name = '';
    state.zones.push(zone);
    state.mode = null;
    state.points = [];
    state.centre = null;
    render();
    const input = list.lastElementChild && list.lastElementChild.querySelector('input');
    if (input) {
      input.focus();
      input.select();
    }
  }

  function render() {
    polyBtn.setAttribute('aria-pressed', String(state.mode === 'polygon'));
    circleBtn.setAttribute('aria-pressed', String(state.mode === 'circle'));
    finishBtn.hidden = state.mode !== 'polygon';
    finishBtn.disabled = state.points.length < 3;
    undoBtn.hidden = !state.mode;
    cancelBtn.hidden = !state.mode;
    hint.textContent = hintText();
    map.root.classList.toggle('drawing', Boolean(state.mode));
    map.redrawOverlay();
    renderList();
  }

  function hintText() {
    if (state.mode === 'polygon') {
      return state.points.length < 3
        ? t('zone_hint_polygon', { n: state.points.length })
        : t('zone_hint_polygon_close', { n: state.points.length });
    }
    if (state.mode === 'circle') return state.centre ? t('zone_hint_circle_radius') : t('zone_hint_circle_centre');
    return state.zones.length ? t('zone_hint_idle') : t('zone_hint_none');
  }

  function renderList() {
    list.replaceChildren();
    state.zones.forEach((zone, i) => list.append(zoneItem(zone, i)));
  }

  function zoneItem(zone, i) {
    const li = el('li', 'zone-item');
    const field = el('div', 'field zone-name');
    const id = `zone-name-${i}-${Math.random().toString(36).slice(2, 7)}`;
    const label = el('label', null, t('zone_name_label', { n: i + 1 }));
    label.htmlFor = id;
    const input = el('input');
    input.id = id;
    input.type = 'text';
    input.maxLength = 100;
    input.required = true;
    input.placeholder = t('zone_name_placeholder');
    input.value = zone.name;
    input.dataset.field = `zones[${i}]`;
    input.addEventListener('input', () => { zone.name = input.value; });
    input.addEventListener('change', () => map.redrawOverlay());
    field.append(label, input);
    li.append(field);
    if (zone.type === 'circle') li.append(radiusField(zone, i));
    else li.append(el('span', 'zone-summary muted', t('zone_polygon_summary', { n: zone.rings[0].length - 1 })));
    li.append(button(t('zone_remove'), 'btn btn-small', () => {
      state.zones.splice(i, 1);
      render();
    }));
    li.append(smallZoneWarning(zone));
    return li;
  }

  /**
   * A zone under 50 m is smaller than the error of a phone's or an ankle tag's position:
   * breaches go unseen or are reported where there are none. Said beside the zone, and
   * the order is saved only once the coordinator confirms it is meant to be so small.
   */
  function smallZoneWarning(zone) {
    const box = el('div', 'zone-warning');
    const size = Math.round(equivalentRadiusM(zone));
    box.hidden = !(size < SMALL_ZONE_M);
    if (box.hidden) return box;
    box.setAttribute('role', 'note');
    const id = `zone-small-${Math.random().toString(36).slice(2, 7)}`;
    box.append(el('p', null, t(zone.type === 'circle' ? 'zone_small_circle' : 'zone_small_area', { m: size, min: SMALL_ZONE_M })));
    const confirm = el('input');
    confirm.type = 'checkbox';
    confirm.id = id;
    confirm.checked = Boolean(zone.smallConfirmed);
    confirm.addEventListener('change', () => { zone.smallConfirmed = confirm.checked; });
    const label = el('label', null, t('zone_small_confirm'));
    label.htmlFor = id;
    const row = el('div', 'check');
    row.append(confirm, label);
    box.append(row);
    return box;
  }

  function radiusField(zone, i) {
    const field = el('div', 'field zone-radius');
    const id = `zone-radius-${i}-${Math.random().toString(36).slice(2, 7)}`;
    const label = el('label', null, t('zone_radius_label'));
    label.htmlFor = id;
    const input = el('input');
    input.id = id;
    input.type = 'number';
    input.min = '1';
    input.max = '50000';
    input.step = '1';
    input.value = String(Math.round(zone.r));
    input.addEventListener('change', () => {
      const r = Number(input.value);
      if (Number.isFinite(r) && r >= 1) {
        const wasSmall = zone.r < SMALL_ZONE_M;
        zone.r = r;
        if (wasSmall !== (r < SMALL_ZONE_M)) {
          zone.smallConfirmed = false;
          render();
          list.children[i]?.querySelector('.zone-radius input')?.focus();
        } else {
          map.redrawOverlay();
        }
      }
    });
    field.append(label, input);
    return field;
  }

  /**
   * The keyboard way: a circle from a typed centre and radius, or an area from corners
   * typed or pasted (decimal degrees, SWEREF 99 TM or GeoJSON, see coords.js).
   */
  function coordinateForm() {
    const box = el('details', 'zone-coords');
    box.append(el('summary', null, t('zone_by_coordinates')));
    box.append(circleByCoordinates(), areaByCoordinates());
    return box;
  }

  function circleByCoordinates() {
    const box = el('div', 'zone-coords-circle');
    const row = el('div', 'field-row');
    const make = (key, cls) => {
      const field = el('div', `field ${cls}`);
      const id = `zc-${key}-${Math.random().toString(36).slice(2, 7)}`;
      const label = el('label', null, t(key));
      label.htmlFor = id;
      const input = el('input');
      input.id = id;
      input.type = 'text';
      input.inputMode = 'decimal';
      input.autocomplete = 'off';
      field.append(label, input);
      row.append(field);
      return input;
    };
    const lat = make('f_lat', 'zc-lat');
    const lon = make('f_lon', 'zc-lon');
    const radius = make('zone_radius_label', 'zc-radius');
    if (refLonLat) {
      lat.value = String(refLonLat[1]);
      lon.value = String(refLonLat[0]);
    }
    radius.value = '300';
    const error = el('p', 'field-error');
    error.hidden = true;
    const add = button(t('zone_add_circle'), 'btn btn-small', () => {
      // Both fields together may hold one pasted position ("59.33, 18.06" or SWEREF 99 TM).
      const centre = lon.value.trim() ? parsePosition(`${lat.value.trim()} ${lon.value.trim()}`) : parsePosition(lat.value);
      const r = parseDecimal(radius.value);
      if (centre.error || !(r >= 1 && r <= 50000)) {
        error.textContent = t(centre.error === 'coords_outside_sweden' ? 'coords_outside_sweden' : 'zone_coords_invalid');
        error.hidden = false;
        return;
      }
      error.hidden = true;
      addZone({ type: 'circle', center: [round6(centre.lon), round6(centre.lat)], r: Math.round(r) });
      map.fit(zonePoints(state.zones));
    });
    box.append(row, error, add);
    return box;
  }

  function areaByCoordinates() {
    const box = el('div', 'field zone-coords-area');
    const id = `zc-corners-${Math.random().toString(36).slice(2, 7)}`;
    const label = el('label', null, t('zone_corners_label'));
    label.htmlFor = id;
    const help = el('p', 'help', t('zone_corners_help'));
    help.id = `${id}-help`;
    const corners = el('textarea');
    corners.id = id;
    corners.rows = 5;
    corners.spellcheck = false;
    corners.setAttribute('aria-describedby', help.id);
    const error = el('p', 'field-error');
    error.hidden = true;
    const add = button(t('zone_add_area'), 'btn btn-small', () => {
      const parsed = parseCorners(corners.value);
      if (parsed.error) {
        error.textContent = parsed.line ? t('zone_corners_line', { line: parsed.line, problem: t(parsed.error) }) : t(parsed.error);
        error.hidden = false;
        corners.setAttribute('aria-invalid', 'true');
        corners.focus();
        return;
      }
      error.hidden = true;
      corners.removeAttribute('aria-invalid');
      corners.value = '';
      addZone({ type: 'polygon', rings: [parsed.ring.map(([lo, la]) => [round6(lo), round6(la)])] });
      map.fit(zonePoints(state.zones));
    });
    box.append(label, help, corners, error, add);
    return box;
  }

  return {
    getZones: () => state.zones.map((z) => zoneToApi({ ...z, name: z.name.trim() })),
    /** An i18n key when something is unfinished, else null. */
    validate: () => {
      if (state.mode && (state.points.length || state.centre)) return 'zone_unfinished';
      if (state.zones.some((z) => !z.name.trim())) return 'zone_name_missing';
      if (state.zones.some((z) => isPlaceholderName(z.name))) return 'zone_name_placeholder_only';
      if (state.zones.some((z) => equivalentRadiusM(z) < SMALL_ZONE_M && !z.smallConfirmed)) return 'zone_small_unconfirmed';
      return null;
    },
  };
}


// ---------------------------------------------------------------------------
// Point picker (an address)
// ---------------------------------------------------------------------------

/**
 * A map where a click sets one point; `onPick(lat, lon)` reports it.
 * Returns {set(lat, lon)} to move the marker when the fields are typed in.
 */
export function createPointPicker(container, { tileUrl, onPick }) {
  let point = null;
  container.replaceChildren();
  const mapBox = el('div', 'map');
  container.append(mapBox);
  const map = createInteractiveMap(mapBox, {
    initialPoints: [],
    minSpanM: 4000,
    tileUrl,
    title: t('address_map_title'),
    drawOverlay: (layer, view) => { if (point) drawAddress(layer, view, point); },
    onClick: (lonlat) => {
      point = roundLonLat(lonlat);
      map.redrawOverlay();
      onPick(point[1], point[0]);
    },
  });
  const tools = el('div', 'zone-toolbar');
  tools.append(zoomButtons(map));
  container.prepend(tools);
  return {
    set(lat, lon) {
      if (!(Number.isFinite(lat) && Number.isFinite(lon))) return;
      point = [lon, lat];
      map.fit([{ c: point }]);
    },
  };
}
