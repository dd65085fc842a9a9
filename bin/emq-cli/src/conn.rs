//! Where the router is and how to reach it. Only the commands that connect
//! take these options; they may come before the command (`emq-cli --router
//! X send ...`) or after it (`emq-cli send --router X ...`). A flag after
//! the command wins over one before it, which wins over the environment
//! (`EMQ_ROUTER`, `EMQ_ADMIN`, `EMQ_SERVER_KEY`, `EMQ_KEY`), which wins over
//! the defaults.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use emq_client::curve::ClientKeys;
use emq_client::{Client, ClientOptions};

use crate::exit::Failure;

/// The router's client endpoint.
#[derive(Args, Debug, Clone, Default)]
pub struct ClientConn {
    /// Router client endpoint(s), comma-separated for failover
    /// [default: tcp://127.0.0.1:47291].
    #[arg(long = "router", value_delimiter = ',', value_parser = emq_cmd::endpoint, help_heading = "Connection")]
    pub routers: Option<Vec<String>>,
}

/// The router's admin endpoint.
#[derive(Args, Debug, Clone, Default)]
pub struct AdminConn {
    /// Router admin endpoint(s), comma-separated: the active router of several
    /// answers [default: tcp://127.0.0.1:47293].
    #[arg(long, value_parser = emq_cmd::endpoints, help_heading = "Connection")]
    pub admin: Option<String>,
}

/// How to connect, whichever endpoint.
#[derive(Args, Debug, Clone, Default)]
pub struct Common {
    /// Seconds to wait for a connection to the router [default: 5].
    #[arg(long, help_heading = "Connection")]
    pub connect_timeout: Option<f64>,
    /// The router's CURVE public key (Z85 text or a key file): turns CURVE on.
    #[arg(long, help_heading = "Connection")]
    pub server_key: Option<String>,
    /// Our CURVE key pair file (from `emq-cli keygen`); must be on the
    /// router's allowlist for the endpoint used (an admin key for admin).
    #[arg(long, help_heading = "Connection")]
    pub key: Option<PathBuf>,
}

/// Every connection option, as the top level takes them (before the
/// command), with their environment variables.
#[derive(Args, Debug, Clone, Default)]
pub struct Conn {
    /// Router client endpoint(s), comma-separated for failover
    /// [default: tcp://127.0.0.1:47291].
    #[arg(long = "router", env = "EMQ_ROUTER", value_delimiter = ',', value_parser = emq_cmd::endpoint, help_heading = "Connection")]
    pub routers: Option<Vec<String>>,
    /// Router admin endpoint(s), comma-separated: the active router of several
    /// answers [default: tcp://127.0.0.1:47293].
    #[arg(long, env = "EMQ_ADMIN", value_parser = emq_cmd::endpoints, help_heading = "Connection")]
    pub admin: Option<String>,
    /// Seconds to wait for a connection to the router [default: 5].
    #[arg(long, help_heading = "Connection")]
    pub connect_timeout: Option<f64>,
    /// The router's CURVE public key (Z85 text or a key file): turns CURVE on.
    #[arg(long, env = "EMQ_SERVER_KEY", help_heading = "Connection")]
    pub server_key: Option<String>,
    /// Our CURVE key pair file; must be on the router's allowlist for the
    /// endpoint used (an admin key for admin commands).
    #[arg(long, env = "EMQ_KEY", help_heading = "Connection")]
    pub key: Option<PathBuf>,
}

/// The options a command uses: its own over the top level's.
#[derive(Debug, Clone)]
pub struct Resolved {
    routers: Vec<String>,
    admin: String,
    options: ClientOptions,
}

impl Conn {
    /// Combine the top-level options with a command's (which win).
    pub fn resolve(
        &self,
        client: Option<&ClientConn>,
        admin: Option<&AdminConn>,
        common: &Common,
    ) -> Result<Resolved, Failure> {
        let routers = client
            .and_then(|c| c.routers.clone())
            .or_else(|| self.routers.clone())
            .unwrap_or_else(|| vec![format!("tcp://127.0.0.1:{}", emq_client::DEFAULT_FRONTEND_PORT)]);
        let admin = admin
            .and_then(|a| a.admin.clone())
            .or_else(|| self.admin.clone())
            .unwrap_or_else(|| format!("tcp://127.0.0.1:{}", emq_client::DEFAULT_ADMIN_PORT));
        let secs = common.connect_timeout.or(self.connect_timeout).unwrap_or(5.0);
        let connect_timeout =
            Duration::try_from_secs_f64(secs).map_err(|e| Failure::usage(format!("--connect-timeout {secs}: {e}")))?;
        let server_key = common.server_key.as_deref().or(self.server_key.as_deref());
        let key = common.key.as_deref().or(self.key.as_deref());
        let curve = match (server_key, key) {
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                return Err(Failure::usage("--server-key and --key go together (CURVE needs both)"))
            }
            (server, own) => ClientKeys::from_args(server, own).map_err(|e| Failure::usage(e.to_string()))?,
        };
        Ok(Resolved {
            routers,
            admin,
            options: ClientOptions { connect_timeout, curve },
        })
    }
}

impl Resolved {
    /// A client connected to the router's client endpoint(s).
    pub fn client(&self) -> Result<Client, Failure> {
        Ok(Client::connect_with(&self.routers, self.options.clone())?)
    }

    /// The admin endpoint.
    pub fn admin(&self) -> &str {
        &self.admin
    }

    /// The options for admin requests.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// How long to wait for an answer.
    pub fn timeout(&self) -> Duration {
        self.options.connect_timeout
    }
}
