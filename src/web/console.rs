//! The browser pages, built into the binary: the duty-officer console at `/` and the
//! coordinators' pages at `/admin`. Plain files, no build step, no Node.js, no CDN.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::AppState;

/// The pages and their assets. Modules shared by both pages (`common.js`, `map.js`,
/// `i18n.js`, `coords.js`, `common.css`) are served once, from the site root.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/console.js", get(script))
        .route("/console.css", get(style))
        .route("/common.js", get(common_script))
        .route("/common.css", get(common_style))
        .route("/map.js", get(map_script))
        .route("/place.js", get(place_script))
        .route("/watch.js", get(watch_script))
        .route("/i18n.js", get(i18n))
        .route("/coords.js", get(coords_script))
        .route("/admin", get(admin_index))
        .route("/admin.js", get(admin_script))
        .route("/admin.css", get(admin_style))
        .route("/zone-editor.js", get(zone_editor_script))
}

// `no-cache` makes the browser revalidate, so a new binary's pages are used at once.
macro_rules! asset {
    ($fn:ident, $file:literal, $mime:expr) => {
        pub async fn $fn() -> impl IntoResponse {
            (
                [
                    (header::CONTENT_TYPE, $mime),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                include_str!($file),
            )
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

asset!(index, "console/index.html", HTML);
asset!(script, "console/console.js", JS);
asset!(style, "console/console.css", CSS);
asset!(common_script, "console/common.js", JS);
asset!(common_style, "console/common.css", CSS);
asset!(map_script, "console/map.js", JS);
asset!(place_script, "console/place.js", JS);
asset!(watch_script, "console/watch.js", JS);
asset!(i18n, "console/i18n.js", JS);
asset!(coords_script, "console/coords.js", JS);
asset!(admin_index, "admin/index.html", HTML);
asset!(admin_script, "admin/admin.js", JS);
asset!(admin_style, "admin/admin.css", CSS);
asset!(zone_editor_script, "admin/zone-editor.js", JS);
