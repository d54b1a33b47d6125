//! Street addresses from an external reverse geocoder (Nominatim or Photon), for the alert
//! detail only: the alarm path never waits for it, and without it the console still names
//! the nearest place offline (`domain::place`).
//!
//! Only `http://` is spoken: an alarm's position is a protected person's whereabouts and
//! must not go to a public service on the internet, so the geocoder is one run inside the
//! police's own network (a Nominatim or Photon with a Swedish extract), reached directly or
//! through a local TLS proxy. Answers are kept for a while per position, rounded to about a
//! metre, so a detail opened by several officers asks once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long the console waits for a street address before it shows the position alone.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// How long an answer (or the lack of one) is kept.
const CACHE_TTL: Duration = Duration::from_secs(3600);
/// Positions whose answers are kept; an open queue has a few dozen.
const CACHE_SIZE: usize = 1024;
/// A failed or timed-out ask is not repeated for this long, so a geocoder that is down does
/// not cost every detail two seconds.
const FAILURE_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GeocoderUrlError {
    #[error(
        "geocoder_url `{0}` must be an http:// URL of a geocoder inside your own network \
         (alarm positions must not leave it); put a local TLS proxy in front for https"
    )]
    Scheme(String),
}

/// What the geocoder said about one position.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// A street address, e.g. `Drottninggatan 71, 111 36 Stockholm`.
    Found(String),
    /// The geocoder answered but knows no address there (sea, forest).
    NoAddress,
    /// No answer in time, or one that could not be read.
    Unavailable,
}

pub struct Geocoder {
    base: String,
    client: reqwest::Client,
    cache: Mutex<HashMap<(i64, i64), (Instant, Lookup)>>,
}

impl Geocoder {
    /// `url` is the geocoder's base, e.g. `http://nominatim.internal:8080`; `/reverse` is
    /// added.
    pub fn new(url: &str) -> Result<Geocoder, GeocoderUrlError> {
        if !url.starts_with("http://") || url.len() <= "http://".len() {
            return Err(GeocoderUrlError::Scheme(url.to_owned()));
        }
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .user_agent(concat!("vakt/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client without TLS always builds");
        Ok(Geocoder {
            base: url.trim_end_matches('/').to_owned(),
            client,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The street address at a position: from the cache, or asked within [`TIMEOUT`].
    pub async fn street_address(&self, lat: f64, lon: f64) -> Lookup {
        let key = ((lat * 1e5).round() as i64, (lon * 1e5).round() as i64);
        if let Some(hit) = self.cached(key) {
            return hit;
        }
        let answer = self.ask(lat, lon).await;
        let mut cache = self.cache.lock().expect("geocoder cache");
        if cache.len() >= CACHE_SIZE {
            // Drop what has expired; if everything is fresh, start over: the queue of the
            // next hour is what matters.
            cache.retain(|_, (at, l)| at.elapsed() < ttl(l));
            if cache.len() >= CACHE_SIZE {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), answer.clone()));
        answer
    }

    fn cached(&self, key: (i64, i64)) -> Option<Lookup> {
        let cache = self.cache.lock().expect("geocoder cache");
        cache
            .get(&key)
            .filter(|(at, l)| at.elapsed() < ttl(l))
            .map(|(_, l)| l.clone())
    }

    async fn ask(&self, lat: f64, lon: f64) -> Lookup {
        let url = format!("{}/reverse", self.base);
        let lat = format!("{lat:.6}");
        let lon = format!("{lon:.6}");
        let sent = self
            .client
            .get(&url)
            .query(&[
                ("lat", lat.as_str()),
                ("lon", lon.as_str()),
                ("format", "jsonv2"),
                ("addressdetails", "1"),
                ("accept-language", "sv"),
            ])
            .send()
            .await;
        let body = match sent {
            Ok(r) if r.status().is_success() => r.json::<Value>().await,
            Ok(r) => {
                tracing::warn!(status = %r.status(), "the geocoder refused a reverse lookup");
                return Lookup::Unavailable;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the geocoder did not answer in time");
                return Lookup::Unavailable;
            }
        };
        match body {
            Ok(v) => read_reply(&v),
            Err(e) => {
                tracing::warn!(error = %e, "the geocoder's reply is not JSON");
                Lookup::Unavailable
            }
        }
    }
}

fn ttl(l: &Lookup) -> Duration {
    match l {
        Lookup::Unavailable => FAILURE_TTL,
        _ => CACHE_TTL,
    }
}

/// A Nominatim `jsonv2` reply (`address` with `road`, `house_number`, `postcode`, `city`…,
/// or `error` where there is nothing) or a Photon GeoJSON one (`features[0].properties`
/// with `street`, `housenumber`, `postcode`, `city`), read into one address line.
pub fn read_reply(v: &Value) -> Lookup {
    if let Some(features) = v.get("features").and_then(Value::as_array) {
        return match features.first().and_then(|f| f.get("properties")) {
            Some(p) => address_line(
                p.get("street").or_else(|| p.get("name")),
                p.get("housenumber"),
                p.get("postcode"),
                ["city", "town", "village", "county"]
                    .iter()
                    .find_map(|k| p.get(*k)),
            )
            .map_or(Lookup::NoAddress, Lookup::Found),
            None => Lookup::NoAddress,
        };
    }
    if v.get("error").is_some() {
        return Lookup::NoAddress;
    }
    let Some(a) = v.get("address") else {
        return match v.get("display_name").and_then(Value::as_str) {
            Some(d) if !d.is_empty() => Lookup::Found(clip(d)),
            _ => Lookup::Unavailable,
        };
    };
    let street = ["road", "pedestrian", "footway", "path", "square", "place"]
        .iter()
        .find_map(|k| a.get(*k));
    let town = ["city", "town", "village", "hamlet", "municipality"]
        .iter()
        .find_map(|k| a.get(*k));
    match address_line(street, a.get("house_number"), a.get("postcode"), town) {
        Some(line) => Lookup::Found(line),
        None => match v.get("display_name").and_then(Value::as_str) {
            Some(d) if !d.is_empty() => Lookup::Found(clip(d)),
            _ => Lookup::NoAddress,
        },
    }
}

/// `Drottninggatan 71, 111 36 Stockholm`; none without a street.
fn address_line(
    street: Option<&Value>,
    number: Option<&Value>,
    postcode: Option<&Value>,
    town: Option<&Value>,
) -> Option<String> {
    fn s(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }
    let street = s(street)?;
    let mut line = match s(number) {
        Some(n) => format!("{street} {n}"),
        None => street.to_owned(),
    };
    let place = [s(postcode), s(town)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    if !place.is_empty() {
        line.push_str(", ");
        line.push_str(&place);
    }
    Some(clip(&line))
}

/// A geocoder is trusted for an address, not for its length: one line, 200 characters.
fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_nominatim_reply_reads_as_street_number_postcode_and_town() {
        let v = json!({
            "place_id": 1, "display_name": "71, Drottninggatan, Norrmalm, Stockholm, 111 36, Sverige",
            "address": {"house_number": "71", "road": "Drottninggatan", "suburb": "Norrmalm",
                        "city": "Stockholm", "postcode": "111 36", "country": "Sverige"}
        });
        assert_eq!(
            read_reply(&v),
            Lookup::Found("Drottninggatan 71, 111 36 Stockholm".into())
        );
    }

    #[test]
    fn a_photon_reply_reads_the_same_way() {
        let v = json!({"type": "FeatureCollection", "features": [{"type": "Feature",
            "geometry": {"type": "Point", "coordinates": [18.0612, 59.3366]},
            "properties": {"street": "Drottninggatan", "housenumber": "71",
                           "postcode": "111 36", "city": "Stockholm"}}]});
        assert_eq!(
            read_reply(&v),
            Lookup::Found("Drottninggatan 71, 111 36 Stockholm".into())
        );
        assert_eq!(read_reply(&json!({"features": []})), Lookup::NoAddress);
    }

    #[test]
    fn nowhere_is_no_address_and_nonsense_is_unavailable() {
        assert_eq!(
            read_reply(&json!({"error": "Unable to geocode"})),
            Lookup::NoAddress
        );
        assert_eq!(read_reply(&json!([1, 2])), Lookup::Unavailable);
        let no_street =
            json!({"display_name": "Gotska Sandön, Gotland", "address": {"county": "Gotland"}});
        assert_eq!(
            read_reply(&no_street),
            Lookup::Found("Gotska Sandön, Gotland".into())
        );
    }

    #[test]
    fn only_a_plain_http_geocoder_is_accepted() {
        assert!(Geocoder::new("http://nominatim.internal:8080").is_ok());
        for bad in [
            "https://nominatim.openstreetmap.org",
            "nominatim:8080",
            "http://",
        ] {
            assert!(Geocoder::new(bad).is_err(), "{bad}");
        }
    }
}
