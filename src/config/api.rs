//! `api:`: who may use the daemon's API, and by which names it is reached
//! (DESIGN §9).
//!
//! ```yaml
//! listen: 0.0.0.0:7411
//! api:
//!   tokens: {ops: '${OPS_TOKEN}', deploy: '${DEPLOY_TOKEN}'}
//!   hosts: [batch.example.com]
//!   tls: {cert: /etc/overnight/cert.pem, key: /etc/overnight/key.pem}
//! ```
//!
//! Tokens are named, so that what an operator did is recorded under a
//! name; their values come from the daemon's environment, never from the
//! file. Beyond loopback the daemon starts only with a token and TLS
//! (or `insecure_http: true`, behind a proxy that speaks TLS).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::check::Check;
use super::node::Node;

/// The shortest token value the daemon accepts.
pub const MIN_TOKEN_LEN: usize = 16;

/// The `api:` block.
#[derive(Clone, Debug, Default)]
pub struct ApiSettings {
    /// The named tokens, in file order.
    pub tokens: Vec<NamedToken>,
    /// Names the API answers to besides its listen address (`Host:`).
    pub hosts: Vec<String>,
    /// The certificate and key it serves HTTPS with.
    pub tls: Option<Tls>,
    /// Plain HTTP beyond loopback, for a proxy that speaks TLS in front.
    pub insecure_http: bool,
}

/// A token and the name operator actions are recorded under.
#[derive(Clone)]
pub struct NamedToken {
    /// Its name (`ops`).
    pub name: String,
    /// The variable it is read from (`OPS_TOKEN`).
    pub var: String,
    /// Its value, when the variable is set.
    pub value: Option<String>,
}

impl fmt::Debug for NamedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedToken")
            .field("name", &self.name)
            .field("var", &self.var)
            .field("value", &self.value.as_ref().map(|_| "(hidden)"))
            .finish()
    }
}

/// PEM files for HTTPS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    /// The certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl ApiSettings {
    /// Why the daemon must not serve on `listen` with these settings, if
    /// it must not: beyond loopback, everything needs a token, and the
    /// token must not cross the network in clear.
    pub fn refusal(&self, listen: SocketAddr) -> Option<String> {
        if listen.ip().is_loopback() {
            return None;
        }
        if self.tokens.is_empty() {
            return Some(format!(
                "the API would listen on {listen}, beyond loopback, with no token: add `api: {{tokens: {{ops: '${{OPS_TOKEN}}'}}}}` (or listen on 127.0.0.1)"
            ));
        }
        if self.tls.is_none() && !self.insecure_http {
            return Some(format!(
                "the API would listen on {listen}, beyond loopback, in clear: add `api.tls: {{cert: FILE, key: FILE}}`, or `api.insecure_http: true` behind a proxy that speaks TLS"
            ));
        }
        None
    }

    /// Why the tokens cannot be used, if one cannot: its variable is
    /// unset, or its value too short to be a secret.
    pub fn unusable_token(&self) -> Option<String> {
        self.tokens.iter().find_map(|t| match &t.value {
            None => Some(format!(
                "API token `{}`: the variable `{}` is not set (or empty) in the daemon's environment",
                t.name, t.var
            )),
            Some(v) if v.chars().count() < MIN_TOKEN_LEN => Some(format!(
                "API token `{}`: `{}` holds {} characters; a token needs at least {MIN_TOKEN_LEN} (try `openssl rand -hex 32`)",
                t.name,
                t.var,
                v.chars().count()
            )),
            Some(_) => None,
        })
    }
}

impl Check<'_> {
    /// The `api:` block.
    pub(super) fn api(&mut self, node: &Node) -> ApiSettings {
        let mut api = ApiSettings::default();
        let known = ["tokens", "hosts", "tls", "insecure_http"];
        for (key, value) in self.mapping(node, "`api`", &known) {
            match key {
                "tokens" => api.tokens = self.tokens(value),
                "hosts" => {
                    api.hosts = self
                        .list_of(value, "`api.hosts`", |c, n| c.string(n, "a host name"))
                        .into_iter()
                        .map(|h| h.to_ascii_lowercase())
                        .collect()
                }
                "tls" => api.tls = self.tls(value),
                _ => {
                    api.insecure_http = self
                        .boolean(value, "`api.insecure_http`")
                        .unwrap_or_default()
                }
            }
        }
        api
    }

    fn tokens(&mut self, node: &Node) -> Vec<NamedToken> {
        let mut tokens = Vec::new();
        for (name, value) in self.string_map(node, "`api.tokens`") {
            let var = value
                .strip_prefix("${")
                .and_then(|v| v.strip_suffix('}'))
                .filter(|v| !v.is_empty() && !v.contains(['$', '{', '}']));
            let Some(var) = var else {
                self.problem(
                    node.pos,
                    format!("`api.tokens.{name}` must name a variable, like `'${{OPS_TOKEN}}'`: secrets are not written in the file"),
                );
                continue;
            };
            if !super::valid_name(&name) {
                self.problem(
                    node.pos,
                    format!("`api.tokens`: `{name}` is no name; use letters, digits, `-` and `_`"),
                );
                continue;
            }
            tokens.push(NamedToken {
                name,
                var: var.to_string(),
                value: std::env::var(var).ok().filter(|v| !v.is_empty()),
            });
        }
        tokens
    }

    fn tls(&mut self, node: &Node) -> Option<Tls> {
        let (mut cert, mut key) = (None, None);
        for (k, value) in self.mapping(node, "`api.tls`", &["cert", "key"]) {
            let path = self.string(value, &format!("`api.tls.{k}`")).map(|p| {
                let dir = self.file.parent().unwrap_or(std::path::Path::new(""));
                dir.join(p)
            });
            if let Some(Err(e)) = path.as_ref().map(std::fs::metadata) {
                let path = path
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string());
                self.problem(
                    value.pos,
                    format!("`api.tls.{k}`: cannot read `{path}`: {e}"),
                );
            }
            match k {
                "cert" => cert = path,
                _ => key = path,
            }
        }
        match (cert, key) {
            (Some(cert), Some(key)) => Some(Tls { cert, key }),
            _ => {
                self.problem(
                    node.pos,
                    "`api.tls` needs both `cert` and `key` (PEM files)",
                );
                None
            }
        }
    }
}
