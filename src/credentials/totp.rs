//! Second factor: time-based one-time codes (RFC 6238, HMAC-SHA1, 6 digits, 30 s), the kind
//! every authenticator app reads from an `otpauth://` URI.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

const STEP_S: i64 = 30;
const DIGITS: u32 = 6;

/// A fresh 160-bit secret, base32 as authenticator apps want it.
pub fn new_secret() -> String {
    base32(&crate::keys::os_random::<20>())
}

/// The URI an authenticator app scans or imports.
pub fn uri(username: &str, secret: &str) -> String {
    let label: String = username
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("otpauth://totp/vakt:{label}?secret={secret}&issuer=vakt&algorithm=SHA1&digits={DIGITS}&period={STEP_S}")
}

/// The code for a time step.
pub fn code_at(secret: &str, step: i64) -> Option<String> {
    let key = unbase32(secret)?;
    let mut mac = Hmac::<Sha1>::new_from_slice(&key).ok()?;
    mac.update(&(step as u64).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = (h[19] & 0x0f) as usize;
    let bin = u32::from_be_bytes([
        h[offset] & 0x7f,
        h[offset + 1],
        h[offset + 2],
        h[offset + 3],
    ]);
    Some(format!(
        "{:0width$}",
        bin % 10u32.pow(DIGITS),
        width = DIGITS as usize
    ))
}

/// The time step a code matches, allowing one step of clock drift either way.
pub fn matching_step(secret: &str, code: &str, unix_s: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = unix_s / STEP_S;
    (now - 1..=now + 1).find(|step| {
        code_at(secret, *step).is_some_and(|c| constant_eq(c.as_bytes(), code.as_bytes()))
    })
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for &b in bytes {
        buffer = (buffer << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            out.push(ALPHABET[((buffer >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn unbase32(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for c in s.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|&a| a == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 appendix B, SHA1 secret "12345678901234567890", 8 digits there; the last six
    // digits of its codes are the 6-digit codes.
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn codes_match_the_rfc_6238_test_vectors() {
        assert_eq!(code_at(RFC_SECRET, 59 / 30).unwrap(), "287082");
        assert_eq!(code_at(RFC_SECRET, 1111111109 / 30).unwrap(), "081804");
        assert_eq!(code_at(RFC_SECRET, 2000000000 / 30).unwrap(), "279037");
    }

    #[test]
    fn a_code_from_the_step_before_or_after_is_accepted_and_older_ones_are_not() {
        let now = 1_800_000_000;
        let previous = code_at(RFC_SECRET, now / 30 - 1).unwrap();
        assert_eq!(
            matching_step(RFC_SECRET, &previous, now),
            Some(now / 30 - 1)
        );
        let old = code_at(RFC_SECRET, now / 30 - 2).unwrap();
        assert_eq!(matching_step(RFC_SECRET, &old, now), None);
        assert_eq!(matching_step(RFC_SECRET, "12345", now), None);
        assert_eq!(matching_step(RFC_SECRET, "abcdef", now), None);
    }

    #[test]
    fn secrets_round_trip_through_base32_and_make_a_uri() {
        let s = new_secret();
        assert_eq!(s.len(), 32);
        assert_eq!(unbase32(&s).unwrap().len(), 20);
        assert!(uri("anna", &s).starts_with("otpauth://totp/vakt:anna?secret="));
    }
}
