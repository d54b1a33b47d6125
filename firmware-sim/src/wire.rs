//! Just enough of MQTT 3.1.1 on the wire for the load modes: CONNECT, PUBLISH at QoS 1,
//! SUBSCRIBE, PUBACK and DISCONNECT out; CONNACK, SUBACK, PUBLISH and PUBACK in.
//!
//! The load modes measure the broker and the backend, not an MQTT client library: every
//! publish is encoded before the clock starts and a connection is a socket with a window,
//! so the generator spends its share of the machine's two cores on writing bytes.

/// MQTT protocol level 4 (3.1.1).
const LEVEL: u8 = 4;

const CONNECT: u8 = 0x10;
const CONNACK: u8 = 0x20;
const PUBLISH: u8 = 0x30;
const PUBACK: u8 = 0x40;
const SUBSCRIBE: u8 = 0x82;
const SUBACK: u8 = 0x90;
const DISCONNECT: [u8; 2] = [0xE0, 0];

/// A packet type and its body (the bytes after the remaining length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming<'a> {
    /// The return code; 0 is accepted.
    ConnAck(u8),
    /// Return codes per filter; 0x80 is a refusal.
    SubAck(&'a [u8]),
    /// QoS, packet id (`None` at QoS 0) and whether the broker marked it a redelivery.
    Publish {
        qos: u8,
        pkid: Option<u16>,
        dup: bool,
    },
    PubAck(u16),
    Other(u8),
}

fn remaining_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(first);
    remaining_length(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// CONNECT with a username and password; `keep_alive` in seconds.
pub(crate) fn connect(
    client_id: &str,
    username: &str,
    password: &str,
    clean: bool,
    keep_alive: u16,
) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    body.push(LEVEL);
    body.push(0x80 | 0x40 | if clean { 0x02 } else { 0 });
    body.extend_from_slice(&keep_alive.to_be_bytes());
    string(&mut body, client_id.as_bytes());
    string(&mut body, username.as_bytes());
    string(&mut body, password.as_bytes());
    packet(CONNECT, &body)
}

/// PUBLISH at QoS 1, not retained.
pub(crate) fn publish_qos1(topic: &str, pkid: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 4);
    string(&mut body, topic.as_bytes());
    body.extend_from_slice(&pkid.to_be_bytes());
    body.extend_from_slice(payload);
    packet(PUBLISH | 0x02, &body)
}

/// SUBSCRIBE to one filter at QoS 1.
pub(crate) fn subscribe_qos1(pkid: u16, filter: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&pkid.to_be_bytes());
    string(&mut body, filter.as_bytes());
    body.push(1);
    packet(SUBSCRIBE, &body)
}

pub(crate) fn puback(out: &mut Vec<u8>, pkid: u16) {
    out.extend_from_slice(&[PUBACK, 2]);
    out.extend_from_slice(&pkid.to_be_bytes());
}

pub(crate) fn disconnect() -> [u8; 2] {
    DISCONNECT
}

/// The first whole packet in `buf`: what it is and its length in bytes; `Ok(None)` until
/// enough has arrived.
pub(crate) fn next_packet(buf: &[u8]) -> Result<Option<(Incoming<'_>, usize)>, String> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut len = 0usize;
    let mut header = 1;
    loop {
        let Some(&byte) = buf.get(header) else {
            return Ok(None);
        };
        len |= usize::from(byte & 0x7F) << (7 * (header - 1));
        header += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if header > 4 {
            return Err("remaining length longer than 4 bytes".into());
        }
    }
    let Some(body) = buf.get(header..header + len) else {
        return Ok(None);
    };
    let u16_at = |at: usize| -> Result<u16, String> {
        body.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| format!("packet 0x{first:02x} too short"))
    };
    let incoming = match first & 0xF0 {
        CONNACK => Incoming::ConnAck(*body.get(1).ok_or("CONNACK too short")?),
        SUBACK => Incoming::SubAck(body.get(2..).ok_or("SUBACK too short")?),
        PUBACK => Incoming::PubAck(u16_at(0)?),
        PUBLISH => {
            let qos = (first >> 1) & 0x03;
            let topic_len = usize::from(u16_at(0)?);
            let pkid = (qos > 0).then(|| u16_at(2 + topic_len)).transpose()?;
            Incoming::Publish {
                qos,
                pkid,
                dup: first & 0x08 != 0,
            }
        }
        other => Incoming::Other(other),
    };
    Ok(Some((incoming, header + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_reads_back_with_its_qos_and_packet_id() {
        let payload = vec![b'x'; 300];
        let bytes = publish_qos1("vakt/v1/dev/dev-001/hb", 4711, &payload);
        // 300 bytes and more need a two-byte remaining length.
        assert_eq!(bytes[0], 0x32);
        let (packet, len) = next_packet(&bytes).unwrap().unwrap();
        assert_eq!(
            packet,
            Incoming::Publish {
                qos: 1,
                pkid: Some(4711),
                dup: false
            }
        );
        assert_eq!(len, bytes.len());
        assert_eq!(next_packet(&bytes[..bytes.len() - 1]).unwrap(), None);
    }

    #[test]
    fn pubacks_arrive_back_to_back_in_one_buffer() {
        let mut buf = Vec::new();
        puback(&mut buf, 1);
        puback(&mut buf, 65535);
        let (first, len) = next_packet(&buf).unwrap().unwrap();
        assert_eq!((first, len), (Incoming::PubAck(1), 4));
        let (second, _) = next_packet(&buf[len..]).unwrap().unwrap();
        assert_eq!(second, Incoming::PubAck(65535));
    }

    #[test]
    fn a_connect_carries_the_login_in_the_order_mqtt_3_1_1_gives() {
        let bytes = connect("dev-001", "dev-001", "pw", true, 60);
        let mut expected = vec![0x10, 32, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 60];
        expected.extend_from_slice(b"\0\x07dev-001\0\x07dev-001\0\x02pw");
        assert_eq!(bytes, expected);
    }
}
