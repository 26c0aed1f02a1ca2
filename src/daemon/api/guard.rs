//! Who may ask what of the API (DESIGN §9), checked once per request
//! before any handler runs:
//!
//! 1. `Host` must be an address, `localhost`, or a name in `api.hosts`:
//!    a page elsewhere that rebinds its own name to this machine sends
//!    that name, and is answered 421 before it can read anything.
//! 2. A request that changes state must come from this API's own page
//!    (`Origin` names the host asked) or from a script (no `Origin`,
//!    with a bearer token); anything else is 403.
//! 3. Writes always need a token; beyond loopback, so does reading. A
//!    script sends `Authorization: Bearer …`; the browser logs in once
//!    (`POST /api/login`) and holds a session cookie that is HttpOnly and
//!    SameSite=Strict, so no other site's page can send it. No token: 401.
//!
//! The caller's name — the token's in `api.tokens`, or `local` for the
//! daemon card's — goes to the handler, which records it with what it did.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::daemon::Shared;

/// The session cookie's name.
pub const COOKIE: &str = "overnight_session";

/// How long a browser's login lasts.
const SESSION_LIFE: Duration = Duration::from_secs(12 * 3600);

/// The name a request holding the daemon card's token acts under.
pub const LOCAL: &str = "local";

/// Who is asking: the name of the token shown, if one was.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    /// The token's name (`local` for the daemon card's).
    pub name: Option<String>,
}

impl Caller {
    /// The name actions are recorded under; a script with the card's
    /// token may say whose hands it is in (`who`).
    pub fn who(&self, said: Option<String>) -> Result<String, ApiError> {
        match self.name.as_deref() {
            Some(LOCAL) => Ok(said.unwrap_or_else(|| LOCAL.to_string())),
            Some(name) => Ok(name.to_string()),
            None => Err(ApiError::Unauthorized),
        }
    }
}

/// The browsers' logins: a random session id each, for the token name it
/// stands for. Kept in memory: a daemon's restart logs everyone out.
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, (String, Instant)>>,
}

impl Sessions {
    /// A new session for `name`; its id.
    pub fn open(&self, name: &str) -> std::io::Result<String> {
        let mut bytes = [0u8; 32];
        crate::state::random_bytes(&mut bytes)?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut open = self.open.lock().expect("sessions");
        let now = Instant::now();
        open.retain(|_, (_, since)| now.duration_since(*since) < SESSION_LIFE);
        open.insert(id.clone(), (name.to_string(), now));
        Ok(id)
    }

    /// The token name session `id` stands for, if it is open.
    fn name(&self, id: &str) -> Option<String> {
        let open = self.open.lock().expect("sessions");
        open.get(id)
            .filter(|(_, since)| since.elapsed() < SESSION_LIFE)
            .map(|(name, _)| name.clone())
    }

    /// Ends session `id`.
    pub fn close(&self, id: &str) {
        self.open.lock().expect("sessions").remove(id);
    }
}

/// What the guard needs besides the request.
#[derive(Clone)]
pub struct Guard {
    /// The daemon: its token and `api:` settings, read at each request
    /// (a reload changes them).
    pub shared: Arc<Shared>,
    /// The logins.
    pub sessions: Arc<Sessions>,
    /// Whether the API listens on loopback only.
    pub loopback: bool,
}

impl Guard {
    /// The name of the token `given` is, if it is one.
    pub fn token_name(&self, given: &str) -> Option<String> {
        if same_secret(given.as_bytes(), self.shared.token.as_bytes()) {
            return Some(LOCAL.to_string());
        }
        let config = self.shared.config();
        config
            .api
            .tokens
            .iter()
            .find(|t| {
                t.value
                    .as_deref()
                    .is_some_and(|v| same_secret(given.as_bytes(), v.as_bytes()))
            })
            .map(|t| t.name.clone())
    }

    /// Who `headers` say the caller is: a bearer token, else a session.
    fn caller(&self, headers: &HeaderMap) -> Caller {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let name = match bearer {
            Some(token) => self.token_name(token.trim()),
            None => session_id(headers).and_then(|id| self.sessions.name(id)),
        };
        Caller { name }
    }

    /// Whether `host` (a `Host` header) names this API: an address,
    /// `localhost`, or one of `api.hosts`.
    fn known_host(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            Some(v6) => {
                return v6
                    .split_once(']')
                    .is_some_and(|(a, _)| a.parse::<std::net::Ipv6Addr>().is_ok());
            }
            None => host.rsplit_once(':').map_or(host, |(name, _)| name),
        };
        name.eq_ignore_ascii_case("localhost")
            || name.parse::<std::net::Ipv4Addr>().is_ok()
            || self
                .shared
                .config()
                .api
                .hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name) || h.eq_ignore_ascii_case(host))
    }
}

/// The session id in a request's cookies.
pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Whether `method` changes state.
fn writes(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether a request on `path` reads what the page is made of (served to
/// anyone, so that a browser beyond loopback can show the login form).
fn page_asset(path: &str) -> bool {
    !path.starts_with("/api/") && path != "/metrics"
}

/// The guard itself, as middleware.
pub async fn check(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if !guard.known_host(&host) {
        let why = format!(
            "refused: `Host: {host}` is not a name of this API; add it to `api.hosts` (or use the address, as http://127.0.0.1:PORT/)"
        );
        return ApiError::ForeignHost(why).into_response();
    }
    let caller = guard.caller(headers);
    if writes(request.method()) {
        let by_cookie =
            !headers.contains_key(header::AUTHORIZATION) && session_id(headers).is_some();
        if let Some(why) = foreign_origin(headers, &host, by_cookie) {
            return ApiError::Forbidden(why).into_response();
        }
        // The login checks the token it is given itself.
        if caller.name.is_none() && request.uri().path() != "/api/login" {
            return ApiError::Unauthorized.into_response();
        }
    } else if !guard.loopback && caller.name.is_none() && !page_asset(request.uri().path()) {
        return ApiError::Unauthorized.into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Why a state-changing request is refused for where it comes from, if
/// it is: its `Origin` is not this API, or a browser sent it from another
/// site. A script sends no `Origin` and passes (its token is checked
/// next); a browser's session must say where it comes from.
fn foreign_origin(headers: &HeaderMap, host: &str, by_cookie: bool) -> Option<String> {
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site == "cross-site" || site == "same-site");
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match origin {
        Some(origin) => {
            let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
            (!origin_host.eq_ignore_ascii_case(host) || cross_site).then(|| {
                format!("refused: a request from `{origin}` may not change anything here")
            })
        }
        None if cross_site || by_cookie => Some(
            "refused: a browser's request that changes state must come from this API's own page (no `Origin`)"
                .to_string(),
        ),
        None => None,
    }
}

/// Compares in a time that does not depend on where the two first differ,
/// so a caller cannot find the token a byte at a time.
fn same_secret(given: &[u8], secret: &[u8]) -> bool {
    given.len() == secret.len()
        && given
            .iter()
            .zip(secret)
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
}
