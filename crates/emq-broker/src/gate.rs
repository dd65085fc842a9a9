//! Who may connect: the router's ZAP decisions (ZeroMQ's authentication
//! protocol, RFC 27) and its connection limit, without I/O. The transport
//! feeds it connection events from socket monitors, the allowlists (which it
//! re-reads when their files change) and the ZAP requests libzmq makes for
//! every new connection, and sends back its verdicts.
//!
//! With security off every endpoint uses the NULL mechanism and the gate only
//! counts connections. With security on every endpoint is a CURVE server and
//! a peer's public key must be on that endpoint's allowlist; admin keys are
//! the admin endpoint's allowlist, so admin commands (which the core accepts
//! only there) come only from admin keys. Keys are added and revoked without
//! a restart; a revoked key's open connections stay until they close.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use emq_net::curve::{Allowlist, KeyPair, PublicKey};
use emq_net::Throttle;
use log::warn;

use crate::core::Endpoint;
use crate::HashSet;

/// The ZAP domain each endpoint's socket announces.
pub(crate) fn domain(ep: Endpoint) -> &'static str {
    match ep {
        Endpoint::Frontend => "frontend",
        Endpoint::Backend => "backend",
        Endpoint::Admin => "admin",
    }
}

pub(crate) fn endpoint_of(domain: &str) -> Option<Endpoint> {
    match domain {
        "frontend" => Some(Endpoint::Frontend),
        "backend" => Some(Endpoint::Backend),
        // Event subscribers are admitted as admins (their keys, their
        // connection count).
        "admin" | "events" => Some(Endpoint::Admin),
        _ => None,
    }
}

pub(crate) fn index(ep: Endpoint) -> usize {
    match ep {
        Endpoint::Frontend => 0,
        Endpoint::Backend => 1,
        Endpoint::Admin => 2,
    }
}

/// CURVE settings: the router's key pair and one allowlist file per endpoint.
#[derive(Debug, Clone)]
pub struct Security {
    /// The router's key pair; peers need its public half.
    pub key: KeyPair,
    /// Keys allowed to submit jobs (frontend).
    pub clients: PathBuf,
    /// Keys allowed to serve jobs (backend).
    pub jobmanagers: PathBuf,
    /// Keys allowed to administer (admin endpoint).
    pub admins: PathBuf,
}

/// A ZAP status: "200" lets the connection through; "400" (not allowed) and
/// "500" (the router is at its connection limit) end it, and the peer's
/// libzmq reports the code as a failed handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow { user_id: String },
    Deny { code: &'static str, reason: String },
}

impl Verdict {
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Verdict::Allow { .. } => "200",
            Verdict::Deny { code, .. } => code,
        }
    }
}

/// Denials logged at most once per this interval per endpoint; the rest are
/// counted into the next line (a refused peer reconnects every 100 ms).
const LOG_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct Gate {
    /// With security on: each endpoint's allowlist, and where it came from
    /// (named in refusals).
    allow: Option<[(Allowlist, PathBuf); 3]>,
    max_connections: usize,
    /// Open connections per endpoint, by file descriptor.
    open: [HashSet<i32>; 3],
    denials: [Throttle; 3],
}

impl Gate {
    pub(crate) fn new(security: Option<&Security>, max_connections: usize) -> Gate {
        let allow = security.map(|s| {
            [
                (Allowlist::default(), s.clients.clone()),
                (Allowlist::default(), s.jobmanagers.clone()),
                (Allowlist::default(), s.admins.clone()),
            ]
        });
        Gate {
            allow,
            max_connections,
            open: Default::default(),
            denials: std::array::from_fn(|_| Throttle::new(LOG_EVERY)),
        }
    }

    /// The allowlist of `ep` from now on (security on; ignored otherwise).
    pub(crate) fn set_allowlist(&mut self, ep: Endpoint, list: Allowlist) {
        if let Some(allow) = self.allow.as_mut() {
            allow[index(ep)].0 = list;
        }
    }

    /// A connection to `ep` failed its handshake before admission was asked
    /// (`mismatch`: one side uses CURVE and the other does not): logged,
    /// at most once a second per endpoint.
    pub(crate) fn handshake_failed(&mut self, now: Instant, ep: Endpoint, mismatch: bool) {
        let why = match (mismatch, self.allow.is_some()) {
            (true, true) => "a peer without CURVE (it needs --server-key and --key)",
            (true, false) => "a peer with CURVE keys, but this router has security off",
            (false, true) => "a peer whose CURVE handshake failed (the wrong router public key?)",
            (false, false) => "a peer whose handshake failed",
        };
        if let Some(more) = self.denials[index(ep)].report(now) {
            warn!("refused a connection on {}: {why}{more}", domain(ep));
        }
    }

    pub(crate) fn connection_opened(&mut self, ep: Endpoint, fd: i32) {
        self.open[index(ep)].insert(fd);
    }

    pub(crate) fn connection_closed(&mut self, ep: Endpoint, fd: i32) {
        self.open[index(ep)].remove(&fd);
    }

    pub(crate) fn connections(&self, ep: Endpoint) -> usize {
        self.open[index(ep)].len()
    }

    /// Decide one ZAP request. `credentials` is the mechanism's: for CURVE,
    /// the client's 32-byte public key.
    pub(crate) fn authorize(
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
            if let Some(more) = self.denials[index(ep)].report(now) {
                warn!("refused a connection from {address} on {domain}: {reason}{more}");
            }
        }
        verdict
    }

    fn decide(&self, domain: &str, mechanism: &str, credentials: &[u8]) -> Verdict {
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
        let Some(allow) = self.allow.as_ref() else {
            return Verdict::Allow { user_id: String::new() };
        };
        if mechanism != "CURVE" {
            return deny("400", format!("mechanism {mechanism} where CURVE is required"));
        }
        let Some(key) = PublicKey::from_bytes(credentials) else {
            return deny("400", "malformed CURVE credentials".into());
        };
        let (list, path) = &allow[index(ep)];
        match list.name_of(&key) {
            Some(name) => Verdict::Allow {
                user_id: if name.is_empty() { key.z85() } else { name.to_string() },
            },
            None => deny("400", format!("key {key} is not on {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn curve_keys_are_checked_per_endpoint_and_replaced() {
        let security = Security {
            key: emq_net::curve::generate().unwrap(),
            clients: "keys/clients.allow".into(),
            jobmanagers: "keys/jobmanagers.allow".into(),
            admins: "keys/admins.allow".into(),
        };
        let client = PublicKey([1; 32]);
        let mut list = Allowlist::default();
        list.add(client, "web-1");

        let now = Instant::now();
        let mut gate = Gate::new(Some(&security), 100);
        assert_eq!(
            gate.authorize(now, "frontend", "127.0.0.1", "CURVE", &client.0).code(),
            "400",
            "nothing allowed before the lists are handed over"
        );
        gate.set_allowlist(Endpoint::Frontend, list);
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

        // Revoked: a new list without the key.
        let mut list = Allowlist::default();
        list.add(PublicKey([2; 32]), "someone-else-entirely");
        gate.set_allowlist(Endpoint::Frontend, list);
        let v = gate.authorize(now, "frontend", "127.0.0.1", "CURVE", &client.0);
        assert_eq!(v.code(), "400");
        assert!(format!("{v:?}").contains("keys/clients.allow"), "{v:?}");
    }
}
