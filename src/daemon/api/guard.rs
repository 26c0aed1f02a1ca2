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
    /// Known by a browser's session cookie, not a bearer token.
    pub by_cookie: bool,
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
        let id = crate::state::random_hex(32)?;
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
    /// The name of the token `given` is, if it is one. Every token is
    /// compared, each in a time that tells nothing of where it differs.
    pub fn token_name(&self, given: &str) -> Option<String> {
        let config = self.shared.config();
        let mut found = None;
        let named = config
            .api
            .tokens
            .iter()
            .filter_map(|t| Some((t.name.as_str(), t.value.as_deref()?)));
        for (name, token) in [(LOCAL, self.shared.token.as_str())]
            .into_iter()
            .chain(named)
        {
            if same_secret(given, token) && found.is_none() {
                found = Some(name.to_string());
            }
        }
        found
    }

    /// Whether `name` still names a token (a reload may have taken it).
    fn still_a_token(&self, name: &str) -> bool {
        name == LOCAL
            || self
                .shared
                .config()
                .api
                .tokens
                .iter()
                .any(|t| t.name == name && t.value.is_some())
    }

    /// Who `headers` say the caller is: a bearer token, else a session
    /// whose token is still one.
    fn caller(&self, headers: &HeaderMap) -> Caller {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Some(given) = authorization {
            let token = given
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim());
            return Caller {
                name: token.and_then(|t| self.token_name(t)),
                by_cookie: false,
            };
        }
        let name = session_id(headers)
            .and_then(|id| self.sessions.name(id))
            .filter(|name| self.still_a_token(name));
        Caller {
            by_cookie: name.is_some(),
            name,
        }
    }

    /// Whether `host` is one of `api.hosts`: a name a proxy in front
    /// answers to, so the request may come from anywhere.
    fn proxied(&self, host: &str) -> bool {
        let Some((name, _)) = split_host(host) else {
            return false;
        };
        self.shared
            .config()
            .api
            .hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Whether `host` (a `Host` header) names this API: an address,
    /// `localhost`, the machine's name or the one of its `cluster.api`
    /// (the other hosts of a cluster call it so), or one of `api.hosts`,
    /// with at most a port after it.
    fn known_host(&self, host: &str) -> bool {
        let Some((name, _)) = split_host(host) else {
            return false;
        };
        name.eq_ignore_ascii_case("localhost")
            || name.parse::<std::net::IpAddr>().is_ok()
            || self.own_name(name)
            || self.proxied(host)
    }

    /// Whether `name` is the machine's name, or the host of this daemon's
    /// `cluster.api`: names no other site's page can be served under.
    fn own_name(&self, name: &str) -> bool {
        let api = self.shared.config().cluster.api.clone();
        let api_host = api
            .and_then(|url| reqwest::Url::parse(&url).ok())
            .and_then(|url| url.host_str().map(str::to_string));
        name.eq_ignore_ascii_case(&crate::process::hostname())
            || api_host.is_some_and(|h| h.eq_ignore_ascii_case(name))
    }
}

/// A `Host` header's name (an IPv6 address without its brackets) and
/// port, if it is `NAME`, `NAME:PORT` or `[V6]` with an optional `:PORT`.
fn split_host(host: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = match host.strip_prefix('[') {
        Some(v6) => {
            let (address, rest) = v6.split_once(']')?;
            address.parse::<std::net::Ipv6Addr>().ok()?;
            match rest {
                "" => (address, None),
                rest => (address, Some(rest.strip_prefix(':')?)),
            }
        }
        None => match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    let port = match port {
        Some(port) => Some(
            port.parse::<u16>()
                .ok()
                .filter(|_| port.bytes().all(|b| b.is_ascii_digit()))?,
        ),
        None => None,
    };
    let plain = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':';
    (!name.is_empty() && name.bytes().all(plain)).then_some((name, port))
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
    super::page::ASSETS.contains(&path)
}

/// The guard itself, as middleware.
pub async fn check(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts
        .next()
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // One `Host`, and an absolute URI (`GET http://…/`) naming the same.
    let authority = request.uri().authority().map(|a| a.as_str());
    if hosts.next().is_some() || authority.is_some_and(|a| a != host) || !guard.known_host(&host) {
        let why = format!(
            "refused: `Host: {host}` is not a name of this API; add it to `api.hosts` (or use the address, as http://127.0.0.1:PORT/)"
        );
        return ApiError::ForeignHost(why).into_response();
    }
    let caller = guard.caller(headers);
    // Reached through a proxy's name, the caller may be anywhere.
    let open_reads = guard.loopback && !guard.proxied(&host);
    if writes(request.method()) {
        let by_cookie =
            !headers.contains_key(header::AUTHORIZATION) && session_id(headers).is_some();
        if let Some(why) = foreign_origin(headers, &host, by_cookie) {
            return ApiError::Forbidden(why).into_response();
        }
        // The login checks the token it is given itself.
        if caller.name.is_none() && request.uri().path() != "/api/login" {
            return refused(headers).await;
        }
    } else if !open_reads && caller.name.is_none() && !page_asset(request.uri().path()) {
        return refused(headers).await;
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// A 401; after a pause when a token was shown and is wrong, so that
/// guessing goes slowly.
async fn refused(headers: &HeaderMap) -> Response {
    if headers.contains_key(header::AUTHORIZATION) {
        tokio::time::sleep(WRONG_TOKEN_PAUSE).await;
    }
    ApiError::Unauthorized.into_response()
}

/// How long a wrong token waits for its refusal.
pub const WRONG_TOKEN_PAUSE: std::time::Duration = std::time::Duration::from_millis(300);

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
            if !origin_host.eq_ignore_ascii_case(host) {
                Some(format!(
                    "refused: a request from `{origin}` may not change anything at `{host}`; behind a proxy, pass the browser's `Host` on (`proxy_set_header Host $host`)"
                ))
            } else {
                cross_site.then(|| "refused: the browser says this request comes from another site".to_string())
            }
        }
        None if cross_site || by_cookie => Some(
            "refused: a browser's request that changes state must come from this API's own page (no `Origin`)"
                .to_string(),
        ),
        None => None,
    }
}

/// Compares digests of the two, in a time that does not depend on where
/// they first differ (nor on their lengths): a caller cannot find a token
/// a byte at a time.
fn same_secret(given: &str, secret: &str) -> bool {
    let digest = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let (a, b) = (digest(given), digest(secret));
    a.as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |differ, (x, y)| differ | (x ^ y))
        == 0
}
