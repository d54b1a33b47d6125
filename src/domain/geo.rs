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

/// "350 m" or "1.2 km": distances as an officer reads them on the radio.
pub fn describe_distance(m: f64) -> String {
    if m < 1000.0 {
        format!("{} m", (m / 10.0).round() as i64 * 10)
    } else {
        format!("{:.1} km", m / 1000.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ZoneError {
    #[error("geometry must be a GeoJSON Polygon or Point")]
    GeometryType,
    #[error("coordinates are not valid for the geometry type")]
    Coordinates,
    #[error("a polygon needs at least 3 distinct points")]
    TooFewPoints,
    #[error("a Point zone needs radius_m between 1 and 100000")]
    Radius,
}

/// Builds a zone from the API's GeoJSON (`[lon, lat]` order, as GeoJSON has it).
pub fn zone_from_geojson(
    name: &str,
    geometry: &serde_json::Value,
    radius_m: Option<f64>,
) -> Result<Zone, ZoneError> {
    let kind = geometry.get("type").and_then(|t| t.as_str());
    let coords = geometry.get("coordinates").ok_or(ZoneError::Coordinates)?;
    let area = match kind {
        Some("Point") => {
            let centre = lonlat(coords)?;
            match radius_m {
                Some(r) if r.is_finite() && (1.0..=100_000.0).contains(&r) => Area::Circle {
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
            let mut ring = outer.iter().map(lonlat).collect::<Result<Vec<_>, _>>()?;
            if ring.len() > 1 && ring.first() == ring.last() {
                ring.pop();
            }
            let mut distinct = ring.clone();
            distinct.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            distinct.dedup();
            if distinct.len() < 3 {
                return Err(ZoneError::TooFewPoints);
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
        let z = zone_from_geojson("Home", &poly, None).unwrap();
        assert_eq!(zone_to_geojson(&z).0, poly);
        let point = serde_json::json!({"type":"Point","coordinates":[18.0,59.0]});
        let c = zone_from_geojson("Work", &point, Some(250.0)).unwrap();
        assert_eq!(zone_to_geojson(&c), (point, Some(250.0)));
    }

    #[test]
    fn bad_zone_geometry_is_refused_with_a_reason() {
        let line = serde_json::json!({"type":"LineString","coordinates":[[18.0,59.0],[18.1,59.0]]});
        assert_eq!(
            zone_from_geojson("x", &line, None),
            Err(ZoneError::GeometryType)
        );
        let point = serde_json::json!({"type":"Point","coordinates":[18.0,59.0]});
        assert_eq!(zone_from_geojson("x", &point, None), Err(ZoneError::Radius));
        let flat = serde_json::json!({"type":"Polygon","coordinates":[[[18.0,59.0],[18.0,59.0],[18.1,59.0]]]});
        assert_eq!(
            zone_from_geojson("x", &flat, None),
            Err(ZoneError::TooFewPoints)
        );
        let off = serde_json::json!({"type":"Point","coordinates":[18.0,95.0]});
        assert_eq!(
            zone_from_geojson("x", &off, Some(10.0)),
            Err(ZoneError::Coordinates)
        );
    }

    #[test]
    fn distances_read_as_metres_or_kilometres() {
        assert_eq!(describe_distance(347.0), "350 m");
        assert_eq!(describe_distance(1249.0), "1.2 km");
    }
}
