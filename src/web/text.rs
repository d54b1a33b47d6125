//! The one rule for text that comes in over HTTP: no control characters.
//!
//! A NUL cannot be stored by PostgreSQL at all (the request would end in a 500), and other
//! control characters have no business in a name, a reference or a note shown on a duty
//! officer's screen. The rule is applied where every request enters, not per field, so a
//! new field cannot forget it: to every string (and member name) of every JSON body before it
//! is decoded into its request type, and to the path and query of every request.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::error::ApiError;

/// Members that hold free text over several lines: there, and only there, a line break and a
/// tab are text too.
const MULTI_LINE: &[&str] = &["response_plan", "note", "description"];

/// The first control character in `text`, if any; `multi_line` allows `\n` and `\t`.
fn control_character(text: &str, multi_line: bool) -> Option<char> {
    text.chars()
        .find(|&c| c.is_control() && !(multi_line && (c == '\n' || c == '\t')))
}

/// `field: must not contain control characters (U+0000)`.
fn refusal(field: String, c: char) -> ApiError {
    ApiError::Invalid {
        field,
        detail: format!(
            "must not contain control characters (found U+{:04X})",
            c as u32
        ),
    }
}

/// Checks every string of a JSON body; the error names the field as serde would
/// (`relatives[0].name`).
pub fn check_json(value: &Value) -> Result<(), ApiError> {
    check_value(value, &mut String::new(), false)
}

fn check_value(value: &Value, path: &mut String, multi_line: bool) -> Result<(), ApiError> {
    match value {
        Value::String(s) => match control_character(s, multi_line) {
            Some(c) => Err(refusal(path.clone(), c)),
            None => Ok(()),
        },
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_value(item, path, multi_line)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(members) => {
            for (name, member) in members {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                if let Some(c) = control_character(name, false) {
                    path.push_str(&name.escape_default().to_string());
                    return Err(refusal(path.clone(), c));
                }
                path.push_str(name);
                check_value(member, path, MULTI_LINE.contains(&name.as_str()))?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// Refuses a request whose path or query, once percent-decoded, holds a control character:
/// path segments and query parameters reach the store as ids and filters.
pub async fn refuse_control_in_uri(req: Request, next: Next) -> Response {
    match check_uri(req.uri()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn check_uri(uri: &axum::http::Uri) -> Result<(), ApiError> {
    if let Some(c) = control_character(&percent_decoded(uri.path()), false) {
        return Err(ApiError::BadRequest {
            detail: format!(
                "path: must not contain control characters (found U+{:04X})",
                c as u32
            ),
            field: Some("path".into()),
        });
    }
    for pair in uri.query().unwrap_or("").split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decoded(name);
        let found = control_character(&name, false)
            .or_else(|| control_character(&percent_decoded(value), false));
        if let Some(c) = found {
            let field = name.escape_default().to_string();
            return Err(ApiError::BadRequest {
                detail: format!(
                    "{field}: must not contain control characters (found U+{:04X})",
                    c as u32
                ),
                field: Some(field),
            });
        }
    }
    Ok(())
}

/// `%XX` decoded; bytes that are not UTF-8 become U+FFFD (not a control character: the
/// extractors refuse them on their own).
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(e: ApiError) -> Option<String> {
        match e {
            ApiError::Invalid { field, .. } => Some(field),
            ApiError::BadRequest { field, .. } => field,
            _ => None,
        }
    }

    #[test]
    fn a_nul_anywhere_in_a_body_is_refused_naming_its_field() {
        let cases = [
            (json!({"name": "Anna\u{0}"}), "name"),
            (json!({"address": {"text": "x\u{1b}[2J"}}), "address.text"),
            (
                json!({"relatives": [{"name": "ok"}, {"name": "b\u{7f}"}]}),
                "relatives[1].name",
            ),
            (json!({"restrained": {"name": "M\nB"}}), "restrained.name"),
            (json!({"zones": [{"name": "Home\u{85}"}]}), "zones[0].name"),
            (json!({"note": "stop\u{0}"}), "note"),
        ];
        for (body, field) in cases {
            let e = check_json(&body).expect_err(&body.to_string());
            assert_eq!(field_of(e).as_deref(), Some(field), "{body}");
        }
    }

    #[test]
    fn line_breaks_and_tabs_are_text_only_in_multi_line_fields() {
        assert!(check_json(&json!({"response_plan": "Call 112.\n\tThen the patrol."})).is_ok());
        assert!(check_json(&json!({"note": "line one\nline two"})).is_ok());
        assert!(check_json(&json!({"restrained": {"description": "185 cm\ngrey jacket"}})).is_ok());
        assert!(check_json(&json!({"reference": "2026\n1"})).is_err());
        assert!(check_json(&json!({"note": "a\rb"})).is_err());
        assert!(check_json(&json!({"name": "Åsa Öberg-Lind, 🚨 \u{2028}"})).is_ok());
    }

    #[test]
    fn a_member_name_with_a_control_character_is_refused() {
        assert!(check_json(&json!({"na\u{0}me": "x"})).is_err());
    }

    #[test]
    fn a_percent_encoded_nul_in_the_path_or_query_is_refused() {
        let refused = |uri: &str| check_uri(&uri.parse().unwrap()).err().and_then(field_of);
        assert_eq!(refused("/api/persons/p_1%00"), Some("path".into()));
        assert_eq!(
            refused("/api/persons/p_1?reason=court%00order"),
            Some("reason".into())
        );
        assert_eq!(refused("/api/audit?user=%0a"), Some("user".into()));
        assert_eq!(refused("/api/persons/p_1?reason=court%20order%C3%A5"), None);
        assert_eq!(refused("/api/alerts?state=open,acknowledged"), None);
        assert_eq!(refused("/api/persons/%zz"), None);
    }
}
