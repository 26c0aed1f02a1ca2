//! `host:`, `tags:` and `cluster:`: where this daemon stands among the
//! daemons sharing one PostgreSQL store (DESIGN §10), and a job's
//! `hosts:` and `tags:`, which of them may run it.

use std::time::Duration;

use serde::Serialize;

use super::check::Check;
use super::node::Node;

/// The variable that names the host when the jobs file does not.
pub const HOST_VARIABLE: &str = "OVERNIGHT_HOST";

/// This daemon among the others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cluster {
    /// Its name (`host:`, else `$OVERNIGHT_HOST`, else the machine's).
    pub host: String,
    /// What it offers (`tags: [gpu]`), for jobs' `tags`.
    pub tags: Vec<String>,
    /// How often it says it is alive.
    #[serde(serialize_with = "super::duration")]
    pub heartbeat: Duration,
    /// How long a host may be silent before the others declare it dead.
    #[serde(serialize_with = "super::duration")]
    pub host_timeout: Duration,
    /// Where the other hosts reach its API (`cluster.api:
    /// http://batch1.internal:7411`); unset, see [`Cluster::api_url`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
}

impl Cluster {
    /// Where the other hosts reach this host's API, which listens on
    /// `listen` (with TLS when `tls`): `cluster.api`, else the `listen`
    /// address, else, for any address (`0.0.0.0`), the machine's name with
    /// the port.
    pub fn api_url(&self, listen: std::net::SocketAddr, tls: bool) -> String {
        if let Some(api) = &self.api {
            return api.clone();
        }
        let scheme = if tls { "https" } else { "http" };
        if listen.ip().is_unspecified() {
            format!(
                "{scheme}://{}:{}",
                crate::process::hostname(),
                listen.port()
            )
        } else {
            format!("{scheme}://{listen}")
        }
    }
}

impl Default for Cluster {
    fn default() -> Cluster {
        Cluster {
            host: default_host(),
            tags: Vec::new(),
            heartbeat: Duration::from_secs(2),
            host_timeout: Duration::from_secs(15),
            api: None,
        }
    }
}

/// `$OVERNIGHT_HOST`, else the machine's name.
fn default_host() -> String {
    std::env::var(HOST_VARIABLE)
        .ok()
        .filter(|h| super::validate::valid_name(h))
        .unwrap_or_else(crate::process::hostname)
}

/// Which hosts may run a job; empty lists: any live host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// One of these hosts (`hosts: [db1, db2]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// A host with every one of these tags (`tags: [gpu]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Placement {
    /// Whether the host `cluster` describes may run it.
    pub fn admits(&self, cluster: &Cluster) -> bool {
        self.admits_host(&cluster.host, &cluster.tags)
    }

    /// Whether host `name`, with `tags`, may run it.
    pub fn admits_host(&self, name: &str, tags: &[String]) -> bool {
        (self.hosts.is_empty() || self.hosts.iter().any(|h| h == name))
            && self.tags.iter().all(|t| tags.contains(t))
    }

    /// The hosts both it and `other` admit: the hosts both name (either's
    /// when the other names none), with the tags of both; `None` when
    /// they name hosts and none in common.
    pub fn within(&self, other: &Placement) -> Option<Placement> {
        let hosts = match (self.hosts.is_empty(), other.hosts.is_empty()) {
            (true, _) => other.hosts.clone(),
            (_, true) => self.hosts.clone(),
            _ => {
                let common: Vec<String> = self
                    .hosts
                    .iter()
                    .filter(|h| other.hosts.contains(h))
                    .cloned()
                    .collect();
                if common.is_empty() {
                    return None;
                }
                common
            }
        };
        let mut tags = self.tags.clone();
        tags.extend(
            other
                .tags
                .iter()
                .filter(|t| !self.tags.contains(t))
                .cloned(),
        );
        Some(Placement { hosts, tags })
    }

    /// "hosts db1, db2; tags gpu", for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.hosts.is_empty() {
            parts.push(format!("hosts {}", self.hosts.join(", ")));
        }
        if !self.tags.is_empty() {
            parts.push(format!("tags {}", self.tags.join(", ")));
        }
        match parts.is_empty() {
            true => "any host".into(),
            false => parts.join("; "),
        }
    }
}

impl Check<'_> {
    /// `host: db1`.
    pub(super) fn host(&mut self, node: &Node) -> Option<String> {
        let name = self.string(node, "`host`")?;
        self.name_like(node, &name, "`host`").then_some(name)
    }

    /// A list of host names or tags (`hosts:`, `tags:`).
    pub(super) fn names(&mut self, node: &Node, what: &str) -> Vec<String> {
        self.list_of(node, what, |check, item| {
            let name = check.string(item, what)?;
            check.name_like(item, &name, what).then_some(name)
        })
    }

    fn name_like(&mut self, node: &Node, name: &str, what: &str) -> bool {
        let ok = super::validate::valid_name(name);
        if !ok {
            self.problem(
                node.pos,
                format!("bad name `{name}` in {what}: use only letters, digits, `.`, `_` and `-`"),
            );
        }
        ok
    }

    /// `cluster: {heartbeat: 2s, host_timeout: 15s}`.
    /// `cluster.api`: an `http://` or `https://` address with a host and
    /// a port, nothing after them; without its last `/`.
    fn api_url(&mut self, node: &Node) -> Option<String> {
        let text = self.string(node, "`cluster.api`")?;
        let url = reqwest::Url::parse(&text).ok().filter(|url| {
            matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some()
                && url.path() == "/"
                && url.query().is_none()
                && url.username().is_empty()
        });
        if url.is_none() {
            self.problem(
                node.pos,
                format!(
                    "`cluster.api` `{text}` is not where an API answers: give `http://HOST:PORT` (or `https://`), as the other hosts reach this one's `listen`"
                ),
            );
        }
        url.map(|_| text.trim_end_matches('/').to_string())
    }

    pub(super) fn cluster(&mut self, node: &Node, cluster: &mut Cluster) {
        let keys = ["heartbeat", "host_timeout", "api"];
        for (key, value) in self.mapping(node, "`cluster`", &keys) {
            if key == "api" {
                cluster.api = self.api_url(value);
                continue;
            }
            let Some(d) = self.duration(value, &format!("`cluster.{key}`")) else {
                continue;
            };
            match key {
                "heartbeat" => cluster.heartbeat = d,
                _ => cluster.host_timeout = d,
            }
        }
        // The fence ends the jobs holding cluster locks after half the
        // timeout without a heartbeat (crate::fence): a host must be able
        // to miss one and not be fenced, nor declared dead.
        if cluster.heartbeat.is_zero() || cluster.heartbeat * 4 > cluster.host_timeout {
            self.problem(
                node.pos,
                format!(
                    "`cluster.heartbeat` ({}) must be above zero and at most a quarter of `cluster.host_timeout` ({}), so that one late heartbeat neither gets the host's locked jobs ended nor the host declared dead",
                    humantime::format_duration(cluster.heartbeat),
                    humantime::format_duration(cluster.host_timeout)
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placement_admits_the_hosts_it_names_with_every_tag() {
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let anywhere = Placement::default();
        assert!(anywhere.admits_host("a", &[]));
        let pinned = Placement {
            hosts: tags(&["db1", "db2"]),
            tags: tags(&["gpu"]),
        };
        assert!(pinned.admits_host("db2", &tags(&["gpu", "ssd"])));
        assert!(!pinned.admits_host("db2", &tags(&["ssd"])));
        assert!(!pinned.admits_host("web", &tags(&["gpu"])));
        assert_eq!(pinned.describe(), "hosts db1, db2; tags gpu");
    }

    #[test]
    fn placements_meet_on_the_hosts_both_admit() {
        let names = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let at = |hosts: &[&str], tags: &[&str]| Placement {
            hosts: names(hosts),
            tags: names(tags),
        };
        let anywhere = Placement::default();
        assert_eq!(anywhere.within(&at(&["b"], &[])), Some(at(&["b"], &[])));
        assert_eq!(
            at(&["a", "b"], &["gpu"]).within(&anywhere),
            Some(at(&["a", "b"], &["gpu"]))
        );
        assert_eq!(
            at(&["a", "b"], &["gpu"]).within(&at(&["b", "c"], &["ssd", "gpu"])),
            Some(at(&["b"], &["gpu", "ssd"]))
        );
        assert_eq!(at(&["a"], &[]).within(&at(&["b"], &[])), None);
    }
}
