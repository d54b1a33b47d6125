//! The browser console's files, built into the binary: no Node.js, no CDN.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::AppState;

/// The pages and their assets.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/console.js", get(script))
        .route("/i18n.js", get(i18n))
        .route("/console.css", get(style))
}

macro_rules! asset {
    ($fn:ident, $file:literal, $mime:literal) => {
        pub async fn $fn() -> impl IntoResponse {
            (
                [
                    (header::CONTENT_TYPE, $mime),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                include_str!(concat!("console/", $file)),
            )
        }
    };
}

asset!(index, "index.html", "text/html; charset=utf-8");
asset!(script, "console.js", "text/javascript; charset=utf-8");
asset!(i18n, "i18n.js", "text/javascript; charset=utf-8");
asset!(style, "console.css", "text/css; charset=utf-8");
