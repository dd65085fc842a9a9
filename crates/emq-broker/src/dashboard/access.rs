//! Who may change things from the dashboard: the admin token, the
//! sessions it opens (a cookie) and each session's CSRF token. Without a
//! session every page is read-only and every change is refused (403).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use emq_http::Request;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "emq_session";

/// A session unused this long ends.
pub(crate) const IDLE: Duration = Duration::from_secs(8 * 3600);

/// Most sessions kept; the least recently used goes first.
pub(crate) const MAX_SESSIONS: usize = 256;

/// Shortest admin token accepted.
pub(crate) const MIN_TOKEN: usize = 16;

/// Why a change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// No token is configured: the dashboard is read-only for everyone.
    ReadOnly,
    /// No valid session: log in first.
    NoSession,
    /// The form's CSRF token is missing or wrong.
    Csrf,
    /// The request came from another site (`Origin`).
    CrossOrigin,
}

impl Denied {
    /// For the 403 page.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Denied::ReadOnly => "this dashboard is read-only: the router was started without --dashboard-token-file",
            Denied::NoSession => "read-only session: log in with the admin token to make changes",
            Denied::CrossOrigin => "refused: the request came from another site",
            Denied::Csrf => "refused: the form's CSRF token is missing or stale (reload the page)",
        }
    }
}

struct Session {
    csrf: String,
    last_used: Instant,
}

/// The admin token and the sessions it opened.
pub(crate) struct Access {
    token: Option<String>,
    sessions: HashMap<String, Session>,
}

impl Access {
    /// Access with `token` (`None`: read-only for everyone).
    pub(crate) fn new(token: Option<String>) -> Access {
        Access {
            token,
            sessions: HashMap::new(),
        }
    }

    /// Whether changes can be made at all.
    pub(crate) fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Open a session for whoever presents `token`: its id (the cookie's
    /// value), or `None` for a wrong token.
    pub(crate) fn login(&mut self, presented: &str, now: Instant) -> Option<String> {
        let token = self.token.as_deref()?;
        if !constant_time_eq(token.as_bytes(), presented.as_bytes()) {
            return None;
        }
        self.expire(now);
        if self.sessions.len() >= MAX_SESSIONS {
            let oldest = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| id.clone());
            if let Some(id) = oldest {
                self.sessions.remove(&id);
            }
        }
        let id = random_token();
        let session = Session {
            csrf: random_token(),
            last_used: now,
        };
        self.sessions.insert(id.clone(), session);
        Some(id)
    }

    /// End the session `request` carries.
    pub(crate) fn logout(&mut self, request: &Request) {
        if let Some(id) = session_cookie(request) {
            self.sessions.remove(&id);
        }
    }

    /// The CSRF token of the session `request` carries, if it is valid.
    pub(crate) fn session(&mut self, request: &Request, now: Instant) -> Option<String> {
        let id = session_cookie(request)?;
        let s = self.sessions.get_mut(&id)?;
        if now.saturating_duration_since(s.last_used) > IDLE {
            self.sessions.remove(&id);
            return None;
        }
        s.last_used = now;
        Some(s.csrf.clone())
    }

    /// Whether `request` (a POST whose form is `form`) may change things:
    /// same origin, a valid session, and that session's CSRF token in the
    /// form.
    pub(crate) fn authorize(
        &mut self,
        request: &Request,
        form: &[(String, String)],
        now: Instant,
    ) -> Result<(), Denied> {
        if !self.has_token() {
            return Err(Denied::ReadOnly);
        }
        if !same_origin(request) {
            return Err(Denied::CrossOrigin);
        }
        let csrf = self.session(request, now).ok_or(Denied::NoSession)?;
        let given = form
            .iter()
            .find(|(n, _)| n == "csrf")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        if constant_time_eq(csrf.as_bytes(), given.as_bytes()) {
            Ok(())
        } else {
            Err(Denied::Csrf)
        }
    }

    fn expire(&mut self, now: Instant) {
        self.sessions
            .retain(|_, s| now.saturating_duration_since(s.last_used) <= IDLE);
    }
}

/// A request from a page of this server: its `Origin`, when the browser
/// sends one, names the host it was sent to.
pub(crate) fn same_origin(request: &Request) -> bool {
    let Some(origin) = request.header("origin") else {
        return true;
    };
    let host = request.header("host").unwrap_or("");
    let bare = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    !host.is_empty() && bare == host
}

fn session_cookie(request: &Request) -> Option<String> {
    let cookies = request.header("cookie")?;
    cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// 244 random bits as hex (two version-4 UUIDs' worth).
fn random_token() -> String {
    format!("{:032x}{:032x}", emq_net::random_seed(), emq_net::random_seed())
}

/// Compare without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(cookie: Option<&str>, origin: Option<&str>) -> Request {
        let mut headers = vec![("host".to_string(), "127.0.0.1:8080".to_string())];
        if let Some(c) = cookie {
            headers.push(("cookie".into(), format!("a=b; {COOKIE}={c}")));
        }
        if let Some(o) = origin {
            headers.push(("origin".into(), o.into()));
        }
        Request {
            method: Some(emq_http::Method::Post),
            headers,
            ..Request::default()
        }
    }

    fn form(csrf: &str) -> Vec<(String, String)> {
        vec![("csrf".into(), csrf.into())]
    }

    #[test]
    fn a_change_needs_the_token_a_session_its_csrf_token_and_the_same_origin() {
        let now = Instant::now();
        let mut a = Access::new(Some("s3cret-token-0123456789".into()));
        assert_eq!(a.login("wrong", now), None);
        assert_eq!(
            a.login("s3cret-token-012345678", now),
            None,
            "a prefix is not the token"
        );
        let id = a.login("s3cret-token-0123456789", now).unwrap();
        let csrf = a.session(&post(Some(&id), None), now).unwrap();
        assert_eq!(
            a.authorize(&post(None, None), &form(&csrf), now),
            Err(Denied::NoSession)
        );
        assert_eq!(
            a.authorize(&post(Some("forged"), None), &form(&csrf), now),
            Err(Denied::NoSession)
        );
        assert_eq!(a.authorize(&post(Some(&id), None), &form(""), now), Err(Denied::Csrf));
        assert_eq!(a.authorize(&post(Some(&id), None), &form("x"), now), Err(Denied::Csrf));
        assert_eq!(
            a.authorize(&post(Some(&id), Some("http://evil.example")), &form(&csrf), now),
            Err(Denied::CrossOrigin)
        );
        assert_eq!(
            a.authorize(&post(Some(&id), Some("http://127.0.0.1:8080")), &form(&csrf), now),
            Ok(())
        );
        assert_eq!(a.authorize(&post(Some(&id), None), &form(&csrf), now), Ok(()));
        // Idle too long: gone.
        let later = now + IDLE + Duration::from_secs(1);
        assert_eq!(
            a.authorize(&post(Some(&id), None), &form(&csrf), later),
            Err(Denied::NoSession)
        );
        // Logged out: gone.
        let id = a.login("s3cret-token-0123456789", later).unwrap();
        let csrf = a.session(&post(Some(&id), None), later).unwrap();
        a.logout(&post(Some(&id), None));
        assert_eq!(
            a.authorize(&post(Some(&id), None), &form(&csrf), later),
            Err(Denied::NoSession)
        );
    }

    #[test]
    fn without_a_token_nobody_logs_in_and_sessions_are_bounded() {
        let now = Instant::now();
        let mut a = Access::new(None);
        assert_eq!(a.login("", now), None);
        assert_eq!(a.authorize(&post(None, None), &form(""), now), Err(Denied::ReadOnly));
        let mut a = Access::new(Some("t".repeat(MIN_TOKEN)));
        let first = a.login(&"t".repeat(MIN_TOKEN), now).unwrap();
        for i in 1..=MAX_SESSIONS {
            a.login(&"t".repeat(MIN_TOKEN), now + Duration::from_millis(i as u64))
                .unwrap();
        }
        assert_eq!(a.sessions.len(), MAX_SESSIONS);
        assert!(
            a.session(&post(Some(&first), None), now).is_none(),
            "the oldest went first"
        );
    }
}
