//! Properties of the device-message decoder that the unit tests in src/protocol do not
//! cover: the canonical form for any body however it is spelt, agreement with
//! firmware-sim's independent implementation of protocol v1 in both directions, range
//! checks behind the signature, and the number rules of docs/protocol.md section 4.

use firmware_sim::DeviceKey as SimKey;
use proptest::prelude::*;
use serde_json::{json, Value};
use vakt::protocol::canonical::Scalar;
use vakt::protocol::{
    self, AlarmKind, Body, BodyError, DeviceId, DeviceKey, Feedback, Fix, Payload, ProtocolError,
    MAX_BODY_BYTES,
};

fn keys(bytes: [u8; 32]) -> (DeviceKey, SimKey) {
    let hex = hex::encode(bytes);
    (
        DeviceKey::from_hex(&hex).unwrap(),
        hex.parse::<SimKey>().unwrap(),
    )
}

fn scalar_json(v: &Scalar) -> Value {
    match v {
        Scalar::Int(i) => json!(i),
        Scalar::Str(s) => json!(s),
        Scalar::Bool(b) => json!(b),
    }
}

fn scalar() -> impl Strategy<Value = Scalar> {
    prop_oneof![
        any::<i64>().prop_map(Scalar::Int),
        // Any string, control characters and characters beyond the BMP included.
        any::<String>().prop_map(Scalar::Str),
        "[\\x00-\\x1f\"\\\\/a\u{e5}\u{2028}\u{1f6a8}]{0,8}".prop_map(Scalar::Str),
        any::<bool>().prop_map(Scalar::Bool),
    ]
}

fn member_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,6}",
        Just("mac".to_owned()),
        any::<String>(),
        "[\\x00-\\x1f\"\\\\\u{7f}\u{e000}\u{ffff}\u{10000}]{1,4}",
    ]
}

/// A string literal spelt in one of the many ways JSON allows.
fn spell_string(s: &str, style: &[u8], out: &mut String) {
    out.push('"');
    for (i, c) in s.chars().enumerate() {
        let pick = style.get(i % style.len().max(1)).copied().unwrap_or(0) % 4;
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if pick == 1 => out.push_str("\\/"),
            c if (c as u32) < 0x20 || pick == 2 => {
                // \uXXXX, with a surrogate pair beyond the BMP, upper or lower case hex.
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    if pick == 3 {
                        out.push_str(&format!("\\u{u:04X}"));
                    } else {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// JSON text of `members` in the given order, with white space and escapes chosen by
/// `style`: what some device might send.
fn spell_body(members: &[(String, Scalar)], style: &[u8]) -> String {
    let ws = |i: usize| match style.get(i % style.len().max(1)).copied().unwrap_or(0) % 5 {
        0 | 1 => "",
        2 => " ",
        3 => "\n\t",
        _ => "\r\n  ",
    };
    let mut out = String::new();
    out.push_str(ws(0));
    out.push('{');
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(ws(i + 1));
        spell_string(k, &style[i % style.len().max(1)..], &mut out);
        out.push_str(ws(i + 2));
        out.push(':');
        out.push_str(ws(i + 3));
        match v {
            Scalar::Int(n) => out.push_str(&n.to_string()),
            Scalar::Str(s) => spell_string(s, &style[(i + 1) % style.len().max(1)..], &mut out),
            Scalar::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
        out.push_str(ws(i + 4));
    }
    out.push('}');
    out.push_str(ws(members.len() + 5));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// However a body is spelt (member order, white space, escapes), it parses to its
    /// members, and its canonical form is firmware-sim's, parses back to the same
    /// members and is a fixed point.
    #[test]
    fn any_spelling_of_a_body_has_one_canonical_form(
        members in proptest::collection::btree_map(member_name(), scalar(), 0..8),
        order in any::<prop::sample::Index>(),
        style in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        let mut list: Vec<(String, Scalar)> = members.clone().into_iter().collect();
        if !list.is_empty() {
            let by = order.index(list.len());
            list.rotate_left(by);
        }
        let text = spell_body(&list, &style);
        prop_assume!(text.len() <= MAX_BODY_BYTES);
        let body = Body::parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(&body.members, &members);

        let canonical = body.canonical();
        let sim_members: Vec<(&str, Value)> = members
            .iter()
            .filter(|(k, _)| k.as_str() != "mac")
            .map(|(k, v)| (k.as_str(), scalar_json(v)))
            .collect();
        prop_assert_eq!(&canonical, &firmware_sim::canonical_json(&sim_members).unwrap());

        let again = Body::parse(canonical.as_bytes()).unwrap();
        let mut without_mac = body.clone();
        without_mac.members.remove("mac");
        prop_assert_eq!(&again, &without_mac);
        prop_assert_eq!(again.canonical(), canonical);
    }

    /// What firmware-sim signs, vakt verifies and decodes to the members it was given.
    #[test]
    fn a_heartbeat_signed_by_firmware_sim_decodes_in_vakt(
        key in any::<[u8; 32]>(), device in "[A-Za-z0-9_-]{3,64}",
        batt in 0u8..=100, chg in any::<bool>(), rssi in -200i32..=0,
        boot in any::<u32>(), seq in any::<u32>(), ts in any::<i64>(),
    ) {
        let (vkey, skey) = keys(key);
        let topic = firmware_sim::topic(&device, "hb");
        let members = [
            ("ts", json!(ts)), ("seq", json!(seq)), ("rssi", json!(rssi)),
            ("chg", json!(chg as u8)), ("boot", json!(boot)), ("batt", json!(batt)),
        ];
        let wire = firmware_sim::signed_body(&skey, &topic, &members).unwrap();
        let msg = protocol::verify(protocol::open(&topic, wire.as_bytes()).unwrap(), &vkey).unwrap();
        prop_assert_eq!(msg.device.as_str(), device.as_str());
        prop_assert_eq!((msg.boot, msg.seq, msg.device_ts_ms), (boot, Some(seq), ts));
        prop_assert_eq!(msg.payload, Payload::Heartbeat { batt, charging: chg, rssi });
    }

    #[test]
    fn an_alarm_or_position_signed_by_firmware_sim_decodes_in_vakt(
        key in any::<[u8; 32]>(),
        kind in prop::sample::select(firmware_sim::ALARM_KINDS.to_vec()),
        lat in -900_000_000i32..=900_000_000, lon in -1_800_000_000i32..=1_800_000_000,
        acc in any::<u32>(), spd in proptest::option::of(any::<u32>()),
        batt in proptest::option::of(0u8..=100), with_fix in any::<bool>(),
        boot in any::<u32>(), seq in any::<u32>(),
    ) {
        let (vkey, skey) = keys(key);
        let fix = Fix { lat_e7: lat, lon_e7: lon, acc_m: acc };

        let topic = firmware_sim::topic("dev-001", "alarm");
        let mut members = vec![("kind", json!(kind)), ("boot", json!(boot)), ("seq", json!(seq)), ("ts", json!(1))];
        if let Some(b) = batt {
            members.push(("batt", json!(b)));
        }
        if with_fix {
            members.extend([("lat", json!(lat)), ("lon", json!(lon)), ("acc", json!(acc))]);
        }
        let wire = firmware_sim::signed_body(&skey, &topic, &members).unwrap();
        let msg = protocol::verify(protocol::open(&topic, wire.as_bytes()).unwrap(), &vkey).unwrap();
        prop_assert_eq!(msg.payload, Payload::Alarm {
            kind: AlarmKind::parse(kind).unwrap(),
            batt,
            fix: with_fix.then_some(fix),
        });

        let topic = firmware_sim::topic("dev-001", "pos");
        let mut members = vec![
            ("lat", json!(lat)), ("lon", json!(lon)), ("acc", json!(acc)),
            ("boot", json!(boot)), ("seq", json!(seq)), ("ts", json!(1)),
        ];
        if let Some(s) = spd {
            members.push(("spd", json!(s)));
        }
        let wire = firmware_sim::signed_body(&skey, &topic, &members).unwrap();
        let msg = protocol::verify(protocol::open(&topic, wire.as_bytes()).unwrap(), &vkey).unwrap();
        prop_assert_eq!(msg.payload, Payload::Position { fix, speed_cm_s: spd });
    }

    /// Members reordered and spaced out still verify, to the same message: the signature
    /// covers the canonical form, not the bytes.
    #[test]
    fn order_and_white_space_do_not_change_a_verified_message(
        key in any::<[u8; 32]>(), order in any::<prop::sample::Index>(),
        style in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        let (vkey, _) = keys(key);
        let topic = "vakt/v1/dev/dev-001/hello";
        let mut body = Body::default();
        body.insert_str("fw", "2.4.1/å \"β\" \\ \u{1f6a8}");
        body.insert_int("hb", 60);
        body.insert_str("model", "VA-200");
        body.insert_int("boot", 3);
        body.insert_int("seq", 0);
        body.insert_int("ts", 1_764_319_990_001);
        let mac = vkey.sign(topic, &body.canonical());
        let plain = body.with_mac(&mac);
        let expected = protocol::verify(protocol::open(topic, plain.as_bytes()).unwrap(), &vkey).unwrap();

        body.insert_str("mac", &mac);
        let mut list: Vec<(String, Scalar)> = body.members.into_iter().collect();
        let by = order.index(list.len());
        list.rotate_left(by);
        let text = spell_body(&list, &style);
        let msg = protocol::verify(protocol::open(topic, text.as_bytes()).unwrap(), &vkey)
            .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(msg, expected);
    }

    /// The downlink bodies vakt signs verify with firmware-sim's verifier.
    #[test]
    fn downlink_bodies_verify_in_firmware_sim(
        key in any::<[u8; 32]>(), device in "[A-Za-z0-9_-]{3,64}",
        boot in any::<u32>(), seq in any::<u32>(), ts in any::<i64>(), hb in 1u32..=86_400,
        st in prop::sample::select(vec![Feedback::Received, Feedback::Accepted, Feedback::Resolved]),
    ) {
        let (vkey, skey) = keys(key);
        let id = DeviceId::parse(&device).unwrap();
        let (topic, text) = protocol::feedback_body(&id, &vkey, boot, seq, st, ts);
        let members = firmware_sim::verify(&skey, &topic, text.as_bytes()).unwrap();
        prop_assert_eq!(&members["st"], &json!(st.as_str()));
        prop_assert_eq!(&members["seq"], &json!(seq));
        let (topic, text) = protocol::config_body(&id, &vkey, Some(hb), None, ts);
        let members = firmware_sim::verify(&skey, &topic, text.as_bytes()).unwrap();
        prop_assert_eq!(&members["hb"], &json!(hb));
        prop_assert!(!members.contains_key("newkey"));
    }

    /// A key handed over in `cfg` is what firmware-sim unwraps with the key that signed it,
    /// and never appears in clear.
    #[test]
    fn a_rotated_key_in_cfg_unwraps_in_firmware_sim(
        key in any::<[u8; 32]>(), next in any::<[u8; 32]>(), device in "[A-Za-z0-9_-]{3,64}",
        ts in any::<i64>(), hb in prop::option::of(1u32..=86_400),
    ) {
        let (vkey, skey) = keys(key);
        let (vnext, snext) = keys(next);
        let id = DeviceId::parse(&device).unwrap();
        let (topic, text) = protocol::config_body(&id, &vkey, hb, Some(&vnext), ts);
        prop_assert!(!text.contains(&hex::encode(next)));
        let members = firmware_sim::verify(&skey, &topic, text.as_bytes()).unwrap();
        let wrapped = members["newkey"].as_str().unwrap();
        let unwrapped = firmware_sim::unwrap_new_key(&skey, &topic, ts, wrapped).unwrap();
        prop_assert_eq!(unwrapped, snext);
        prop_assert_eq!(members.get("hb").cloned(), hb.map(|h| json!(h)));
        // And the backend's own inverse agrees.
        prop_assert_eq!(
            protocol::unwrap_next_key(&vkey, &topic, ts, wrapped).map(|k| k.to_hex()),
            Some(hex::encode(next))
        );
    }

    /// Out-of-range members are refused, after the signature, naming the member.
    #[test]
    fn out_of_range_members_are_refused(
        which in 0usize..9, big in 1i64..=i64::MAX / 2,
    ) {
        let (vkey, _) = keys([7; 32]);
        let (leaf, members, field): (&str, Vec<(&str, i64)>, &str) = match which {
            0 => ("hb", vec![("batt", 100 + big), ("chg", 0), ("rssi", -1)], "batt"),
            1 => ("hb", vec![("batt", -big), ("chg", 0), ("rssi", -1)], "batt"),
            2 => ("hb", vec![("batt", 5), ("chg", 1 + big), ("rssi", -1)], "chg"),
            3 => ("hb", vec![("batt", 5), ("chg", 0), ("rssi", big)], "rssi"),
            4 => ("hb", vec![("batt", 5), ("chg", 0), ("rssi", -200 - big)], "rssi"),
            5 => ("pos", vec![("lat", 900_000_000 + big), ("lon", 0), ("acc", 1)], "lat"),
            6 => ("pos", vec![("lat", 0), ("lon", -1_800_000_000 - big), ("acc", 1)], "lon"),
            7 => ("pos", vec![("lat", 0), ("lon", 0), ("acc", -big)], "acc"),
            _ => ("hello", vec![("hb", u32::MAX as i64 + big)], "hb"),
        };
        let topic = format!("vakt/v1/dev/dev-001/{leaf}");
        let mut body = Body::default();
        body.insert_int("boot", 1);
        body.insert_int("seq", 1);
        body.insert_int("ts", 1);
        body.insert_str("fw", "1");
        body.insert_str("model", "m");
        for (k, v) in members {
            body.insert_int(k, v);
        }
        let wire = body.with_mac(&vkey.sign(&topic, &body.canonical()));
        let err = protocol::verify(protocol::open(&topic, wire.as_bytes()).unwrap(), &vkey).unwrap_err();
        prop_assert_eq!(err, ProtocolError::Range(match field {
            "batt" => "batt", "chg" => "chg", "rssi" => "rssi", "lat" => "lat",
            "lon" => "lon", "acc" => "acc", _ => "hb",
        }));
    }

    /// Sequence numbers and boot counters are u32: anything outside is out of range.
    #[test]
    fn counters_outside_u32_are_refused(
        field in prop::sample::select(vec!["boot", "seq"]),
        v in prop_oneof![i64::MIN..0, (u32::MAX as i64 + 1)..=i64::MAX],
    ) {
        let (vkey, _) = keys([9; 32]);
        let topic = "vakt/v1/dev/dev-001/alarm";
        let mut body = Body::default();
        body.insert_str("kind", "panic");
        body.insert_int("boot", 1);
        body.insert_int("seq", 1);
        body.insert_int("ts", 1);
        body.insert_int(field, v);
        let wire = body.with_mac(&vkey.sign(topic, &body.canonical()));
        let err = protocol::verify(protocol::open(topic, wire.as_bytes()).unwrap(), &vkey).unwrap_err();
        prop_assert_eq!(err, ProtocolError::Range(if field == "boot" { "boot" } else { "seq" }));
    }

    /// Arbitrary bytes on a valid topic never panic the decoder; the size limit holds.
    #[test]
    fn arbitrary_payloads_are_refused_or_decoded_without_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..2200),
    ) {
        let topic = "vakt/v1/dev/dev-001/alarm";
        let (vkey, _) = keys([1; 32]);
        match protocol::open(topic, &bytes) {
            Err(ProtocolError::Body(BodyError::TooLarge(n))) => prop_assert!(n > MAX_BODY_BYTES),
            Err(_) => {}
            Ok(env) => {
                prop_assert!(bytes.len() <= MAX_BODY_BYTES);
                let _ = protocol::verify(env, &vkey);
            }
        }
    }
}

/// Section 4 of docs/protocol.md: integers only, no fractions, no exponents, no `-0`,
/// within a signed 64-bit integer.
#[test]
fn numbers_outside_the_integer_rules_are_refused() {
    for bad in [
        "-0",
        "1.0",
        "0.5",
        "1e3",
        "1E3",
        "-1e0",
        "01",
        "+1",
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "NaN",
        "Infinity",
    ] {
        let text = format!(r#"{{"seq":{bad}}}"#);
        assert!(
            Body::parse(text.as_bytes()).is_err(),
            "{text} was accepted as {:?}",
            Body::parse(text.as_bytes())
        );
    }
    for (good, value) in [
        ("0", 0),
        ("-1", -1),
        ("9223372036854775807", i64::MAX),
        ("-9223372036854775808", i64::MIN),
    ] {
        let body = Body::parse(format!(r#"{{"seq":{good}}}"#).as_bytes()).unwrap();
        assert_eq!(body.int("seq"), Some(value));
        assert_eq!(body.canonical(), format!(r#"{{"seq":{good}}}"#));
    }
}

/// A lone surrogate escape has no UTF-8 form, hence no canonical form: it is refused.
#[test]
fn lone_surrogate_escapes_are_refused() {
    for bad in [
        r#"{"fw":"\ud800"}"#,
        r#"{"fw":"\udc00x"}"#,
        r#"{"\ud83d":1}"#,
    ] {
        assert!(Body::parse(bad.as_bytes()).is_err(), "{bad}");
    }
    let pair = Body::parse(br#"{"fw":"\ud83d\udea8"}"#).unwrap();
    assert_eq!(pair.str("fw"), Some("\u{1f6a8}"));
}

/// A body at exactly the limit is read; one byte more is refused before parsing.
#[test]
fn the_size_limit_is_exact() {
    let filler = MAX_BODY_BYTES - r#"{"fw":""}"#.len();
    let at = format!(r#"{{"fw":"{}"}}"#, "x".repeat(filler));
    assert_eq!(at.len(), MAX_BODY_BYTES);
    assert!(Body::parse(at.as_bytes()).is_ok());
    let over = format!(r#"{{"fw":"{}"}}"#, "x".repeat(filler + 1));
    assert_eq!(
        Body::parse(over.as_bytes()),
        Err(BodyError::TooLarge(MAX_BODY_BYTES + 1))
    );
}

/// The fuzz target's seed corpus (fuzz/make_seeds.py) holds valid signed messages of
/// every uplink topic, under the key of the worked example in docs/protocol.md.
#[test]
fn the_fuzz_seed_corpus_verifies() {
    let key = DeviceKey::from_hex(&"0f".repeat(32)).unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/device_message");
    let mut leaves = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // Inputs the fuzzer adds are not seeds.
        if !name.starts_with("seed-") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        let nl = data.iter().position(|&b| b == b'\n').unwrap();
        let topic = std::str::from_utf8(&data[..nl]).unwrap();
        let msg = protocol::open(topic, &data[nl + 1..])
            .and_then(|e| protocol::verify(e, &key))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        leaves.insert(match msg.payload {
            Payload::Hello { .. } => "hello",
            Payload::Heartbeat { .. } => "hb",
            Payload::Alarm { .. } => "alarm",
            Payload::Position { .. } => "pos",
            Payload::Offline => "state",
        });
    }
    assert_eq!(leaves.len(), 5, "seeds cover only {leaves:?}");
}
