// Typed and pasted coordinates, as the coordinators' zone editor and address fields read
// them: pure functions run in Node.js, no browser. Reference values for SWEREF 99 TM are
// from PROJ (EPSG:3006 to EPSG:4326).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  parsePosition, parseCorners, swerefToWgs84, equivalentRadiusM, isPlaceholderName, inSweden,
} from '../../src/web/console/coords.js';

const near = (actual, expected, tolerance, what) =>
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} is not within ${tolerance} of ${expected}`);

describe('typed coordinates', () => {
  it('converts SWEREF 99 TM to WGS 84 within a centimetre of PROJ', () => {
    const reference = [
      [6580822, 674032, 59.330231226921924, 18.05918973635474],
      [7453389, 762202, 67.08306573390207, 21.04187545608923],
      [6166777, 374034, 55.63054287117304, 12.999169006556725],
      [6900000, 500000, 62.23177006525853, 15.0],
    ];
    for (const [n, e, lat, lon] of reference) {
      const p = swerefToWgs84(n, e);
      // 1e-7 degrees is about a centimetre.
      near(p.lat, lat, 1e-7, `latitude of ${n} ${e}`);
      near(p.lon, lon, 1e-7, `longitude of ${n} ${e}`);
    }
  });

  it('reads latitude and longitude with a decimal point or a decimal comma', () => {
    assert.deepEqual(parsePosition('59.3366, 18.0612'), { lat: 59.3366, lon: 18.0612 });
    assert.deepEqual(parsePosition('59,3366 18,0612'), { lat: 59.3366, lon: 18.0612 });
    assert.deepEqual(parsePosition('59,3366, 18,0612'), { lat: 59.3366, lon: 18.0612 });
    assert.deepEqual(parsePosition('59.3366,18.0612'), { lat: 59.3366, lon: 18.0612 });
    assert.deepEqual(parsePosition('[59.3366, 18.0612]'), { lat: 59.3366, lon: 18.0612 });
  });

  it('takes GeoJSON order too, since Swedish latitudes and longitudes never overlap', () => {
    assert.deepEqual(parsePosition('18.0612 59.3366'), { lat: 59.3366, lon: 18.0612 });
  });

  it('reads SWEREF 99 TM north and east in either order', () => {
    assert.deepEqual(parsePosition('6580822 674032'), { lat: 59.330231, lon: 18.05919 });
    assert.deepEqual(parsePosition('674032, 6580822'), { lat: 59.330231, lon: 18.05919 });
  });

  it('refuses positions outside Sweden and text that is not two numbers', () => {
    assert.deepEqual(parsePosition('40.7, -74.0'), { error: 'coords_outside_sweden' });
    assert.deepEqual(parsePosition('59.33, 8.06'), { error: 'coords_outside_sweden' });
    assert.deepEqual(parsePosition('Drottninggatan 71'), { error: 'coords_unreadable' });
    assert.deepEqual(parsePosition('59.3 18.0 12'), { error: 'coords_unreadable' });
    assert.equal(inSweden(59.33, 18.06), true);
  });
});

describe('pasted areas', () => {
  it('closes a ring typed one corner a line', () => {
    const r = parseCorners('59.3400, 18.0700\n59.3400, 18.0760\n59.3425, 18.0760\n59.3425, 18.0700\n');
    assert.deepEqual(r.ring, [[18.07, 59.34], [18.076, 59.34], [18.076, 59.3425], [18.07, 59.3425], [18.07, 59.34]]);
  });

  it('takes corners separated by semicolons and an already closed ring', () => {
    const r = parseCorners('59.34 18.07; 59.34 18.076; 59.3425 18.076; 59.34 18.07');
    assert.equal(r.ring.length, 4);
    assert.deepEqual(r.ring[0], r.ring[3]);
  });

  it('takes a GeoJSON Polygon, Feature or FeatureCollection', () => {
    const polygon = { type: 'Polygon', coordinates: [[[18.07, 59.34], [18.076, 59.34], [18.076, 59.3425], [18.07, 59.34]]] };
    for (const v of [polygon, { type: 'Feature', geometry: polygon, properties: {} }, { type: 'FeatureCollection', features: [{ type: 'Feature', geometry: polygon }] }]) {
      assert.deepEqual(parseCorners(JSON.stringify(v)).ring, polygon.coordinates[0]);
    }
  });

  it('names the line that is wrong and refuses too few corners', () => {
    assert.deepEqual(parseCorners('59.34 18.07\n59.34 8.076\n59.3425 18.076'), { error: 'coords_outside_sweden', line: 2 });
    assert.deepEqual(parseCorners('59.34 18.07\n59.34 18.07\n59.3425 18.076'), { error: 'corners_too_few' });
    assert.deepEqual(parseCorners('{"type":"Point"}'), { error: 'corners_geojson' });
    assert.deepEqual(parseCorners('  '), { error: 'corners_empty' });
  });
});

describe('zone sizes and names', () => {
  it('measures a circle by its radius and an area by the circle of the same area', () => {
    assert.equal(equivalentRadiusM({ type: 'circle', r: 30 }), 30);
    // About 40 m by 40 m: the same area as a circle of about 22.6 m.
    const ring = [[18.0700, 59.3400], [18.0707, 59.3400], [18.0707, 59.34036], [18.0700, 59.34036], [18.0700, 59.3400]];
    near(equivalentRadiusM({ type: 'polygon', rings: [ring] }), 22.6, 1, 'equivalent radius');
  });

  it('knows a placeholder name from one that says what the zone protects', () => {
    for (const name of ['Zone 1', 'zon 2', 'Område 3', ' area ', 'Polygon']) assert.equal(isPlaceholderName(name), true, name);
    for (const name of ['Home', 'Bostad', 'Workplace', 'Zone around school']) assert.equal(isPlaceholderName(name), false, name);
  });
});
