//! Distances and zone containment on the WGS84 sphere, and GeoJSON for zones.
//!
//! Exclusion zones are city-sized at most, so a local equirectangular projection around
//! the point in question is accurate to well under a metre; no geo library needed.

use super::{Area, Zone};

const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Great-circle distance in metres between two (lat, lon) points.
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1) = (a.0.to_radians(), a.1.to_radians());
    let (la2, lo2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().asin()
}

/// Metres east and north of `origin`.
fn project(origin: (f64, f64), p: (f64, f64)) -> (f64, f64) {
    let k = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;
    let x = (p.1 - origin.1) * k * origin.0.to_radians().cos();
    let y = (p.0 - origin.0) * k;
    (x, y)
}

/// Where a point lies relative to a zone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Relation {
    Inside,
    /// Outside, this many metres from the zone's edge.
    Outside(f64),
}

pub fn relate(area: &Area, p: (f64, f64)) -> Relation {
    match area {
        Area::Circle { centre, radius_m } => {
            let d = distance_m(p, *centre);
            if d <= *radius_m {
                Relation::Inside
            } else {
                Relation::Outside(d - radius_m)
            }
        }
        Area::Polygon(ring) => {
            // Work in metres around the point itself: the point is the origin.
            let pts: Vec<(f64, f64)> = ring.iter().map(|q| project(p, *q)).collect();
            if contains_origin(&pts) {
                Relation::Inside
            } else {
                Relation::Outside(distance_origin_to_ring(&pts))
            }
        }
    }
}

fn contains_origin(ring: &[(f64, f64)]) -> bool {
    let mut inside = false;
    let n = ring.len();
    for i in 0..n {
        let (xi, yi) = ring[i];
        let (xj, yj) = ring[(i + n - 1) % n];
        if (yi > 0.0) != (yj > 0.0) && 0.0 < (xj - xi) * (0.0 - yi) / (yj - yi) + xi {
            inside = !inside;
        }
    }
    inside
}

fn distance_origin_to_ring(ring: &[(f64, f64)]) -> f64 {
    let n = ring.len();
    (0..n)
        .map(|i| distance_origin_to_segment(ring[i], ring[(i + 1) % n]))
        .fold(f64::INFINITY, f64::min)
}

fn distance_origin_to_segment(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (-(a.0 * dx + a.1 * dy) / len2).clamp(0.0, 1.0)
    };
    let (x, y) = (a.0 + t * dx, a.1 + t * dy);
    (x * x + y * y).sqrt()
}

/// Initial great-circle bearing from `from` to `to`, in degrees clockwise from true north,
/// 0 ≤ b < 360: the direction a patrol at `from` would set out in.
pub fn bearing_deg(from: (f64, f64), to: (f64, f64)) -> f64 {
    let (la1, la2) = (from.0.to_radians(), to.0.to_radians());
    let dlon = (to.1 - from.1).to_radians();
    let y = dlon.sin() * la2.cos();
    let x = la1.cos() * la2.sin() - la1.sin() * la2.cos() * dlon.cos();
    y.atan2(x).to_degrees().rem_euclid(360.0)
}

/// The eight compass points, clockwise from north, as codes the console translates
/// (Swedish N, NO, O, SO, S, SV, V, NV).
pub const COMPASS_POINTS: [&str; 8] = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"];

/// The 8-point compass code of a bearing: each point covers 45°, centred on it.
pub fn compass_point(bearing_deg: f64) -> &'static str {
    let i = (bearing_deg.rem_euclid(360.0) / 45.0).round() as usize % 8;
    COMPASS_POINTS[i]
}

/// SWEREF 99 TM (EPSG:3006) northing and easting in metres of a WGS84 position: what
/// Swedish rescue services and the police's own maps read. Lantmäteriet's Gauss–Krüger
/// formulas ("Gauss-Krügers projektion", series to n⁴) on GRS 80, central meridian 15° E,
/// scale 0.9996, false easting 500 000 m; exact to well under a millimetre across Sweden.
/// WGS84 and SWEREF 99 differ by less than a metre today, below any device's accuracy, so
/// no datum shift is applied.
pub fn sweref99tm((lat, lon): (f64, f64)) -> (f64, f64) {
    const A: f64 = 6_378_137.0; // GRS 80 semi-major axis
    const F: f64 = 1.0 / 298.257_222_101; // GRS 80 flattening
    const LON0: f64 = 15.0;
    const K0: f64 = 0.9996;
    const FALSE_EASTING: f64 = 500_000.0;
    let e2 = F * (2.0 - F);
    let n = F / (2.0 - F);
    let a_roof = A / (1.0 + n) * (1.0 + n * n / 4.0 + n.powi(4) / 64.0);
    let ca = e2;
    let cb = (5.0 * e2 * e2 - e2.powi(3)) / 6.0;
    let cc = (104.0 * e2.powi(3) - 45.0 * e2.powi(4)) / 120.0;
    let cd = 1237.0 * e2.powi(4) / 1260.0;
    let b1 = n / 2.0 - 2.0 * n * n / 3.0 + 5.0 * n.powi(3) / 16.0 + 41.0 * n.powi(4) / 180.0;
    let b2 = 13.0 * n * n / 48.0 - 3.0 * n.powi(3) / 5.0 + 557.0 * n.powi(4) / 1440.0;
    let b3 = 61.0 * n.powi(3) / 240.0 - 103.0 * n.powi(4) / 140.0;
    let b4 = 49561.0 * n.powi(4) / 161_280.0;

    let phi = lat.to_radians();
    let dlambda = (lon - LON0).to_radians();
    let s = phi.sin();
    let phi_star = phi - s * phi.cos() * (ca + cb * s.powi(2) + cc * s.powi(4) + cd * s.powi(6));
    let xi = (phi_star.tan() / dlambda.cos()).atan();
    let eta = (phi_star.cos() * dlambda.sin()).atanh();
    let terms = [(b1, 2.0), (b2, 4.0), (b3, 6.0), (b4, 8.0)];
    let north = K0
        * a_roof
        * (xi
            + terms
                .iter()
                .map(|(b, k)| b * (k * xi).sin() * (k * eta).cosh())
                .sum::<f64>());
    let east = K0
        * a_roof
        * (eta
            + terms
                .iter()
                .map(|(b, k)| b * (k * xi).cos() * (k * eta).sinh())
                .sum::<f64>())
        + FALSE_EASTING;
    (north, east)
}

/// "350 m" or "1.2 km": distances as an officer reads them on the radio.
pub fn describe_distance(m: f64) -> String {
    if m < 1000.0 {
        format!("{} m", (m / 10.0).round() as i64 * 10)
    } else {
        format!("{:.1} km", m / 1000.0)
    }
}

/// Where zones may lie: a latitude and longitude box, Sweden's by default. A zone outside
/// it is a typing error (swapped coordinates, a lost minus sign), never a real place.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    pub min_lat: f64,
    pub max_lat: f64,
    pub min_lon: f64,
    pub max_lon: f64,
}

impl Bounds {
    /// Sweden, Smygehuk to Treriksröset and Koster to Haparanda, with a little sea around.
    pub const SWEDEN: Bounds = Bounds {
        min_lat: 55.0,
        max_lat: 69.5,
        min_lon: 10.5,
        max_lon: 24.5,
    };

    pub fn contains(&self, (lat, lon): (f64, f64)) -> bool {
        (self.min_lat..=self.max_lat).contains(&lat) && (self.min_lon..=self.max_lon).contains(&lon)
    }
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds::SWEDEN
    }
}

/// The largest circle zone: a city and its surroundings.
pub const MAX_RADIUS_M: f64 = 50_000.0;

/// Vertices a polygon may have: plenty for a drawn zone, few enough that checking it for
/// crossings stays cheap.
pub const MAX_VERTICES: usize = 500;

/// A polygon smaller than this, in square metres, is a line or a point in disguise.
const MIN_AREA_M2: f64 = 1.0;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ZoneError {
    #[error("geometry must be a GeoJSON Polygon or Point")]
    GeometryType,
    #[error("coordinates are not valid for the geometry type")]
    Coordinates,
    #[error("a polygon needs at least 3 distinct points")]
    TooFewPoints,
    #[error("a polygon may have at most 500 points")]
    TooManyPoints,
    #[error("the polygon's edges cross each other")]
    SelfIntersecting,
    #[error("the polygon encloses no area")]
    NoArea,
    #[error("a Point zone needs radius_m between 1 and 50000")]
    Radius,
    #[error("the zone lies outside the area zones may cover (latitude {min_lat}..{max_lat}, longitude {min_lon}..{max_lon})", min_lat = .0.min_lat, max_lat = .0.max_lat, min_lon = .0.min_lon, max_lon = .0.max_lon)]
    OutsideBounds(Bounds),
}

/// Builds a zone from the API's GeoJSON (`[lon, lat]` order, as GeoJSON has it): a circle
/// of sane radius, or a simple polygon (no crossing edges, some area), inside `bounds`.
pub fn zone_from_geojson(
    name: &str,
    geometry: &serde_json::Value,
    radius_m: Option<f64>,
    bounds: &Bounds,
) -> Result<Zone, ZoneError> {
    let kind = geometry.get("type").and_then(|t| t.as_str());
    let coords = geometry.get("coordinates").ok_or(ZoneError::Coordinates)?;
    let area = match kind {
        Some("Point") => {
            let centre = lonlat(coords)?;
            if !bounds.contains(centre) {
                return Err(ZoneError::OutsideBounds(*bounds));
            }
            match radius_m {
                Some(r) if r.is_finite() && (1.0..=MAX_RADIUS_M).contains(&r) => Area::Circle {
                    centre,
                    radius_m: r,
                },
                _ => return Err(ZoneError::Radius),
            }
        }
        Some("Polygon") => {
            let outer = coords
                .as_array()
                .and_then(|rings| rings.first())
                .and_then(|r| r.as_array())
                .ok_or(ZoneError::Coordinates)?;
            if outer.len() > MAX_VERTICES + 1 {
                return Err(ZoneError::TooManyPoints);
            }
            let mut ring = outer.iter().map(lonlat).collect::<Result<Vec<_>, _>>()?;
            // A point repeated right after itself draws no edge.
            ring.dedup();
            if ring.len() > 1 && ring.first() == ring.last() {
                ring.pop();
            }
            let mut distinct = ring.clone();
            distinct.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            distinct.dedup();
            if distinct.len() < 3 {
                return Err(ZoneError::TooFewPoints);
            }
            if !ring.iter().all(|p| bounds.contains(*p)) {
                return Err(ZoneError::OutsideBounds(*bounds));
            }
            let flat: Vec<(f64, f64)> = ring.iter().map(|q| project(ring[0], *q)).collect();
            if crosses_itself(&flat) {
                return Err(ZoneError::SelfIntersecting);
            }
            if area_m2(&flat) < MIN_AREA_M2 {
                return Err(ZoneError::NoArea);
            }
            Area::Polygon(ring)
        }
        _ => return Err(ZoneError::GeometryType),
    };
    Ok(Zone {
        name: name.to_owned(),
        area,
    })
}

/// Shoelace area of a closed ring in a plane.
fn area_m2(ring: &[(f64, f64)]) -> f64 {
    let n = ring.len();
    let twice: f64 = (0..n)
        .map(|i| {
            let (a, b) = (ring[i], ring[(i + 1) % n]);
            a.0 * b.1 - b.0 * a.1
        })
        .sum();
    twice.abs() / 2.0
}

/// Whether two edges of a closed ring touch anywhere but at the vertex neighbours share.
fn crosses_itself(ring: &[(f64, f64)]) -> bool {
    let n = ring.len();
    let edge = |i: usize| (ring[i], ring[(i + 1) % n]);
    for i in 0..n {
        for j in i + 1..n {
            let (a, b) = (edge(i), edge(j));
            let neighbours = j == i + 1 || (i == 0 && j == n - 1);
            if neighbours {
                // Sharing one vertex is right; folding back along each other is not.
                let (shared, p, q) = if j == i + 1 {
                    (a.1, a.0, b.1)
                } else {
                    (a.0, a.1, b.0)
                };
                if orientation(shared, p, q) == 0.0 && dot(shared, p, q) > 0.0 {
                    return true;
                }
            } else if segments_touch(a, b) {
                return true;
            }
        }
    }
    false
}

/// Twice the signed area of triangle (o, a, b): which side of o→a the point b lies.
fn orientation(o: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
}

/// Whether o→a and o→b point the same way (for collinear points).
fn dot(o: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    (a.0 - o.0) * (b.0 - o.0) + (a.1 - o.1) * (b.1 - o.1)
}

fn on_segment(p: (f64, f64), q: (f64, f64), r: (f64, f64)) -> bool {
    r.0 >= p.0.min(q.0) && r.0 <= p.0.max(q.0) && r.1 >= p.1.min(q.1) && r.1 <= p.1.max(q.1)
}

fn segments_touch((p1, p2): ((f64, f64), (f64, f64)), (q1, q2): ((f64, f64), (f64, f64))) -> bool {
    let sign = |v: f64| {
        if v > 0.0 {
            1
        } else if v < 0.0 {
            -1
        } else {
            0
        }
    };
    let d1 = sign(orientation(q1, q2, p1));
    let d2 = sign(orientation(q1, q2, p2));
    let d3 = sign(orientation(p1, p2, q1));
    let d4 = sign(orientation(p1, p2, q2));
    if d1 * d2 < 0 && d3 * d4 < 0 {
        return true;
    }
    (d1 == 0 && on_segment(q1, q2, p1))
        || (d2 == 0 && on_segment(q1, q2, p2))
        || (d3 == 0 && on_segment(p1, p2, q1))
        || (d4 == 0 && on_segment(p1, p2, q2))
}

fn lonlat(v: &serde_json::Value) -> Result<(f64, f64), ZoneError> {
    let a = v.as_array().ok_or(ZoneError::Coordinates)?;
    if a.len() < 2 {
        return Err(ZoneError::Coordinates);
    }
    let lon = a[0].as_f64().ok_or(ZoneError::Coordinates)?;
    let lat = a[1].as_f64().ok_or(ZoneError::Coordinates)?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(ZoneError::Coordinates);
    }
    Ok((lat, lon))
}

/// The zone back as the API's GeoJSON geometry and radius.
pub fn zone_to_geojson(zone: &Zone) -> (serde_json::Value, Option<f64>) {
    match &zone.area {
        Area::Circle { centre, radius_m } => (
            serde_json::json!({"type": "Point", "coordinates": [centre.1, centre.0]}),
            Some(*radius_m),
        ),
        Area::Polygon(ring) => {
            let mut coords: Vec<[f64; 2]> = ring.iter().map(|p| [p.1, p.0]).collect();
            if let Some(first) = coords.first().copied() {
                coords.push(first);
            }
            (
                serde_json::json!({"type": "Polygon", "coordinates": [coords]}),
                None,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweref99tm_matches_the_reference_projection_to_a_millimetre() {
        // Expected values: PROJ 9 (EPSG:4326 → EPSG:3006), exact Transverse Mercator.
        for ((lat, lon), (n, e)) in [
            ((59.3293, 18.0686), (6_580_743.008, 674_571.866)), // Stockholm
            ((55.6050, 13.0038), (6_163_926.553, 374_243.759)), // Malmö
            ((67.8557, 20.2251), (7_536_058.144, 719_575.677)), // Kiruna
            ((66.0, 24.0), (7_349_217.668, 907_351.981)),       // far east of the meridian
            ((58.0, 11.5), (6_434_070.002, 293_174.170)),       // far west of it
        ] {
            let (gn, ge) = sweref99tm((lat, lon));
            assert!((gn - n).abs() < 0.001, "{lat},{lon}: N {gn} vs {n}");
            assert!((ge - e).abs() < 0.001, "{lat},{lon}: E {ge} vs {e}");
        }
    }

    #[test]
    fn on_the_central_meridian_the_easting_is_the_false_easting() {
        let (_, e) = sweref99tm((62.0, 15.0));
        assert!((e - 500_000.0).abs() < 1e-6);
    }

    #[test]
    fn bearings_point_the_way_a_compass_does() {
        let home = (59.3366, 18.0612);
        let west = (59.3366, 18.0350);
        let north = (59.35, 18.0612);
        assert!((bearing_deg(home, west) - 270.0).abs() < 0.1);
        assert!(bearing_deg(home, north) < 0.1);
        assert!((bearing_deg(home, (59.32, 18.0612)) - 180.0).abs() < 0.1);
        assert!((bearing_deg(home, (59.3366, 18.09)) - 90.0).abs() < 0.1);
    }

    #[test]
    fn each_compass_point_covers_the_45_degrees_around_it() {
        assert_eq!(compass_point(0.0), "N");
        assert_eq!(compass_point(22.4), "N");
        assert_eq!(compass_point(22.6), "NE");
        assert_eq!(compass_point(90.0), "E");
        assert_eq!(compass_point(200.0), "S");
        assert_eq!(compass_point(247.6), "W");
        assert_eq!(compass_point(315.0), "NW");
        assert_eq!(compass_point(350.0), "N");
        assert_eq!(compass_point(-90.0), "W");
    }

    // Sergels torg and Stockholm central station, about 425 m apart.
    const SERGELS_TORG: (f64, f64) = (59.33258, 18.06491);
    const CENTRAL: (f64, f64) = (59.33027, 18.05893);

    #[test]
    fn distance_between_two_stockholm_landmarks_is_about_425_metres() {
        let d = distance_m(SERGELS_TORG, CENTRAL);
        assert!((415.0..435.0).contains(&d), "{d}");
    }

    #[test]
    fn a_point_inside_a_circle_zone_is_inside() {
        let zone = Area::Circle {
            centre: SERGELS_TORG,
            radius_m: 500.0,
        };
        assert_eq!(relate(&zone, CENTRAL), Relation::Inside);
    }

    #[test]
    fn a_point_outside_a_circle_zone_is_measured_from_its_edge() {
        let zone = Area::Circle {
            centre: SERGELS_TORG,
            radius_m: 100.0,
        };
        let Relation::Outside(d) = relate(&zone, CENTRAL) else {
            panic!("inside")
        };
        assert!((315.0..335.0).contains(&d), "{d}");
    }

    fn square_around(c: (f64, f64), half_deg: f64) -> Area {
        Area::Polygon(vec![
            (c.0 - half_deg, c.1 - half_deg),
            (c.0 - half_deg, c.1 + half_deg),
            (c.0 + half_deg, c.1 + half_deg),
            (c.0 + half_deg, c.1 - half_deg),
        ])
    }

    #[test]
    fn a_point_inside_a_polygon_zone_is_inside() {
        assert_eq!(
            relate(&square_around(SERGELS_TORG, 0.001), SERGELS_TORG),
            Relation::Inside
        );
    }

    #[test]
    fn a_point_north_of_a_polygon_is_measured_to_its_nearest_edge() {
        let zone = square_around((59.0, 18.0), 0.001);
        // 0.001 degrees of latitude north of the northern edge: about 111 m.
        let Relation::Outside(d) = relate(&zone, (59.002, 18.0)) else {
            panic!("inside")
        };
        assert!((110.0..112.5).contains(&d), "{d}");
    }

    #[test]
    fn geojson_polygons_and_circles_round_trip() {
        let poly = serde_json::json!({"type":"Polygon","coordinates":[[[18.0,59.0],[18.01,59.0],[18.01,59.01],[18.0,59.0]]]});
        let z = zone_from_geojson("Home", &poly, None, &Bounds::SWEDEN).unwrap();
        assert_eq!(zone_to_geojson(&z).0, poly);
        let point = serde_json::json!({"type":"Point","coordinates":[18.0,59.0]});
        let c = zone_from_geojson("Work", &point, Some(250.0), &Bounds::SWEDEN).unwrap();
        assert_eq!(zone_to_geojson(&c), (point, Some(250.0)));
    }

    #[test]
    fn bad_zone_geometry_is_refused_with_a_reason() {
        let line = serde_json::json!({"type":"LineString","coordinates":[[18.0,59.0],[18.1,59.0]]});
        assert_eq!(
            zone_from_geojson("x", &line, None, &Bounds::SWEDEN),
            Err(ZoneError::GeometryType)
        );
        let point = serde_json::json!({"type":"Point","coordinates":[18.0,59.0]});
        assert_eq!(
            zone_from_geojson("x", &point, None, &Bounds::SWEDEN),
            Err(ZoneError::Radius)
        );
        let flat = serde_json::json!({"type":"Polygon","coordinates":[[[18.0,59.0],[18.0,59.0],[18.1,59.0]]]});
        assert_eq!(
            zone_from_geojson("x", &flat, None, &Bounds::SWEDEN),
            Err(ZoneError::TooFewPoints)
        );
        let off = serde_json::json!({"type":"Point","coordinates":[18.0,95.0]});
        assert_eq!(
            zone_from_geojson("x", &off, Some(10.0), &Bounds::SWEDEN),
            Err(ZoneError::Coordinates)
        );
    }

    fn polygon(points: &[(f64, f64)]) -> serde_json::Value {
        let ring: Vec<[f64; 2]> = points.iter().map(|p| [p.1, p.0]).collect();
        serde_json::json!({"type": "Polygon", "coordinates": [ring]})
    }

    fn check(points: &[(f64, f64)]) -> Result<Zone, ZoneError> {
        zone_from_geojson("z", &polygon(points), None, &Bounds::SWEDEN)
    }

    #[test]
    fn a_bow_tie_polygon_is_refused_as_crossing_itself() {
        // (lat, lon): the second and fourth corners swapped make two triangles meeting in
        // a point.
        let bow_tie = [(59.0, 18.0), (59.01, 18.01), (59.01, 18.0), (59.0, 18.01)];
        assert_eq!(check(&bow_tie), Err(ZoneError::SelfIntersecting));
        let square = [(59.0, 18.0), (59.01, 18.0), (59.01, 18.01), (59.0, 18.01)];
        assert!(check(&square).is_ok());
    }

    #[test]
    fn a_polygon_touching_itself_or_folding_back_is_refused() {
        // A figure eight through a shared vertex.
        let eight = [
            (59.0, 18.0),
            (59.01, 18.0),
            (59.005, 18.005),
            (59.01, 18.01),
            (59.0, 18.01),
            (59.005, 18.005),
        ];
        assert_eq!(check(&eight), Err(ZoneError::SelfIntersecting));
        // An edge that runs back over the one before it.
        let spike = [(59.0, 18.0), (59.01, 18.0), (59.005, 18.0), (59.005, 18.01)];
        assert_eq!(check(&spike), Err(ZoneError::SelfIntersecting));
    }

    #[test]
    fn a_polygon_of_points_on_one_line_encloses_no_area() {
        let line = [(59.0, 18.0), (59.01, 18.0), (59.02, 18.0)];
        assert!(matches!(
            check(&line),
            Err(ZoneError::NoArea | ZoneError::SelfIntersecting)
        ));
        let sliver = [(59.0, 18.0), (59.01, 18.0), (59.02, 18.000_000_001)];
        assert!(check(&sliver).is_err());
    }

    #[test]
    fn a_zone_outside_sweden_or_around_the_world_is_refused() {
        let world = [
            (-89.0, -179.0),
            (89.0, -179.0),
            (89.0, 179.0),
            (-89.0, 179.0),
        ];
        assert!(matches!(check(&world), Err(ZoneError::OutsideBounds(_))));
        // Stockholm with latitude and longitude swapped: the Arabian Sea.
        let swapped = serde_json::json!({"type": "Point", "coordinates": [59.33, 18.06]});
        assert!(matches!(
            zone_from_geojson("z", &swapped, Some(200.0), &Bounds::SWEDEN),
            Err(ZoneError::OutsideBounds(_))
        ));
        // A deployment elsewhere configures its own area.
        let helsinki = Bounds {
            min_lat: 59.5,
            max_lat: 60.5,
            min_lon: 24.0,
            max_lon: 25.5,
        };
        let point = serde_json::json!({"type": "Point", "coordinates": [24.94, 60.17]});
        assert!(zone_from_geojson("z", &point, Some(200.0), &helsinki).is_ok());
        assert!(zone_from_geojson("z", &point, Some(200.0), &Bounds::SWEDEN).is_err());
    }

    #[test]
    fn a_circle_needs_a_radius_of_a_metre_to_fifty_kilometres() {
        let point = serde_json::json!({"type": "Point", "coordinates": [18.0, 59.0]});
        for r in [0.5, 50_001.0, f64::INFINITY] {
            assert_eq!(
                zone_from_geojson("z", &point, Some(r), &Bounds::SWEDEN),
                Err(ZoneError::Radius),
                "{r}"
            );
        }
        assert!(zone_from_geojson("z", &point, Some(50_000.0), &Bounds::SWEDEN).is_ok());
    }

    #[test]
    fn a_polygon_with_too_many_points_is_refused_before_it_is_checked() {
        let many: Vec<(f64, f64)> = (0..=MAX_VERTICES + 1)
            .map(|i| {
                let a = i as f64 / (MAX_VERTICES + 2) as f64 * std::f64::consts::TAU;
                (59.0 + 0.01 * a.sin(), 18.0 + 0.01 * a.cos())
            })
            .collect();
        assert_eq!(check(&many), Err(ZoneError::TooManyPoints));
        assert!(check(&many[..MAX_VERTICES]).is_ok());
    }

    #[test]
    fn distances_read_as_metres_or_kilometres() {
        assert_eq!(describe_distance(347.0), "350 m");
        assert_eq!(describe_distance(1249.0), "1.2 km");
    }
}
