//! CURVE keys as emq writes them: Z85 text (ZeroMQ RFC 32), the key pair
//! file, and the allowlist file. Pure text formats; reading and writing the
//! files, making keys and setting socket options live in `emq-net`.
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

/// Length of a CURVE key in bytes.
pub const KEY_BYTES: usize = 32;
/// Length of a CURVE key's Z85 text.
pub const KEY_Z85_CHARS: usize = 40;

/// Why key text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not 40 characters of Z85.
    #[error("not a CURVE key (40 Z85 characters): {0:?}")]
    BadKey(String),
    /// A line of a key file or allowlist that does not parse.
    #[error("line {line}: {reason}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A key pair file without its secret (a `.pub` file, say).
    #[error("no secret-key line (is this a .pub file?)")]
    NoSecret,
    /// A key file without a public key.
    #[error("no public-key line")]
    NoPublic,
}

const Z85_CHARS: &[u8; 85] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// Z85-encode `bytes`, whose length must be a multiple of 4.
pub fn z85_encode(bytes: &[u8]) -> Option<String> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = String::with_capacity(bytes.len() * 5 / 4);
    for chunk in bytes.chunks(4) {
        let mut value = u32::from_be_bytes(chunk.try_into().expect("chunks of 4"));
        let mut digits = [0u8; 5];
        for d in digits.iter_mut().rev() {
            *d = Z85_CHARS[(value % 85) as usize];
            value /= 85;
        }
        out.extend(digits.iter().map(|&b| b as char));
    }
    Some(out)
}

/// Decode Z85 text, whose length must be a multiple of 5.
pub fn z85_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(5) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 4 / 5);
    for chunk in text.chunks(5) {
        let mut value: u64 = 0;
        for &c in chunk {
            let digit = Z85_CHARS.iter().position(|&z| z == c)? as u64;
            value = value * 85 + digit;
        }
        out.extend_from_slice(&u32::try_from(value).ok()?.to_be_bytes());
    }
    Some(out)
}

fn parse_key(text: &str) -> Result<[u8; KEY_BYTES], KeyError> {
    let bad = || KeyError::BadKey(text.chars().take(64).collect());
    if text.len() != KEY_Z85_CHARS {
        return Err(bad());
    }
    z85_decode(text).and_then(|b| b.try_into().ok()).ok_or_else(bad)
}

/// A CURVE public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; KEY_BYTES]);

impl PublicKey {
    /// Parse the 40-character Z85 form.
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        parse_key(text).map(PublicKey)
    }

    /// The key from its 32 raw bytes (a ZAP request's credentials).
    pub fn from_bytes(bytes: &[u8]) -> Option<PublicKey> {
        bytes.try_into().ok().map(PublicKey)
    }

    /// The 40-character Z85 form.
    pub fn z85(&self) -> String {
        z85_encode(&self.0).expect("32 bytes is a multiple of 4")
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
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// The half that others put on their allowlists.
    pub public: PublicKey,
    secret: [u8; KEY_BYTES],
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair {{ public: {}, secret: <hidden> }}", self.public)
    }
}

impl KeyPair {
    /// A pair from its two halves (made by libzmq or libsodium).
    pub fn from_parts(public: [u8; KEY_BYTES], secret: [u8; KEY_BYTES]) -> KeyPair {
        KeyPair {
            public: PublicKey(public),
            secret,
        }
    }

    /// The secret half, for the socket option that needs it.
    pub fn secret_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.secret
    }

    /// Parse a key pair file's text.
    pub fn parse(text: &str) -> Result<KeyPair, KeyError> {
        let fields = key_fields(text)?;
        let secret = fields.secret.ok_or(KeyError::NoSecret)?;
        let public = fields.public.ok_or(KeyError::NoPublic)?;
        Ok(KeyPair { public, secret })
    }

    /// The key pair file's text.
    pub fn render(&self) -> String {
        let secret = z85_encode(&self.secret).expect("32 bytes");
        format!(
            "# emq CURVE key pair. The secret key proves who you are: keep this file private.\n\
             public-key = {}\nsecret-key = {secret}\n",
            self.public
        )
    }

    /// The `.pub` file's text.
    pub fn render_public(&self) -> String {
        format!("# emq CURVE public key\npublic-key = {}\n", self.public)
    }
}

/// The public key in a key file's text (a `.pub` file or a key pair file).
pub fn public_key_of(text: &str) -> Result<PublicKey, KeyError> {
    key_fields(text)?.public.ok_or(KeyError::NoPublic)
}

struct KeyFields {
    public: Option<PublicKey>,
    secret: Option<[u8; KEY_BYTES]>,
}

fn key_fields(text: &str) -> Result<KeyFields, KeyError> {
    let mut fields = KeyFields {
        public: None,
        secret: None,
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: String| KeyError::BadLine { line: n + 1, reason };
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

/// The public keys allowed on one endpoint, each with an optional name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<(PublicKey, String)>,
}

/// What [`Allowlist::add`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// The key was not on the list.
    New,
    /// The key was there already, under this name (now replaced).
    Renamed {
        /// Its name before.
        was: String,
    },
    /// The key was there already under the same name: nothing changed.
    Unchanged,
}

impl Allowlist {
    /// Parse an allowlist file's text.
    pub fn parse(text: &str) -> Result<Allowlist, KeyError> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            // Z85 uses `#`, so only whole lines are comments.
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, name) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let key = PublicKey::parse(key).map_err(|e| KeyError::BadLine {
                line: n + 1,
                reason: e.to_string(),
            })?;
            entries.push((key, name.trim().to_string()));
        }
        Ok(Allowlist { entries })
    }

    /// The allowlist file's text.
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

    /// Add a key, or rename it if present; says which.
    pub fn add(&mut self, key: PublicKey, name: &str) -> Added {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) if entry.1 == name => Added::Unchanged,
            Some(entry) => Added::Renamed {
                was: std::mem::replace(&mut entry.1, name.to_string()),
            },
            None => {
                self.entries.push((key, name.to_string()));
                Added::New
            }
        }
    }

    /// Remove the entries whose key's Z85 text or name is `key_or_name`;
    /// returns how many went.
    pub fn remove(&mut self, key_or_name: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(k, n)| k.z85() != key_or_name && n != key_or_name);
        before - self.entries.len()
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> impl Iterator<Item = (&PublicKey, &str)> {
        self.entries.iter().map(|(k, n)| (k, n.as_str()))
    }

    /// How many keys are allowed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is allowed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z85_matches_rfc_32() {
        // The test vector of ZeroMQ RFC 32.
        let bytes = [0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B];
        assert_eq!(z85_encode(&bytes).unwrap(), "HelloWorld");
        assert_eq!(z85_decode("HelloWorld").unwrap(), bytes);
        assert_eq!(z85_encode(&[1, 2, 3]), None);
        assert_eq!(z85_decode("abcd"), None);
        assert_eq!(z85_decode("~~~~~"), None);
        // Five digits can exceed 32 bits: "#####" is 85^5 - 1.
        assert_eq!(z85_decode("#####"), None);
    }

    #[test]
    fn key_files_round_trip() {
        let pair = KeyPair::from_parts([7; 32], [9; 32]);
        let text = pair.render();
        assert_eq!(KeyPair::parse(&text).unwrap(), pair);
        assert_eq!(public_key_of(&pair.render_public()).unwrap(), pair.public);
        assert_eq!(KeyPair::parse(&pair.render_public()), Err(KeyError::NoSecret));
        assert!(!format!("{pair:?}").contains(&z85_encode(&[9; 32]).unwrap()));
        assert!(matches!(
            KeyPair::parse("public-key = short\n"),
            Err(KeyError::BadLine { line: 1, .. })
        ));
    }

    #[test]
    fn allowlist_add_remove_and_parse() {
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let mut list = Allowlist::default();
        assert_eq!(list.add(a, "web-1"), Added::New);
        assert_eq!(list.add(b, ""), Added::New);
        assert_eq!(list.add(a, "web-2"), Added::Renamed { was: "web-1".into() });
        assert_eq!(list.add(a, "web-2"), Added::Unchanged);
        let loaded = Allowlist::parse(&list.render()).unwrap();
        assert_eq!(loaded, list);
        assert_eq!(loaded.name_of(&a), Some("web-2"));
        assert_eq!(loaded.name_of(&b), Some(""));
        let mut list = loaded;
        assert_eq!(list.remove("web-2"), 1);
        assert_eq!(list.remove(&b.z85()), 1);
        assert!(list.is_empty());
        let err = Allowlist::parse("# ok\nnot-a-key name\n").unwrap_err();
        assert!(matches!(err, KeyError::BadLine { line: 2, .. }), "{err}");
    }
}
