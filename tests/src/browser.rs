//! Headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, installed by `scripts/test-deps.sh`): a ChromeDriver
//! process of the test's own on a free loopback port, one browser session,
//! plain HTTP/1.1 with JSON bodies. The driver's process group (the browser
//! with it) is killed when the [`Browser`] is dropped.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{http_request, wait_until, Proc, Scratch};

/// Where Debian installs them.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's ChromeDriver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

const W3C_ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session.
pub struct Browser {
    driver: Proc,
    addr: String,
    session: String,
    _profile: Scratch,
}

impl Browser {
    /// Start ChromeDriver and a headless Chromium with an empty profile.
    /// Panics with what to install when they are missing.
    pub fn start() -> Browser {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: install Debian's chromium and chromium-driver (scripts/test-deps.sh does)"
            );
        }
        let port = crate::free_port();
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let driver = Proc::spawn_group(cmd, "chromedriver");
        let addr = format!("127.0.0.1:{port}");
        assert!(
            wait_until(Duration::from_secs(20), || {
                http_request(&addr, "GET", "/status", None, Duration::from_secs(2)).is_ok_and(|(code, _)| code == 200)
            }),
            "chromedriver did not start"
        );
        let profile = Scratch::new();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.arg("chromium")),
                ],
            },
        }}});
        let (code, body) = http_request(
            &addr,
            "POST",
            "/session",
            Some(&caps.to_string()),
            Duration::from_secs(60),
        )
        .expect("new WebDriver session");
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!(code, 200, "new session: {body}");
        let session = v["value"]["sessionId"].as_str().expect("session id").to_string();
        Browser {
            driver,
            addr,
            session,
            _profile: profile,
        }
    }

    /// A WebDriver command; its `value`, or the error it answered.
    pub fn command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let path = format!("/session/{}{path}", self.session);
        let body = body.map(|b| b.to_string());
        let (code, text) = http_request(&self.addr, method, &path, body.as_deref(), Duration::from_secs(60))
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{method} {path}: {e}: {text}"))?;
        if code == 200 {
            Ok(v["value"].clone())
        } else {
            Err(format!("{method} {path}: {code} {}", v["value"]))
        }
    }

    /// Load `url` and wait for it.
    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url }))).unwrap();
    }

    /// The element matching `css`, if any.
    pub fn find(&self, css: &str) -> Option<String> {
        let v = self
            .command("POST", "/element", Some(json!({"using": "css selector", "value": css})))
            .ok()?;
        v[W3C_ELEMENT].as_str().map(str::to_string)
    }

    /// The element matching `css`; panics without one.
    pub fn element(&self, css: &str) -> String {
        self.find(css).unwrap_or_else(|| {
            let source: String = self.source().chars().take(3000).collect();
            panic!("no element {css} on {}:\n{source}", self.url())
        })
    }

    /// The visible text of the element matching `css`.
    pub fn text(&self, css: &str) -> String {
        let id = self.element(css);
        self.command("GET", &format!("/element/{id}/text"), None)
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Click the element matching `css`.
    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.command("POST", &format!("/element/{id}/click"), Some(json!({})))
            .unwrap();
    }

    /// Type `text` into the element matching `css`.
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.command("POST", &format!("/element/{id}/value"), Some(json!({ "text": text })))
            .unwrap();
    }

    /// Run `script` (a function body) in the page; what it returns.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.command("POST", "/execute/sync", Some(json!({"script": script, "args": args})))
            .unwrap()
    }

    /// Run `script` (a function body whose last argument is the callback)
    /// in the page and wait for its callback.
    pub fn execute_async(&self, script: &str, args: Value) -> Value {
        self.command("POST", "/execute/async", Some(json!({"script": script, "args": args})))
            .unwrap()
    }

    /// The page's address.
    pub fn url(&self) -> String {
        self.command("GET", "/url", None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The page's HTML as the browser holds it now.
    pub fn source(&self) -> String {
        self.command("GET", "/source", None)
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Accept the open `confirm()` dialog.
    pub fn accept_dialog(&self) {
        self.command("POST", "/alert/accept", Some(json!({}))).unwrap();
    }

    /// The page as PNG.
    pub fn screenshot(&self) -> Vec<u8> {
        let b64 = self.command("GET", "/screenshot", None).unwrap();
        base64_decode(b64.as_str().unwrap_or_default())
    }

    /// Poll `cond` until it holds, up to `within`.
    pub fn wait_for(&self, within: Duration, what: &str, mut cond: impl FnMut(&Browser) -> bool) {
        let deadline = Instant::now() + within;
        while !cond(self) {
            if Instant::now() >= deadline {
                let source: String = self.source().chars().take(3000).collect();
                panic!("{what}: not within {within:?} on {}:\n{source}", self.url());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Close the browser cleanly; the driver's group is killed anyway.
        let path = format!("/session/{}", self.session);
        let _ = http_request(&self.addr, "DELETE", &path, None, Duration::from_secs(10));
        let _ = &self.driver;
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
