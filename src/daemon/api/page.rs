//! The operator's web page (DESIGN §9): one HTML file, its script and its
//! style, embedded in the binary and served as they are — no build step,
//! nothing fetched from elsewhere. The script reads the same API as the
//! CLI, and follows the same live streams.
//!
//! Every answer forbids framing (a page elsewhere cannot put the Stop
//! button under a visitor's click) and allows scripts from here only.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::daemon::Shared;

const INDEX: &str = include_str!("../page/index.html");
const SCRIPT: &str = include_str!("../page/app.js");
const STYLE: &str = include_str!("../page/app.css");
const ICON: &str = include_str!("../page/favicon.svg");

/// What the page's answers allow: its own files, its own API, no frames.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The paths of the page's files: served to anyone, so that a browser
/// beyond loopback can show the login form.
pub const ASSETS: [&str; 4] = ["/", "/app.js", "/app.css", "/favicon.svg"];

/// The page's routes.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/favicon.svg",
            get(|| async { asset("image/svg+xml", ICON) }),
        )
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            // A new binary serves new files: the browser asks each time.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
