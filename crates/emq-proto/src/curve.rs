//! ZeroMQ CURVE keys as emq stores them, and the socket options that turn
//! CURVE on. Every emq process that secures a socket goes through here, so
//! the key and allowlist file formats are defined once.
//!
//! Key pair file (written by `emq-cli keygen`, mode 0600), plus a `.pub`
//! file beside it with the public line only:
//!
//! ```text
//! # emq CURVE key pair
//! public-key = rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7
//! secret-key = JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6
//! ```
//!
//! Allowlist file: one Z85 public key per line, then an optional name; lines
//! starting with `#` are comments.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Length of a CURVE key in bytes, and of its Z85 text.
const KEY_BYTES: usize = 32;
const KEY_Z85_CHARS: usize = 40;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CurveError {
    #[error("this libzmq was built without CURVE")]
    Unavailable,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("not a CURVE key (40 Z85 characters): {0:?}")]
    BadKey(String),
    #[error("{path}:{line}: {reason}")]
    BadFile { path: PathBuf, line: usize, reason: String },
    #[error("{0}: no secret-key line (is this a .pub file?)")]
    NoSecret(PathBuf),
    #[error("cannot set CURVE socket options: {0}")]
    Socket(#[from] zmq::Error),
}

/// True when the linked libzmq supports CURVE.
pub fn available() -> bool {
    zmq::has("curve").unwrap_or(false)
}

/// A CURVE public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; KEY_BYTES]);

impl PublicKey {
    /// Parse the 40-character Z85 form.
    pub fn parse(text: &str) -> Result<PublicKey, CurveError> {
        parse_key(text).map(PublicKey)
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<PublicKey> {
        bytes.try_into().ok().map(PublicKey)
    }

    pub fn z85(&self) -> String {
        zmq::z85_encode(&self.0).expect("32 bytes is a multiple of 4")
    }

    /// A public key given on a command line: its Z85 text, or a key file
    /// (a `.pub` file or a key pair file) to read it from. An existing file
    /// wins: some 40-character paths are valid Z85.
    pub fn from_arg(arg: &str) -> Result<PublicKey, CurveError> {
        let path = Path::new(arg);
        if arg.len() == KEY_Z85_CHARS && !path.exists() {
            return PublicKey::parse(arg);
        }
        let text = read(path)?;
        key_fields(path, &text)?.public.ok_or_else(|| no_public_key(path))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.z85())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.z85())
    }
}

/// A CURVE key pair. `Debug` never shows the secret.
#[derive(Clone)]
pub struct KeyPair {
    pub public: PublicKey,
    secret: [u8; KEY_BYTES],
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair {{ public: {}, secret: <hidden> }}", self.public)
    }
}

impl KeyPair {
    pub fn generate() -> Result<KeyPair, CurveError> {
        if !available() {
            return Err(CurveError::Unavailable);
        }
        let pair = zmq::CurveKeyPair::new()?;
        Ok(KeyPair {
            public: PublicKey(pair.public_key),
            secret: pair.secret_key,
        })
    }

    /// Read a key pair file.
    pub fn load(path: &Path) -> Result<KeyPair, CurveError> {
        let text = read(path)?;
        let fields = key_fields(path, &text)?;
        let secret = fields.secret.ok_or_else(|| CurveError::NoSecret(path.into()))?;
        let public = fields.public.ok_or_else(|| no_public_key(path))?;
        Ok(KeyPair { public, secret })
    }

    /// Write the key pair to `path` (created with mode 0600, never
    /// overwritten) and its public key to `path.pub`. Returns the latter.
    pub fn save(&self, path: &Path) -> Result<PathBuf, CurveError> {
        let secret = zmq::z85_encode(&self.secret).expect("32 bytes");
        let body = format!(
            "# emq CURVE key pair. The secret key proves who you are: keep this file private.\n\
             public-key = {}\nsecret-key = {secret}\n",
            self.public
        );
        write_new(path, &body, 0o600)?;
        let mut pub_path = path.as_os_str().to_owned();
        pub_path.push(".pub");
        let pub_path = PathBuf::from(pub_path);
        write_new(
            &pub_path,
            &format!("# emq CURVE public key\npublic-key = {}\n", self.public),
            0o644,
        )?;
        Ok(pub_path)
    }

    /// Make `socket` a CURVE server with this key pair (set before bind).
    pub fn apply_server(&self, socket: &zmq::Socket) -> Result<(), CurveError> {
        if !available() {
            return Err(CurveError::Unavailable);
        }
        socket.set_curve_server(true)?;
        socket.set_curve_secretkey(&self.secret)?;
        socket.set_curve_publickey(&self.public.0)?;
        Ok(())
    }

    /// Make `socket` a CURVE client of the server with public key `server`
    /// (set before connect).
    pub fn apply_client(&self, socket: &zmq::Socket, server: &PublicKey) -> Result<(), CurveError> {
        if !available() {
            return Err(CurveError::Unavailable);
        }
        socket.set_curve_serverkey(&server.0)?;
        socket.set_curve_publickey(&self.public.0)?;
        socket.set_curve_secretkey(&self.secret)?;
        Ok(())
    }
}

impl PartialEq for KeyPair {
    fn eq(&self, other: &KeyPair) -> bool {
        self.public == other.public && self.secret == other.secret
    }
}

/// What a client or jobmanager needs to talk to a CURVE router: the router's
/// public key and its own key pair.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientKeys {
    pub server: PublicKey,
    pub own: KeyPair,
}

impl ClientKeys {
    /// From the `--server-key` and `--key` options of emq-cli and
    /// emq-jobmanager: `None` when neither is given (clap makes them come in
    /// pairs).
    pub fn from_args(server: Option<&str>, own: Option<&Path>) -> Result<Option<ClientKeys>, CurveError> {
        match (server, own) {
            (Some(server), Some(own)) => Ok(Some(ClientKeys {
                server: PublicKey::from_arg(server)?,
                own: KeyPair::load(own)?,
            })),
            _ => Ok(None),
        }
    }

    pub fn apply(&self, socket: &zmq::Socket) -> Result<(), CurveError> {
        self.own.apply_client(socket, &self.server)
    }
}

/// The public keys allowed on one endpoint, each with an optional name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<(PublicKey, String)>,
}

impl Allowlist {
    pub fn parse(path: &Path, text: &str) -> Result<Allowlist, CurveError> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            // Z85 uses `#`, so only whole lines are comments.
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, name) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let key = PublicKey::parse(key).map_err(|e| CurveError::BadFile {
                path: path.into(),
                line: n + 1,
                reason: e.to_string(),
            })?;
            entries.push((key, name.trim().to_string()));
        }
        Ok(Allowlist { entries })
    }

    /// Read an allowlist file; a missing file is an empty list.
    pub fn load(path: &Path) -> Result<Allowlist, CurveError> {
        match fs::read_to_string(path) {
            Ok(text) => Allowlist::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Allowlist::default()),
            Err(source) => Err(CurveError::Io {
                path: path.into(),
                source,
            }),
        }
    }

    /// Write the list to `path`, replacing it atomically.
    pub fn save(&self, path: &Path) -> Result<(), CurveError> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let _ = fs::remove_file(&tmp);
        write_new(&tmp, &self.render(), 0o644)?;
        fs::rename(&tmp, path).map_err(|source| CurveError::Io {
            path: path.into(),
            source,
        })
    }

    pub fn render(&self) -> String {
        let mut out = String::from("# emq allowlist: one CURVE public key (Z85) per line, then a name.\n");
        for (key, name) in &self.entries {
            out.push_str(&key.z85());
            if !name.is_empty() {
                out.push(' ');
                out.push_str(name);
            }
            out.push('\n');
        }
        out
    }

    /// The entry's name ("" when it has none), if `key` is allowed.
    pub fn name_of(&self, key: &PublicKey) -> Option<&str> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, n)| n.as_str())
    }

    /// Add a key (or rename it if present).
    pub fn add(&mut self, key: PublicKey, name: &str) {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = name.to_string(),
            None => self.entries.push((key, name.to_string())),
        }
    }

    /// Remove the entries whose key's Z85 text or name is `key_or_name`;
    /// returns how many went.
    pub fn remove(&mut self, key_or_name: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(k, n)| k.z85() != key_or_name && n != key_or_name);
        before - self.entries.len()
    }

    pub fn entries(&self) -> impl Iterator<Item = (&PublicKey, &str)> {
        self.entries.iter().map(|(k, n)| (k, n.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Watches a connecting socket for failed handshakes, so that a refused key
/// is reported as such instead of looking like an unreachable router.
pub struct HandshakeMonitor {
    socket: zmq::Socket,
}

/// `ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH` (zmq.h).
const MECHANISM_MISMATCH: u32 = 0x1100_0002;

impl HandshakeMonitor {
    pub fn watch(ctx: &zmq::Context, socket: &zmq::Socket) -> Result<HandshakeMonitor, zmq::Error> {
        let addr = format!("inproc://emq-handshake-{}", uuid::Uuid::new_v4());
        let events = zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as i32;
        socket.monitor(&addr, events)?;
        let pair = ctx.socket(zmq::PAIR)?;
        pair.connect(&addr)?;
        Ok(HandshakeMonitor { socket: pair })
    }

    /// The monitor's socket, to poll for readability.
    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// The handshake failures reported since the last call.
    pub fn failures(&self) -> Vec<HandshakeFailure> {
        let mut out = Vec::new();
        while let Ok(frames) = self.socket.recv_multipart(zmq::DONTWAIT) {
            let Some((event, value)) = monitor_event(&frames) else {
                continue;
            };
            out.push(HandshakeFailure {
                endpoint: frames
                    .get(1)
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .unwrap_or_default(),
                reason: describe_failure(event, value),
            });
        }
        out
    }

    /// Wait until `socket` (the one watched) can send, for up to `timeout`.
    /// Fails early when every one of its `endpoints` has refused a handshake,
    /// and afterwards with the last refusal, if any; `Ok(false)` is a plain
    /// timeout (nothing answered).
    pub fn await_writable(
        &self,
        socket: &zmq::Socket,
        endpoints: usize,
        timeout: std::time::Duration,
    ) -> Result<bool, HandshakeFailure> {
        let deadline = std::time::Instant::now() + timeout;
        let mut refused: Vec<HandshakeFailure> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let mut items = [socket.as_poll_item(zmq::POLLOUT), self.socket.as_poll_item(zmq::POLLIN)];
            let polled = zmq::poll(&mut items, left.as_millis().min(i64::MAX as u128) as i64);
            if items[0].is_writable() {
                return Ok(true);
            }
            for failure in self.failures() {
                refused.retain(|f| f.endpoint != failure.endpoint);
                refused.push(failure);
            }
            let timed_out = left.is_zero() || matches!(polled, Ok(0)) || polled.is_err();
            if refused.len() >= endpoints.max(1) || (timed_out && !refused.is_empty()) {
                return Err(refused.pop().expect("not empty"));
            }
            if timed_out {
                return Ok(false);
            }
        }
    }
}

/// The event id and value (an fd, an error or a ZAP status) of a socket
/// monitor message: `[u16 event, u32 value]` in host order, then the endpoint.
pub fn monitor_event(frames: &[Vec<u8>]) -> Option<(u16, u32)> {
    let head = frames.first().filter(|f| f.len() >= 6)?;
    Some((
        u16::from_ne_bytes([head[0], head[1]]),
        u32::from_ne_bytes([head[2], head[3], head[4], head[5]]),
    ))
}

/// A connection refused during its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeFailure {
    pub endpoint: String,
    pub reason: String,
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.endpoint, self.reason)
    }
}

fn describe_failure(event: u16, value: u32) -> String {
    use zmq::SocketEvent as E;
    match event {
        e if e == E::HANDSHAKE_FAILED_AUTH.to_raw() => match value {
            400 => "the router refused our key (not on its allowlist for this endpoint)".into(),
            500 => "the router refused the connection: too many connections".into(),
            code => format!("the router refused the connection (ZAP status {code})"),
        },
        e if e == E::HANDSHAKE_FAILED_PROTOCOL.to_raw() && value == MECHANISM_MISMATCH => {
            "security mismatch: one side uses CURVE and the other does not (set or unset --server-key and --key)".into()
        }
        e if e == E::HANDSHAKE_FAILED_PROTOCOL.to_raw() => format!("handshake protocol error {value:#x}"),
        // What a plain client sees from a CURVE router, and a CURVE client
        // that has the wrong router key: the router hangs up.
        _ => "the router ended the handshake: its CURVE settings differ from ours \
              (no key given, or the wrong router public key)"
            .into(),
    }
}

fn parse_key(text: &str) -> Result<[u8; KEY_BYTES], CurveError> {
    let bad = || CurveError::BadKey(text.to_string());
    if text.len() != KEY_Z85_CHARS {
        return Err(bad());
    }
    let bytes = zmq::z85_decode(text).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

fn no_public_key(path: &Path) -> CurveError {
    CurveError::BadFile {
        path: path.into(),
        line: 0,
        reason: "no public-key line".into(),
    }
}

struct KeyFields {
    public: Option<PublicKey>,
    secret: Option<[u8; KEY_BYTES]>,
}

fn key_fields(path: &Path, text: &str) -> Result<KeyFields, CurveError> {
    let mut fields = KeyFields {
        public: None,
        secret: None,
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: String| CurveError::BadFile {
            path: path.into(),
            line: n + 1,
            reason,
        };
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| bad("expected `public-key = ...` or `secret-key = ...`".into()))?;
        let key = parse_key(value.trim()).map_err(|e| bad(e.to_string()))?;
        match name.trim() {
            "public-key" => fields.public = Some(PublicKey(key)),
            "secret-key" => fields.secret = Some(key),
            other => return Err(bad(format!("unknown field {other:?}"))),
        }
    }
    Ok(fields)
}

fn read(path: &Path) -> Result<String, CurveError> {
    fs::read_to_string(path).map_err(|source| CurveError::Io {
        path: path.into(),
        source,
    })
}

fn write_new(path: &Path, body: &str, mode: u32) -> Result<(), CurveError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| CurveError::Io {
        path: path.into(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(body.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("emq-curve-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn libzmq_has_curve() {
        // The vendored zmq-sys links libsodium; without it this is false.
        assert!(available());
    }

    #[test]
    fn key_pair_round_trips_through_files() {
        let dir = scratch("pair");
        let pair = KeyPair::generate().unwrap();
        let path = dir.join("client.key");
        let pub_path = pair.save(&path).unwrap();
        let loaded = KeyPair::load(&path).unwrap();
        assert_eq!(loaded.public, pair.public);
        assert_eq!(loaded.secret, pair.secret);
        assert_eq!(PublicKey::from_arg(pub_path.to_str().unwrap()).unwrap(), pair.public);
        assert_eq!(PublicKey::from_arg(&pair.public.z85()).unwrap(), pair.public);
        assert!(matches!(KeyPair::load(&pub_path), Err(CurveError::NoSecret(_))));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // Never overwritten.
        assert!(pair.save(&path).is_err());
        assert!(!format!("{pair:?}").contains(&zmq::z85_encode(&pair.secret).unwrap()));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn allowlist_add_remove_and_parse() {
        let dir = scratch("allow");
        let path = dir.join("clients.allow");
        let (a, b) = (KeyPair::generate().unwrap().public, KeyPair::generate().unwrap().public);
        let mut list = Allowlist::load(&path).unwrap();
        assert!(list.is_empty());
        list.add(a, "web-1");
        list.add(b, "");
        list.add(a, "web-2");
        list.save(&path).unwrap();
        let loaded = Allowlist::load(&path).unwrap();
        assert_eq!(loaded, list);
        assert_eq!(loaded.name_of(&a), Some("web-2"));
        assert_eq!(loaded.name_of(&b), Some(""));
        let mut list = loaded;
        assert_eq!(list.remove("web-2"), 1);
        assert_eq!(list.remove(&b.z85()), 1);
        assert!(list.is_empty());
        let err = Allowlist::parse(&path, "# ok\nnot-a-key name\n").unwrap_err();
        assert!(err.to_string().contains(":2:"), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }
}
