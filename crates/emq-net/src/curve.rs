//! CURVE on ZeroMQ sockets: making key pairs, the socket options of servers
//! and clients, and reading and writing key files and allowlists (whose text
//! formats are `emq_proto::keys`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use emq_proto::keys::{Added, Allowlist, KeyError, KeyPair, PublicKey, KEY_Z85_CHARS};

/// Why CURVE could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CurveError {
    /// The linked libzmq has no CURVE. emq's crates link `emq-libzmq`, which
    /// has it; another copy of libzmq in the build is the likely cause.
    #[error(
        "the linked libzmq was built without CURVE: emq's crates link their own copy (emq-libzmq), \
         built with CURVE; make sure nothing else in the build links crates.io's zmq or zmq-sys"
    )]
    Unavailable,
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A key file or allowlist does not parse.
    #[error("{}: {source}", path.display())]
    Key {
        /// The file (or the command-line text taken for a key).
        path: PathBuf,
        /// What is wrong with it.
        source: KeyError,
    },
    /// A key given on the command line is neither a key nor an existing file.
    #[error("{arg:?} is not a key: give 40 Z85 characters or a key file (no file of that name exists)")]
    NotAKey {
        /// What was given.
        arg: String,
    },
    /// libzmq refused a CURVE socket option.
    #[error("cannot set CURVE socket options: {0}")]
    Socket(#[from] zmq::Error),
}

/// True when the linked libzmq supports CURVE.
pub fn available() -> bool {
    zmq::has("curve").unwrap_or(false)
}

fn require_curve() -> Result<(), CurveError> {
    if available() {
        Ok(())
    } else {
        Err(CurveError::Unavailable)
    }
}

/// A fresh key pair, made by libzmq (libsodium underneath).
pub fn generate() -> Result<KeyPair, CurveError> {
    require_curve()?;
    let pair = zmq::CurveKeyPair::new()?;
    Ok(KeyPair::from_parts(pair.public_key, pair.secret_key))
}

/// Make `socket` a CURVE server with `pair` (set before bind).
pub fn apply_server(pair: &KeyPair, socket: &zmq::Socket) -> Result<(), CurveError> {
    require_curve()?;
    socket.set_curve_server(true)?;
    socket.set_curve_secretkey(pair.secret_bytes())?;
    socket.set_curve_publickey(&pair.public.0)?;
    Ok(())
}

/// What a client or jobmanager needs to talk to a CURVE router: the router's
/// public key and its own key pair.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientKeys {
    /// The router's public key.
    pub server: PublicKey,
    /// Our key pair; its public key must be on the router's allowlist.
    pub own: KeyPair,
}

impl ClientKeys {
    /// From the `--server-key` and `--key` options of emq-cli and
    /// emq-jobmanager: `None` when neither is given (clap makes them come in
    /// pairs).
    pub fn from_args(server: Option<&str>, own: Option<&Path>) -> Result<Option<ClientKeys>, CurveError> {
        match (server, own) {
            (Some(server), Some(own)) => Ok(Some(ClientKeys {
                server: public_key_from_arg(server)?,
                own: load_key_pair(own)?,
            })),
            _ => Ok(None),
        }
    }

    /// Make `socket` a CURVE client of the router (set before connect).
    pub fn apply(&self, socket: &zmq::Socket) -> Result<(), CurveError> {
        require_curve()?;
        socket.set_curve_serverkey(&self.server.0)?;
        socket.set_curve_publickey(&self.own.public.0)?;
        socket.set_curve_secretkey(self.own.secret_bytes())?;
        Ok(())
    }
}

fn read(path: &Path) -> Result<String, CurveError> {
    fs::read_to_string(path).map_err(|source| CurveError::Io {
        path: path.into(),
        source,
    })
}

fn key_error(path: &Path) -> impl FnOnce(KeyError) -> CurveError + '_ {
    move |source| CurveError::Key {
        path: path.into(),
        source,
    }
}

/// Read a key pair file.
pub fn load_key_pair(path: &Path) -> Result<KeyPair, CurveError> {
    KeyPair::parse(&read(path)?).map_err(key_error(path))
}

/// Write `pair` to `path` (created with mode 0600, never overwritten) and its
/// public key to `path.pub`. Returns the latter.
pub fn save_key_pair(pair: &KeyPair, path: &Path) -> Result<PathBuf, CurveError> {
    write_new(path, &pair.render(), 0o600)?;
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    write_new(&pub_path, &pair.render_public(), 0o644)?;
    Ok(pub_path)
}

/// A public key given on a command line: a key file (a `.pub` file or a key
/// pair file) to read it from, or its Z85 text. An existing file wins: some
/// 40-character paths are valid Z85.
pub fn public_key_from_arg(arg: &str) -> Result<PublicKey, CurveError> {
    let path = Path::new(arg);
    if path.exists() {
        return emq_proto::keys::public_key_of(&read(path)?).map_err(key_error(path));
    }
    if arg.len() == KEY_Z85_CHARS {
        return PublicKey::parse(arg).map_err(key_error(path));
    }
    Err(CurveError::NotAKey { arg: arg.into() })
}

/// Read an allowlist file; a missing file is an empty list.
pub fn load_allowlist(path: &Path) -> Result<Allowlist, CurveError> {
    match fs::read_to_string(path) {
        Ok(text) => Allowlist::parse(&text).map_err(key_error(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Allowlist::default()),
        Err(source) => Err(CurveError::Io {
            path: path.into(),
            source,
        }),
    }
}

/// Write `list` to `path`, replacing it atomically.
pub fn save_allowlist(list: &Allowlist, path: &Path) -> Result<(), CurveError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, &list.render(), 0o644)?;
    fs::rename(&tmp, path).map_err(|source| CurveError::Io {
        path: path.into(),
        source,
    })
}

/// An allowlist file watched for changes: [`WatchedAllowlist::refresh`]
/// re-reads it when its modification time or size changed.
#[derive(Debug)]
pub struct WatchedAllowlist {
    path: PathBuf,
    /// Modification time and size when last read (`None`: no file then).
    stamp: Option<(SystemTime, u64)>,
    read: bool,
}

impl WatchedAllowlist {
    /// Watch `path` (read on the first [`WatchedAllowlist::refresh`]).
    pub fn new(path: PathBuf) -> WatchedAllowlist {
        WatchedAllowlist {
            path,
            stamp: None,
            read: false,
        }
    }

    /// The watched file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The list, if the file changed since the last call (or this is the
    /// first); `Ok(None)` when it did not. A file that fails to parse is an
    /// error and is tried again next time.
    pub fn refresh(&mut self) -> Result<Option<Allowlist>, CurveError> {
        let stamp = fs::metadata(&self.path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        if self.read && stamp == self.stamp {
            return Ok(None);
        }
        let list = load_allowlist(&self.path)?;
        self.read = true;
        self.stamp = stamp;
        Ok(Some(list))
    }
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

    #[test]
    fn libzmq_has_curve() {
        // emq-libzmq-sys links libsodium; without it this is false.
        assert!(available());
    }

    #[test]
    fn key_pair_round_trips_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let pair = generate().unwrap();
        let path = dir.path().join("client.key");
        let pub_path = save_key_pair(&pair, &path).unwrap();
        assert_eq!(load_key_pair(&path).unwrap(), pair);
        assert_eq!(public_key_from_arg(pub_path.to_str().unwrap()).unwrap(), pair.public);
        assert_eq!(public_key_from_arg(&pair.public.z85()).unwrap(), pair.public);
        assert!(matches!(
            load_key_pair(&pub_path),
            Err(CurveError::Key {
                source: KeyError::NoSecret,
                ..
            })
        ));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // Never overwritten.
        assert!(save_key_pair(&pair, &path).is_err());
        // Neither a file nor 40 characters: said so, not "no such file".
        let err = public_key_from_arg("notakey").unwrap_err();
        assert!(err.to_string().contains("is not a key"), "{err}");
    }

    #[test]
    fn watched_allowlist_reloads_on_change_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clients.allow");
        let mut watched = WatchedAllowlist::new(path.clone());
        assert_eq!(watched.refresh().unwrap(), Some(Allowlist::default()));
        let mut list = Allowlist::default();
        list.add(generate().unwrap().public, "web-1");
        save_allowlist(&list, &path).unwrap();
        assert_eq!(watched.refresh().unwrap(), Some(list.clone()));
        assert_eq!(watched.refresh().unwrap(), None);
        fs::write(&path, "garbage\n").unwrap();
        assert!(watched.refresh().is_err());
    }
}
