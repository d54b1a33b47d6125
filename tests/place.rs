//! Where an alarm is: the nearest place on every alert, the way from home and from the
//! nearest zone and SWEREF 99 TM in the detail (the way from home withheld for a protected
//! person without a reason), and the street address from a Nominatim-speaking geocoder
//! started here, which never holds up the detail when it is slow.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vakt::geocode::{Geocoder, Lookup};

/// 1.5 km due west of the registered address (a degree of longitude is 56.87 km here).
const WEST_OF_HOME: (f64, f64) = (HOME.0, HOME.1 - 1500.0 / 56_870.0);

/// A geocoder that answers `/reverse` as Nominatim does (`format=jsonv2`), after `delay`;
/// it counts the requests and keeps the last request line.
struct FakeNominatim {
    url: String,
    asked: Arc<AtomicUsize>,
    last: Arc<std::sync::Mutex<String>>,
}

async fn nominatim(delay: Duration) -> FakeNominatim {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let asked = Arc::new(AtomicUsize::new(0));
    let last = Arc::new(std::sync::Mutex::new(String::new()));
    let (count, seen) = (asked.clone(), last.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (count, seen) = (count.clone(), seen.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let head = String::from_utf8_lossy(&got);
                *seen.lock().unwrap() = head.lines().next().unwrap_or("").to_owned();
                tokio::time::sleep(delay).await;
                let body = if head.starts_with("GET /reverse?") {
                    r#"{"place_id":1,"lat":"59.3366","lon":"18.0348","display_name":"12, Fleminggatan, Kungsholmen, Stockholm, 112 26, Sverige","address":{"house_number":"12","road":"Fleminggatan","suburb":"Kungsholmen","city":"Stockholm","postcode":"112 26","country":"Sverige","country_code":"se"}}"#
                } else {
                    r#"{"error":"not found"}"#
                };
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    FakeNominatim { url, asked, last }
}

#[tokio::test]
async fn the_geocoder_is_asked_nominatims_way_once_per_position_and_a_slow_one_costs_two_seconds_at_most(
) {
    let fast = nominatim(Duration::ZERO).await;
    let g = Geocoder::new(&fast.url).unwrap();
    let found = g.street_address(59.3366, 18.0348).await;
    assert_eq!(
        found,
        Lookup::Found("Fleminggatan 12, 112 26 Stockholm".into())
    );
    let line = fast.last.lock().unwrap().clone();
    assert!(
        line.contains("lat=59.336600") && line.contains("lon=18.034800"),
        "{line}"
    );
    assert!(line.contains("format=jsonv2"), "{line}");
    assert_eq!(g.street_address(59.3366, 18.0348).await, found);
    assert_eq!(
        fast.asked.load(Ordering::SeqCst),
        1,
        "the second ask is cached"
    );

    let slow = nominatim(Duration::from_secs(10)).await;
    let g = Geocoder::new(&slow.url).unwrap();
    let started = Instant::now();
    assert_eq!(g.street_address(59.0, 18.0).await, Lookup::Unavailable);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "waited {took:?}");

    // Nobody listening at all.
    let port = free_port();
    let g = Geocoder::new(&format!("http://127.0.0.1:{port}")).unwrap();
    assert_eq!(g.street_address(59.0, 18.0).await, Lookup::Unavailable);
}

async fn raise_panic_west_of_home(app: &TestApp) -> (IssuedDevice, Value) {
    let d = app.issued_device("Stockholm").await;
    let device = app.connect(&d).await;
    let fix = firmware_sim::Fix::from_degrees(WEST_OF_HOME.0, WEST_OF_HOME.1, 25).unwrap();
    device.alarm("panic", Some(fix), None).await.unwrap();
    let alert = app.wait_for_alert(&d.id, |_| true).await;
    (d, alert)
}

#[tokio::test]
async fn every_alert_row_names_its_nearest_place_and_the_detail_says_where_it_lies() {
    let geocoder = nominatim(Duration::ZERO).await;
    let url = geocoder.url.clone();
    let app = TestApp::start_with(move |c| c.geocoder_url = Some(url)).await;
    let (_d, row) = raise_panic_west_of_home(&app).await;
    let id = row["id"].as_i64().unwrap();

    let place = &row["place"];
    assert_eq!(place["county"], "Stockholm", "{row}");
    assert!(place["name"].as_str().is_some_and(|n| !n.is_empty()));
    assert!(place["distance_m"].as_i64().unwrap() < 10_000);
    assert!(place["compass"].is_string() && place["bearing_deg"].is_i64());
    assert!(row["from_home"].is_null(), "protected: {row}");

    // The person is protected: without a reason the way from home and the distance to
    // the zone around it are withheld, the zone's name and the position are not.
    let masked = app.get(&app.officer, &format!("/api/alerts/{id}")).await;
    let loc = &masked["location"];
    assert_eq!(loc["measures_masked"], true, "{loc}");
    assert!(loc["from_home"].is_null());
    assert_eq!(loc["from_nearest_zone"]["zone"], "Home");
    assert_eq!(loc["from_nearest_zone"]["inside"], false);
    assert!(loc["from_nearest_zone"]["distance_m"].is_null());
    assert_eq!(loc["place"], row["place"]);
    let (n, e) = vakt::domain::geo::sweref99tm(WEST_OF_HOME);
    assert!(
        (loc["sweref99tm"]["n"].as_f64().unwrap() - n).abs() <= 1.0,
        "{loc}"
    );
    assert!(
        (loc["sweref99tm"]["e"].as_f64().unwrap() - e).abs() <= 1.0,
        "{loc}"
    );
    assert_eq!(loc["accuracy_m"], 25);

    // With a reason (logged) the officer reads "1.5 km W of home".
    let full = app
        .get(&app.officer, &format!("/api/alerts/{id}?reason=dispatch"))
        .await;
    let loc = &full["location"];
    assert_eq!(loc["measures_masked"], false);
    assert_eq!(loc["from_home"]["compass"], "W", "{loc}");
    let d = loc["from_home"]["distance_m"].as_i64().unwrap();
    assert!((d - 1500).abs() < 15, "{d}");
    assert!((loc["from_home"]["bearing_deg"].as_i64().unwrap() - 270).abs() <= 1);
    assert_eq!(full["alert"]["from_home"], loc["from_home"]);
    let zone = &loc["from_nearest_zone"];
    assert_eq!(zone["compass"], "W");
    assert!(
        (zone["distance_m"].as_i64().unwrap() - 1200).abs() < 15,
        "{zone}"
    );

    let addr = app
        .get(&app.officer, &format!("/api/alerts/{id}/street-address"))
        .await;
    assert_eq!(addr["status"], "found");
    assert_eq!(addr["text"], "Fleminggatan 12, 112 26 Stockholm");
}

#[tokio::test]
async fn without_a_geocoder_the_street_address_says_so_and_a_resolved_protected_alert_gives_none() {
    let app = TestApp::start().await;
    let (_d, row) = raise_panic_west_of_home(&app).await;
    let id = row["id"].as_i64().unwrap();
    let addr = app
        .get(&app.officer, &format!("/api/alerts/{id}/street-address"))
        .await;
    assert_eq!(addr["status"], "not_configured");
    let resp = app
        .officer
        .post(app.url(&format!("/api/alerts/{id}/resolve")))
        .json(&serde_json::json!({"outcome": "false_alarm"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let addr = app
        .get(&app.officer, &format!("/api/alerts/{id}/street-address"))
        .await;
    assert_eq!(addr["status"], "no_position");
    let resolved = app.get(&app.officer, &format!("/api/alerts/{id}")).await;
    assert!(resolved["alert"]["place"].is_null(), "{resolved}");
    assert!(resolved["location"].is_null());
}

#[tokio::test]
async fn the_api_document_describes_the_place_the_location_and_the_street_address() {
    let app = TestApp::start().await;
    let doc = app.get(&app.anonymous, "/api/openapi.json").await;
    let schemas = &doc["components"]["schemas"];
    let fields = |name: &str| -> Vec<String> {
        let s = &schemas[name];
        let mut out: Vec<String> = s["properties"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        // A flattened struct is an allOf of its parts.
        for part in s["allOf"].as_array().into_iter().flatten() {
            let part = match part["$ref"].as_str() {
                Some(r) => &schemas[r.rsplit('/').next().unwrap()],
                None => part,
            };
            out.extend(part["properties"].as_object().unwrap().keys().cloned());
        }
        out
    };
    let place = fields("NearestPlace");
    for f in [
        "name",
        "municipality",
        "county",
        "distance_m",
        "bearing_deg",
        "compass",
    ] {
        assert!(
            place.contains(&f.to_owned()),
            "NearestPlace lacks {f}: {place:?}"
        );
    }
    let loc = fields("LocationOut");
    for f in [
        "sweref99tm",
        "from_home",
        "from_nearest_zone",
        "measures_masked",
        "place",
    ] {
        assert!(
            loc.contains(&f.to_owned()),
            "LocationOut lacks {f}: {loc:?}"
        );
    }
    assert!(fields("AlertOut").contains(&"place".to_owned()));
    assert!(doc["paths"]["/api/alerts/{id}/street-address"]["get"].is_object());
}

#[tokio::test]
async fn a_coordinator_is_told_when_an_address_does_not_name_the_town_its_position_lies_in() {
    let app = TestApp::start().await;
    let check = |text: &str, lat: f64, lon: f64| {
        app.coordinator
            .post(app.url("/api/places/address-check"))
            .json(&serde_json::json!({"text": text, "lat": lat, "lon": lon}))
            .send()
    };
    let right: Value = check("Storgatan 1, 903 26 Umeå", 63.8258, 20.263)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(right["names_place"], true);
    assert_eq!(right["near"]["name"], "Umea");
    assert_eq!(right["near"]["municipality"], "Umea kommun");

    // A Stockholm address with a position clicked in Umeå.
    let wrong: Value = check("Drottninggatan 71, 111 36 Stockholm", 63.8258, 20.263)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wrong["names_place"], false);
    assert_eq!(wrong["near"]["name"], "Umea");

    let outside = check("Storgatan 1", 40.7, -74.0).await.unwrap();
    assert_eq!(outside.status(), 422);
    let problem: Value = outside.json().await.unwrap();
    assert!(problem.to_string().contains("lat"), "{problem}");
}
