//! Who may connect: the router's ZAP decisions (ZeroMQ's authentication
//! protocol, RFC 27) and its connection limit, without I/O. The transport
//! feeds it connection events from socket monitors and the ZAP requests
//! libzmq makes for every new connection, and sends back its verdicts.
//!
//! With security off every endpoint uses the NULL mechanism and the gate only
//! counts connections. With security on every endpoint is a CURVE server and
//! a peer's public key must be on that endpoint's allowlist; admin keys are
//! the admin endpoint's allowlist, so admin commands (which the core accepts
//! only there) come only from admin keys. Allowlist files are re-read when
//! they change, so keys are added and revoked without a restart; a revoked
//! key's open connections stay until they close.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use emq_proto::curve::{Allowlist, KeyPair, PublicKey};
use log::{error, info, warn};

use crate::core::Endpoint;
use crate::HashSet;

/// The ZAP domain each endpoint's socket announces.
pub fn domain(ep: Endpoint) -> &'static str {
    match ep {
        Endpoint::Frontend => "frontend",
        Endpoint::Backend => "backend",
        Endpoint::Admin => "admin",
    }
}

fn endpoint_of(domain: &str) -> Option<Endpoint> {
    match domain {
        "frontend" => Some(Endpoint::Frontend),
        "backend" => Some(Endpoint::Backend),
        "admin" => Some(Endpoint::Admin),
        _ => None,
    }
}

fn index(ep: Endpoint) -> usize {
    match ep {
        Endpoint::Frontend => 0,
        Endpoint::Backend => 1,
        Endpoint::Admin => 2,
    }
}

/// CURVE settings: the router's key pair and one allowlist file per endpoint.
#[derive(Debug, Clone)]
pub struct Security {
    pub key: KeyPair,
    pub clients: PathBuf,
    pub jobmanagers: PathBuf,
    pub admins: PathBuf,
}

/// A ZAP status: "200" lets the connection through; "400" (not allowed) and
/// "500" (the router is at its connection limit) end it, and the peer's
/// libzmq reports the code as a failed handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow { user_id: String },
    Deny { code: &'static str, reason: String },
}

impl Verdict {
    pub fn code(&self) -> &'static str {
        match self {
            Verdict::Allow { .. } => "200",
            Verdict::Deny { code, .. } => code,
        }
    }
}

struct AllowFile {
    path: PathBuf,
    list: Allowlist,
    /// Modification time and size when last read.
    stamp: Option<(SystemTime, u64)>,
}

impl AllowFile {
    fn new(path: PathBuf) -> AllowFile {
        let mut file = AllowFile {
            path,
            list: Allowlist::default(),
            stamp: None,
        };
        file.refresh();
        file
    }

    /// Re-read the file if it changed. A file that fails to parse keeps the
    /// previous list (a typo must not open or close the door).
    fn refresh(&mut self) {
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        if stamp.is_some() && stamp == self.stamp {
            return;
        }
        match Allowlist::load(&self.path) {
            Ok(list) => {
                if stamp.is_some() || self.stamp.is_some() {
                    info!("allowlist {}: {} keys", self.path.display(), list.len());
                }
                self.list = list;
                self.stamp = stamp;
            }
            Err(e) => error!("allowlist not reloaded, keeping the previous one: {e}"),
        }
    }
}

/// Denials logged at most once per this interval per endpoint; the rest are
/// counted into the next line (a refused peer reconnects every 100 ms).
const LOG_EVERY: Duration = Duration::from_secs(1);

struct DenialLog {
    last: Option<Instant>,
    suppressed: u64,
}

pub struct Gate {
    allow: Option<[AllowFile; 3]>,
    max_connections: usize,
    /// Open connections per endpoint, by file descriptor.
    open: [HashSet<i32>; 3],
    denials: [DenialLog; 3],
}

impl Gate {
    pub fn new(security: Option<&Security>, max_connections: usize) -> Gate {
        let allow = security.map(|s| {
            [
                AllowFile::new(s.clients.clone()),
                AllowFile::new(s.jobmanagers.clone()),
                AllowFile::new(s.admins.clone()),
            ]
        });
        Gate {
            allow,
            max_connections,
            open: Default::default(),
            denials: std::array::from_fn(|_| DenialLog {
                last: None,
                suppressed: 0,
            }),
        }
    }

    pub fn connection_opened(&mut self, ep: Endpoint, fd: i32) {
        self.open[index(ep)].insert(fd);
    }

    pub fn connection_closed(&mut self, ep: Endpoint, fd: i32) {
        self.open[index(ep)].remove(&fd);
    }

    pub fn connections(&self, ep: Endpoint) -> usize {
        self.open[index(ep)].len()
    }

    /// Decide one ZAP request. `credentials` is the mechanism's: for CURVE,
    /// the client's 32-byte public key.
    pub fn authorize(
        &mut self,
        now: Instant,
        domain: &str,
        address: &str,
        mechanism: &str,
        credentials: &[u8],
    ) -> Verdict {
        let verdict = self.decide(domain, mechanism, credentials);
        if let Verdict::Deny { reason, .. } = &verdict {
            let ep = endpoint_of(domain).unwrap_or(Endpoint::Admin);
            let log = &mut self.denials[index(ep)];
            if log.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
                log.suppressed += 1;
            } else {
                let more = match log.suppressed {
                    0 => String::new(),
                    n => format!(" ({n} more refused since the last report)"),
                };
                warn!("refused a connection from {address} on {domain}: {reason}{more}");
                log.last = Some(now);
                log.suppressed = 0;
            }
        }
        verdict
    }

    fn decide(&mut self, domain: &str, mechanism: &str, credentials: &[u8]) -> Verdict {
        let deny = |code, reason: String| Verdict::Deny { code, reason };
        let Some(ep) = endpoint_of(domain) else {
            return deny("400", format!("unknown ZAP domain {domain:?}"));
        };
        // The connection asking is already counted among the open ones.
        let open = self.connections(ep);
        if open > self.max_connections {
            return deny(
                "500",
                format!(
                    "too many connections ({} open, limit {})",
                    open - 1,
                    self.max_connections
                ),
            );
        }
        let Some(allow) = self.allow.as_mut() else {
            return Verdict::Allow { user_id: String::new() };
        };
        if mechanism != "CURVE" {
            return deny("400", format!("mechanism {mechanism} where CURVE is required"));
        }
        let Some(key) = PublicKey::from_bytes(credentials) else {
            return deny("400", "malformed CURVE credentials".into());
        };
        let file = &mut allow[index(ep)];
        file.refresh();
        match file.list.name_of(&key) {
            Some(name) => Verdict::Allow {
                user_id: if name.is_empty() { key.z85() } else { name.to_string() },
            },
            None => deny("400", format!("key {key} is not on {}", file.path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("emq-gate-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn without_security_only_the_connection_limit_applies() {
        let now = Instant::now();
        let mut gate = Gate::new(None, 2);
        gate.connection_opened(Endpoint::Frontend, 10);
        gate.connection_opened(Endpoint::Frontend, 11);
        assert_eq!(gate.authorize(now, "frontend", "127.0.0.1", "NULL", b"").code(), "200");
        gate.connection_opened(Endpoint::Frontend, 12);
        let v = gate.authorize(now, "frontend", "127.0.0.1", "NULL", b"");
        assert_eq!(v.code(), "500", "{v:?}");
        // Other endpoints have their own count.
        gate.connection_opened(Endpoint::Admin, 13);
        assert_eq!(gate.authorize(now, "admin", "127.0.0.1", "NULL", b"").code(), "200");
        gate.connection_closed(Endpoint::Frontend, 10);
        assert_eq!(gate.authorize(now, "frontend", "127.0.0.1", "NULL", b"").code(), "200");
        assert_eq!(gate.authorize(now, "elsewhere", "127.0.0.1", "NULL", b"").code(), "400");
    }

    #[test]
    fn curve_keys_are_checked_per_endpoint_and_reloaded() {
        let dir = scratch("keys");
        let security = Security {
            key: KeyPair::generate().unwrap(),
            clients: dir.join("clients.allow"),
            jobmanagers: dir.join("jobmanagers.allow"),
            admins: dir.join("admins.allow"),
        };
        let client = KeyPair::generate().unwrap().public;
        let mut list = Allowlist::default();
        list.add(client, "web-1");
        list.save(&security.clients).unwrap();

        let now = Instant::now();
        let mut gate = Gate::new(Some(&security), 100);
        let v = gate.authorize(now, "frontend", "127.0.0.1", "CURVE", &client.0);
        assert_eq!(
            v,
            Verdict::Allow {
                user_id: "web-1".into()
            }
        );
        // A client key is not an admin or jobmanager key.
        assert_eq!(
            gate.authorize(now, "admin", "127.0.0.1", "CURVE", &client.0).code(),
            "400"
        );
        assert_eq!(
            gate.authorize(now, "backend", "127.0.0.1", "CURVE", &client.0).code(),
            "400"
        );
        assert_eq!(gate.authorize(now, "frontend", "127.0.0.1", "NULL", b"").code(), "400");
        assert_eq!(
            gate.authorize(now, "frontend", "127.0.0.1", "CURVE", b"short").code(),
            "400"
        );

        // Revoked: the file changes (its size does), the next handshake sees it.
        let mut list = Allowlist::default();
        list.add(KeyPair::generate().unwrap().public, "someone-else-entirely");
        list.save(&security.clients).unwrap();
        assert_eq!(
            gate.authorize(now, "frontend", "127.0.0.1", "CURVE", &client.0).code(),
            "400"
        );
        // A broken file keeps the previous list.
        std::fs::write(&security.clients, "garbage\n").unwrap();
        assert_eq!(
            gate.authorize(now, "frontend", "127.0.0.1", "CURVE", &client.0).code(),
            "400"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
