//! The REQUEST headers frame: comma-separated flags and `key:value` pairs, as
//! EventMQ writes them (`reply-requested,guarantee,retry-count:3,timeout:30`).
//! Unknown headers are kept and re-emitted untouched, so that a newer peer's
//! headers survive a trip through this router.

use std::time::Duration;

use crate::ContentType;

/// When a job may start (emq extension; such a job is also guaranteed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotBefore {
    /// `delay:SECONDS` (decimals allowed): this long after the router
    /// accepts it.
    Delay(Duration),
    /// `not-before:TIME` (RFC 3339, e.g. `2026-12-01T10:00:00Z`): at this
    /// time, in milliseconds since the Unix epoch.
    At(i64),
    /// One of those headers with a value that does not parse (the router
    /// refuses the job, saying why). The header as it came.
    Unreadable(String),
}

impl NotBefore {
    fn parse(key: &str, value: &str) -> NotBefore {
        let parsed = match key {
            "delay" => value
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .map(NotBefore::Delay),
            _ => value
                .parse::<jiff::Timestamp>()
                .ok()
                .map(|t| NotBefore::At(t.as_millisecond())),
        };
        parsed.unwrap_or_else(|| NotBefore::Unreadable(format!("{key}:{value}")))
    }

    fn encode(&self) -> String {
        match self {
            NotBefore::Delay(d) => format!("delay:{}", d.as_secs_f64()),
            NotBefore::At(ms) => format!("not-before:{}", crate::views::timestamp_ms(*ms)),
            NotBefore::Unreadable(raw) => raw.clone(),
        }
    }
}

/// Parsed REQUEST headers. Parsing is total: a malformed value of a known key is
/// treated as absent rather than rejecting the job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// `reply-requested`: send the result back to the client.
    pub reply_requested: bool,
    /// `guarantee`: journal, acknowledge and retry the job (router).
    pub guarantee: bool,
    /// Retries after the first attempt (`retry-count:N`).
    pub retry_count: u32,
    /// Seconds the job may run before it is killed (`timeout:N`); 0 = none.
    pub timeout_secs: u64,
    /// Encoding of the body (`content-type:msgpack`); JSON when absent.
    pub content_type: ContentType,
    /// `delay:SECONDS` or `not-before:TIME` (emq extension).
    pub not_before: Option<NotBefore>,
    /// Everything else, verbatim, in order.
    pub other: Vec<String>,
}

impl Headers {
    /// Parse a headers frame; never fails.
    pub fn parse(frame: &str) -> Headers {
        let mut h = Headers::default();
        for item in frame.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = match item.split_once(':') {
                Some((k, v)) => (k, Some(v)),
                None => (item, None),
            };
            match (key, value) {
                ("reply-requested", None) => h.reply_requested = true,
                ("guarantee", None) => h.guarantee = true,
                ("retry-count", Some(v)) => h.retry_count = v.parse().unwrap_or(0),
                ("timeout", Some(v)) => h.timeout_secs = v.parse().unwrap_or(0),
                ("content-type", Some(v)) => h.content_type = ContentType::parse(v).unwrap_or_default(),
                (k @ ("delay" | "not-before"), Some(v)) => h.not_before = Some(NotBefore::parse(k, v)),
                _ => h.other.push(item.to_string()),
            }
        }
        h
    }

    /// The headers frame, unknown headers last and untouched.
    pub fn encode(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if self.reply_requested {
            parts.push("reply-requested".into());
        }
        if self.guarantee {
            parts.push("guarantee".into());
        }
        if self.retry_count > 0 {
            parts.push(format!("retry-count:{}", self.retry_count));
        }
        if self.timeout_secs > 0 {
            parts.push(format!("timeout:{}", self.timeout_secs));
        }
        if self.content_type != ContentType::Json {
            parts.push(format!("content-type:{}", self.content_type.as_str()));
        }
        if let Some(nb) = &self.not_before {
            parts.push(nb.encode());
        }
        parts.extend(self.other.iter().cloned());
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_eventmq_headers() {
        let h = Headers::parse("reply-requested,guarantee,retry-count:3,timeout:30");
        assert!(h.reply_requested && h.guarantee);
        assert_eq!(h.retry_count, 3);
        assert_eq!(h.timeout_secs, 30);
        assert_eq!(h.content_type, ContentType::Json);
        assert!(h.other.is_empty());
    }

    #[test]
    fn keeps_unknown_and_survives_garbage() {
        let h = Headers::parse("nohaste,,timeout:abc,run_count:2,content-type:msgpack");
        assert_eq!(h.timeout_secs, 0);
        assert_eq!(h.content_type, ContentType::MsgPack);
        assert_eq!(h.other, vec!["nohaste", "run_count:2"]);
        assert_eq!(Headers::parse(&h.encode()), h);
    }

    #[test]
    fn delays_and_not_before_times_parse_and_round_trip() {
        let h = Headers::parse("guarantee,delay:1.5");
        assert_eq!(h.not_before, Some(NotBefore::Delay(Duration::from_millis(1500))));
        assert_eq!(Headers::parse(&h.encode()), h);
        let h = Headers::parse("not-before:2026-12-01T10:00:00Z");
        assert_eq!(h.not_before, Some(NotBefore::At(1_796_119_200_000)));
        assert_eq!(Headers::parse(&h.encode()), h);
        let h = Headers::parse("not-before:2026-12-01T11:00:00+01:00");
        assert_eq!(
            h.not_before,
            Some(NotBefore::At(1_796_119_200_000)),
            "offsets are honoured"
        );
        for bad in [
            "delay:soon",
            "delay:-1",
            "delay:NaN",
            "delay:1e400",
            "not-before:tomorrow",
        ] {
            let h = Headers::parse(bad);
            assert_eq!(h.not_before, Some(NotBefore::Unreadable(bad.into())), "{bad}");
            assert_eq!(h.encode(), bad, "kept as it came");
        }
    }

    #[test]
    fn empty_frame_is_no_headers() {
        assert_eq!(Headers::parse(""), Headers::default());
        assert_eq!(Headers::default().encode(), "");
    }
}
