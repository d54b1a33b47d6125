//! Fuzz target for the device-message decoder: `vakt::protocol::open` then `verify`.
//!
//! Input: the MQTT topic, one line feed, then the payload bytes (what a broker hands the
//! ingest). Inputs without a line feed are all topic and an empty payload.
//!
//! Beyond "never panics", every input is held to the decoder's invariants:
//! - `open` agrees with `parse_topic` and `Body::parse` taken one by one;
//! - a body that parses re-parses from its canonical form to the same members, the
//!   canonical form is a fixed point and never longer than what was received, and it is
//!   byte-identical to the canonical form of firmware-sim's independent implementation;
//! - `with_mac` of a parsed body parses again, to the same members plus that `mac`;
//! - `verify` refuses exactly the bodies whose `mac` is missing or wrong, agreeing with
//!   firmware-sim's verifier, and a message that verifies verifies again, to the same
//!   message, after canonical re-serialisation; the same body signed with another key
//!   never verifies;
//! - the body re-signed with the fixed key (so that the fuzzer reaches the member
//!   decoding behind the signature) is never refused for its signature, and what it
//!   decodes to stays within the ranges of docs/protocol.md.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vakt::protocol::canonical::Scalar;
use vakt::protocol::{
    self, Body, BodyError, DeviceKey, Message, Payload, ProtocolError, MAX_BODY_BYTES,
};

/// The key of the worked example in docs/protocol.md (32 bytes of 0x0f); the seed
/// corpus in fuzz/corpus/device_message/ is signed with it.
const KEY_HEX: &str = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f";
const OTHER_KEY_HEX: &str = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0";

fuzz_target!(|data: &[u8]| {
    let (topic, payload) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    // MQTT topics are UTF-8; the broker refuses anything else before the ingest sees it.
    let Ok(topic) = std::str::from_utf8(topic) else {
        return;
    };
    check(topic, payload);
});

fn key() -> DeviceKey {
    DeviceKey::from_hex(KEY_HEX).expect("fixed key")
}

fn check(topic: &str, payload: &[u8]) {
    let topic_ok = protocol::parse_topic(topic);
    let parsed = Body::parse(payload);
    let opened = protocol::open(topic, payload);

    // `open` is exactly the topic check, then the body check.
    match (&topic_ok, &parsed, &opened) {
        (Err(te), _, Err(oe)) => assert_eq!(te, oe, "open must report the topic first"),
        (Ok(_), Err(be), Err(ProtocolError::Body(oe))) => assert_eq!(be, oe),
        (Ok((device, uplink)), Ok(body), Ok(env)) => {
            assert_eq!(&env.device, device);
            assert_eq!(env.uplink, *uplink);
            assert_eq!(env.topic, topic);
            assert_eq!(&env.body, body);
        }
        (t, b, o) => panic!("open disagrees with its parts: {t:?} / {b:?} / {o:?}"),
    }
    if payload.len() > MAX_BODY_BYTES {
        assert_eq!(parsed, Err(BodyError::TooLarge(payload.len())));
    }

    let Ok(body) = parsed else { return };
    body_invariants(&body, payload);

    let Ok(envelope) = opened else { return };
    let canonical = body.canonical();
    let mac = body.str("mac").map(str::to_owned);
    let signature_ok = mac
        .as_deref()
        .is_some_and(|m| key().verify(topic, &canonical, m));

    // The independent verifier of firmware-sim agrees on the signature.
    let sim_key: firmware_sim::DeviceKey = KEY_HEX.parse().expect("fixed key");
    let sim_ok = firmware_sim::verify(&sim_key, topic, payload).is_ok();
    assert_eq!(
        sim_ok, signature_ok,
        "vakt and firmware-sim disagree on the signature"
    );

    let verified = protocol::verify(envelope, &key());
    match (&mac, &verified) {
        (None, r) => assert_eq!(r, &Err(ProtocolError::Member("mac"))),
        (Some(_), r) if !signature_ok => assert_eq!(r, &Err(ProtocolError::BadSignature)),
        (Some(_), Err(ProtocolError::BadSignature | ProtocolError::Member("mac"))) => {
            panic!("a good signature was refused: {verified:?}")
        }
        _ => {}
    }

    // Another key never accepts what the fixed key signed.
    if signature_ok {
        let other = DeviceKey::from_hex(OTHER_KEY_HEX).expect("other key");
        let again = protocol::open(topic, payload).expect("opened once");
        assert_eq!(
            protocol::verify(again, &other),
            Err(ProtocolError::BadSignature)
        );
    }

    if let (Ok(msg), Some(mac)) = (&verified, &mac) {
        // Canonical re-serialisation keeps the message.
        let wire = body.with_mac(mac);
        let again = protocol::open(topic, wire.as_bytes())
            .and_then(|e| protocol::verify(e, &key()))
            .unwrap_or_else(|e| panic!("re-serialised message refused: {e}: {wire}"));
        assert_eq!(&again, msg);
        message_invariants(msg, topic, &body);
    }

    resigned(topic, &body, signature_ok.then_some(&verified));
}

/// What must hold of every body the decoder accepts, whatever its topic or signature.
fn body_invariants(body: &Body, payload: &[u8]) {
    let canonical = body.canonical();
    assert!(
        canonical.len() <= payload.len(),
        "canonical form longer than the body: {canonical}"
    );
    let reparsed = Body::parse(canonical.as_bytes())
        .unwrap_or_else(|e| panic!("canonical form does not parse: {e}: {canonical}"));
    let mut without_mac = body.clone();
    without_mac.members.remove("mac");
    assert_eq!(
        reparsed, without_mac,
        "canonical round trip changed the members"
    );
    assert_eq!(
        reparsed.canonical(),
        canonical,
        "canonical form is not a fixed point"
    );

    // firmware-sim serialises the same body to the same bytes.
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(payload).expect("serde_json reads what the decoder accepted");
    let sim = firmware_sim::canonical_without_mac(&map).expect("integers only, no duplicates");
    assert_eq!(
        sim, canonical,
        "vakt and firmware-sim canonical forms differ"
    );

    // `with_mac` of the body's own mac gives it back, never longer than received.
    if let Some(Scalar::Str(mac)) = body.members.get("mac") {
        let wire = body.with_mac(mac);
        assert!(
            wire.len() <= payload.len(),
            "with_mac grew the body: {wire}"
        );
        let back = Body::parse(wire.as_bytes())
            .unwrap_or_else(|e| panic!("with_mac output does not parse: {e}: {wire}"));
        assert_eq!(&back, body);
    }

    // `with_mac` of any mac parses again, unless that makes it too large.
    let fresh = "0123456789abcdef".repeat(4);
    let wire = body.with_mac(&fresh);
    match Body::parse(wire.as_bytes()) {
        Ok(back) => {
            let mut expected = without_mac;
            expected.insert_str("mac", &fresh);
            assert_eq!(back, expected, "with_mac changed the members: {wire}");
        }
        Err(BodyError::TooLarge(n)) => assert!(n > MAX_BODY_BYTES && n == wire.len()),
        Err(e) => panic!("with_mac output does not parse: {e}: {wire}"),
    }
}

/// The body signed with the fixed key: reaches the member checks behind the signature.
fn resigned(topic: &str, body: &Body, original: Option<&Result<Message, ProtocolError>>) {
    let k = key();
    let canonical = body.canonical();
    let wire = body.with_mac(&k.sign(topic, &canonical));
    if wire.len() > MAX_BODY_BYTES {
        return;
    }
    let envelope = protocol::open(topic, wire.as_bytes())
        .unwrap_or_else(|e| panic!("a re-signed body does not open: {e}: {wire}"));
    let result = protocol::verify(envelope, &k);
    assert!(
        !matches!(
            result,
            Err(ProtocolError::BadSignature | ProtocolError::Member("mac"))
        ),
        "a body signed with the key was refused: {result:?}: {wire}"
    );
    // The signature changes nothing about what the members decode to.
    if let Some(original) = original {
        assert_eq!(&result, original);
    }
    if let Ok(msg) = &result {
        let reparsed = Body::parse(wire.as_bytes()).expect("opened above");
        message_invariants(msg, topic, &reparsed);
    }
}

/// A decoded message says what its topic and members say, within the documented ranges.
fn message_invariants(msg: &Message, topic: &str, body: &Body) {
    let (device, uplink) = protocol::parse_topic(topic).expect("verified topic");
    assert_eq!(msg.device, device);
    assert_eq!(Some(msg.boot as i64), body.int("boot"));
    assert_eq!(Some(msg.device_ts_ms), body.int("ts"));
    match uplink {
        protocol::Uplink::State => {
            assert_eq!(msg.seq, None);
            assert_eq!(msg.payload, Payload::Offline);
        }
        _ => assert_eq!(msg.seq.map(i64::from), body.int("seq")),
    }
    let fix_ok = |f: &protocol::Fix| {
        (-900_000_000..=900_000_000).contains(&f.lat_e7)
            && (-1_800_000_000..=1_800_000_000).contains(&f.lon_e7)
            && Some(f.lat_e7 as i64) == body.int("lat")
            && Some(f.lon_e7 as i64) == body.int("lon")
    };
    match &msg.payload {
        Payload::Hello { fw, model, hb_s } => {
            assert_eq!(uplink, protocol::Uplink::Hello);
            assert!(*hb_s > 0);
            assert_eq!(Some(fw.as_str()), body.str("fw"));
            assert_eq!(Some(model.as_str()), body.str("model"));
        }
        Payload::Heartbeat {
            batt,
            charging,
            rssi,
        } => {
            assert_eq!(uplink, protocol::Uplink::Heartbeat);
            assert!(*batt <= 100 && (-200..=0).contains(rssi));
            assert_eq!(body.int("chg"), Some(*charging as i64));
        }
        Payload::Alarm { kind, batt, fix } => {
            assert_eq!(uplink, protocol::Uplink::Alarm);
            assert_eq!(Some(kind.as_str()), body.str("kind"));
            assert!(batt.is_none_or(|b| b <= 100));
            assert!(fix.as_ref().is_none_or(fix_ok));
        }
        Payload::Position { fix, speed_cm_s } => {
            assert_eq!(uplink, protocol::Uplink::Position);
            assert!(fix_ok(fix));
            assert_eq!(speed_cm_s.map(i64::from), body.int("spd"));
        }
        Payload::Offline => assert_eq!(uplink, protocol::Uplink::State),
    }
}
