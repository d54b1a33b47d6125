use super::*;
use proptest::prelude::*;

fn key() -> DeviceKey {
    DeviceKey::from_hex(&"0f".repeat(32)).unwrap()
}

fn signed(topic: &str, members: &str) -> Vec<u8> {
    let body = Body::parse(members.as_bytes()).unwrap();
    let mac = key().sign(topic, &body.canonical());
    body.with_mac(&mac).into_bytes()
}

const ALARM_TOPIC: &str = "vakt/v1/dev/dev-001/alarm";
const ALARM: &str = r#"{"acc":12,"boot":3,"kind":"panic","lat":593293000,"lon":180686000,"seq":17,"ts":1764320000123}"#;

#[test]
fn a_signed_panic_with_a_position_decodes() {
    let msg = verify(
        open(ALARM_TOPIC, &signed(ALARM_TOPIC, ALARM)).unwrap(),
        &key(),
    )
    .unwrap();
    assert_eq!(msg.device.as_str(), "dev-001");
    assert_eq!((msg.boot, msg.seq), (3, Some(17)));
    let Payload::Alarm { kind, fix, .. } = msg.payload else {
        panic!("not an alarm")
    };
    assert_eq!(kind, AlarmKind::Panic);
    let fix = fix.unwrap();
    assert!((fix.lat() - 59.3293).abs() < 1e-9);
    assert_eq!(fix.acc_m, 12);
}

#[test]
fn the_signature_matches_an_independent_hmac() {
    // python3 -c 'import hmac,hashlib;print(hmac.new(bytes([15]*32),
    //   b"vakt/v1/dev/dev-001/hb\n{\"batt\":87,\"boot\":3,\"chg\":0,\"rssi\":-71,\"seq\":1204,\"ts\":1764320000123}",
    //   hashlib.sha256).hexdigest())'
    let body = r#"{"batt":87,"boot":3,"chg":0,"rssi":-71,"seq":1204,"ts":1764320000123}"#;
    assert_eq!(
        key().sign("vakt/v1/dev/dev-001/hb", body),
        "362cf29fcb893343a4a5e4f393369060799b963839fef1357d660908c1160176"
    );
}

#[test]
fn a_signature_for_another_topic_is_refused() {
    let bytes = signed(ALARM_TOPIC, ALARM);
    let other = "vakt/v1/dev/dev-002/alarm";
    assert_eq!(
        verify(open(other, &bytes).unwrap(), &key()).unwrap_err(),
        ProtocolError::BadSignature
    );
}

#[test]
fn an_uppercase_signature_is_refused() {
    let body = Body::parse(ALARM.as_bytes()).unwrap();
    let mac = key().sign(ALARM_TOPIC, &body.canonical()).to_uppercase();
    let bytes = body.with_mac(&mac).into_bytes();
    assert!(verify(open(ALARM_TOPIC, &bytes).unwrap(), &key()).is_err());
}

#[test]
fn an_unknown_alarm_kind_is_refused_after_the_signature() {
    let text = ALARM.replace("panic", "burglary");
    let err = verify(
        open(ALARM_TOPIC, &signed(ALARM_TOPIC, &text)).unwrap(),
        &key(),
    )
    .unwrap_err();
    assert_eq!(err, ProtocolError::AlarmKind("burglary".into()));
}

#[test]
fn the_last_will_needs_no_seq() {
    let topic = "vakt/v1/dev/dev-001/state";
    let msg = verify(
        open(topic, &signed(topic, r#"{"boot":3,"online":false,"ts":1}"#)).unwrap(),
        &key(),
    )
    .unwrap();
    assert_eq!(msg.seq, None);
    assert_eq!(msg.payload, Payload::Offline);
}

#[test]
fn topics_outside_the_uplink_set_are_refused() {
    for t in [
        "vakt/v1/dev/dev-001/ack",
        "vakt/v1/dev/dev-001/cfg",
        "vakt/v2/dev/dev-001/alarm",
        "vakt/v1/dev/d/alarm",
        "vakt/v1/dev/dev 001/alarm",
        "vakt/v1/dev/dev-001/alarm/x",
    ] {
        assert!(parse_topic(t).is_err(), "{t}");
    }
}

#[test]
fn a_downlink_ack_verifies_with_the_device_key() {
    let dev = DeviceId::parse("dev-001").unwrap();
    let (topic, text) = feedback_body(&dev, &key(), 3, 17, Feedback::Received, 1000);
    assert_eq!(topic, "vakt/v1/dev/dev-001/ack");
    let body = Body::parse(text.as_bytes()).unwrap();
    assert!(key().verify(&topic, &body.canonical(), body.str("mac").unwrap()));
    assert_eq!(body.str("st"), Some("received"));
}

proptest! {
    #[test]
    fn any_single_byte_change_to_a_signed_message_is_refused(
        index in 0usize..160, replacement in any::<u8>()
    ) {
        let original = signed(ALARM_TOPIC, ALARM);
        let index = index % original.len();
        prop_assume!(original[index] != replacement);
        let mut tampered = original.clone();
        tampered[index] = replacement;
        let outcome = open(ALARM_TOPIC, &tampered).and_then(|e| verify(e, &key()));
        prop_assert!(outcome.is_err());
    }

    #[test]
    fn device_ids_outside_the_pattern_are_refused(s in "\\PC{0,70}") {
        let valid = (3..=64).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        prop_assert_eq!(DeviceId::parse(&s).is_ok(), valid);
    }
}

#[test]
fn a_device_may_publish_only_to_its_own_uplink_and_never_retained() {
    assert_eq!(
        may_publish("dev-1", "vakt/v1/dev/dev-1/alarm", false),
        Ok(())
    );
    assert_eq!(
        may_publish("dev-1", "vakt/v1/dev/dev-1/state", false),
        Ok(())
    );
    assert!(may_publish("dev-1", "vakt/v1/dev/dev-2/alarm", false).is_err());
    assert!(may_publish("dev-1", "vakt/v1/dev/dev-1/alarm", true).is_err());
    assert!(may_publish("dev-1", "vakt/v1/dev/dev-1/ack", false).is_err());
    assert!(may_publish("dev-1", "vakt/v1/dev/dev-1/cfg", false).is_err());
    assert!(may_publish("dev-1", "elsewhere", false).is_err());
}

#[test]
fn a_signed_hello_whose_firmware_or_model_holds_a_control_character_is_refused() {
    let topic = "vakt/v1/dev/dev-001/hello";
    for (member, body) in [
        (
            "fw",
            r#"{"boot":1,"fw":"a\u0000b","hb":60,"model":"VA-200","seq":0,"ts":1}"#,
        ),
        (
            "fw",
            r#"{"boot":1,"fw":"a\u001bb","hb":60,"model":"VA-200","seq":0,"ts":1}"#,
        ),
        (
            "model",
            r#"{"boot":1,"fw":"2.4","hb":60,"model":"VA\u0085","seq":0,"ts":1}"#,
        ),
        (
            "fw",
            r#"{"boot":1,"fw":"2.4\n","hb":60,"model":"VA-200","seq":0,"ts":1}"#,
        ),
    ] {
        assert_eq!(
            verify(open(topic, &signed(topic, body)).unwrap(), &key()).unwrap_err(),
            ProtocolError::ControlCharacter(member),
            "{body}"
        );
    }
    let fine = r#"{"boot":1,"fw":"2.4.1/å β","hb":60,"model":"VA-200","seq":0,"ts":1}"#;
    assert!(verify(open(topic, &signed(topic, fine)).unwrap(), &key()).is_ok());
}

#[test]
fn every_uplink_kind_is_listed_once_and_parses_from_its_own_topic() {
    let leaves: std::collections::BTreeSet<&str> = Uplink::ALL.iter().map(|u| u.name()).collect();
    assert_eq!(leaves.len(), Uplink::ALL.len());
    for &u in Uplink::ALL {
        let topic = format!("vakt/v1/dev/dev-001/{}", u.name());
        let (_, parsed) = parse_topic(&topic).unwrap();
        assert_eq!(parsed, u);
        // The ingest's subscription reaches every kind.
        assert!(rumqttc::matches(&topic, UPLINK_FILTER));
    }
    for down in Downlink::ALL {
        assert!(parse_topic(&format!("vakt/v1/dev/dev-001/{}", down.name())).is_err());
    }
}

#[test]
fn the_topic_leaves_are_told_apart_by_their_last_level_only() {
    assert_eq!(
        Uplink::of_leaf("vakt/v1/dev/dev-001/alarm"),
        Some(Uplink::Alarm)
    );
    assert_eq!(
        Downlink::of_leaf("vakt/v1/dev/dev-001/cfg"),
        Some(Downlink::Config)
    );
    assert_eq!(Downlink::of_leaf("vakt/v1/dev/dev-001/alarm"), None);
    assert_eq!(Uplink::of_leaf("alarm"), None);
    assert_eq!(Uplink::of_leaf("vakt/v1/dev/dev-001/alarm/x"), None);
}

#[test]
fn the_protocol_document_lists_every_topic_kind_and_no_other() {
    let doc = include_str!("../../docs/protocol.md");
    let topics = doc
        .split("\n## 2. Topics")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/protocol.md has its section 2. Topics");
    let listed: std::collections::BTreeSet<&str> = topics
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split_once('`'))
        .map(|(leaf, _)| leaf)
        .collect();
    let kinds: std::collections::BTreeSet<&str> = Uplink::ALL
        .iter()
        .map(|u| u.name())
        .chain(Downlink::ALL.iter().map(|d| d.name()))
        .collect();
    assert_eq!(listed, kinds, "the topic table of docs/protocol.md");
}

#[test]
fn no_new_device_may_take_a_name_the_backend_logs_in_with() {
    for reserved in ["vakt-ingest", "vakt-1", "vakt-backend", "VAKT-1", "Vakt-x"] {
        assert_eq!(
            new_device_id(reserved, &[]),
            Err(ProtocolError::ReservedDeviceId),
            "{reserved}"
        );
    }
    // Whatever this instance's own identities are, also outside the prefix.
    assert_eq!(
        new_device_id("ingest-7", &["ingest-7", "broker-user"]),
        Err(ProtocolError::ReservedDeviceId)
    );
    assert_eq!(
        new_device_id("Broker-User", &["ingest-7", "broker-user"]),
        Err(ProtocolError::ReservedDeviceId)
    );
    assert_eq!(new_device_id("a b", &[]), Err(ProtocolError::BadDeviceId));
    for fine in ["dev-001", "demo-alarm-1", "vakt", "vaktx-1", "my-vakt-1"] {
        assert!(new_device_id(fine, &["ingest-7"]).is_ok(), "{fine}");
    }
}

#[test]
fn the_mqtt_password_is_the_hmac_of_a_fixed_context_under_the_key_and_not_the_key() {
    // The known answer a device maker checks against (the same vector is in firmware-sim):
    // printf 'vakt/v1/mqtt-password' | openssl dgst -sha256 -mac HMAC \
    //   -macopt hexkey:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
    let key =
        DeviceKey::from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
            .unwrap();
    assert_eq!(
        key.mqtt_password(),
        "2724c5f4aead20e0d1c1448982b98b43c27ee94c6857994869791b1b2c4101e3"
    );
    assert_ne!(key.mqtt_password(), key.to_hex());
    assert_ne!(
        DeviceKey::from_hex(&"0f".repeat(32))
            .unwrap()
            .mqtt_password(),
        key.mqtt_password()
    );
}
