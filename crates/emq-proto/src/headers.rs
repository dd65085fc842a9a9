//! The REQUEST headers frame: comma-separated flags and `key:value` pairs, as
//! EventMQ writes them (`reply-requested,guarantee,retry-count:3,timeout:30`).
//! Unknown headers are kept and re-emitted untouched, so that a newer peer's
//! headers survive a trip through this router.

use std::time::Duration;

use crate::ContentType;

/// A time in a header (emq extensions): relative to when the router accepts
/// the job (`delay:SECONDS`, `expires:SECONDS`) or absolute
/// (`not-before:TIME`, `expires-at:TIME`, RFC 3339 such as
/// `2026-12-01T10:00:00Z`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeSpec {
    /// This long after the router accepts the job (decimal seconds on the wire).
    After(Duration),
    /// At this time, in milliseconds since the Unix epoch.
    At(i64),
    /// The header with a value that does not parse (the router refuses the
    /// job, saying why), as it came.
    Unreadable(String),
}

/// The header names of one kind of time: (relative, absolute).
type TimeKeys = (&'static str, &'static str);
const NOT_BEFORE_KEYS: TimeKeys = ("delay", "not-before");
const EXPIRES_KEYS: TimeKeys = ("expires", "expires-at");

impl TimeSpec {
    fn parse(keys: TimeKeys, key: &str, value: &str) -> TimeSpec {
        let parsed = if key == keys.0 {
            value
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .map(TimeSpec::After)
        } else {
            value
                .parse::<jiff::Timestamp>()
                .ok()
                .map(|t| TimeSpec::At(t.as_millisecond()))
        };
        parsed.unwrap_or_else(|| TimeSpec::Unreadable(format!("{key}:{value}")))
    }

    fn encode(&self, keys: TimeKeys) -> String {
        match self {
            TimeSpec::After(d) => format!("{}:{}", keys.0, d.as_secs_f64()),
            TimeSpec::At(ms) => format!("{}:{}", keys.1, crate::views::timestamp_ms(*ms)),
            TimeSpec::Unreadable(raw) => raw.clone(),
        }
    }

    /// The time in ms since the Unix epoch, for a job accepted at
    /// `accepted_ms`; `Err` with the header for an unreadable one.
    pub fn resolve(&self, accepted_ms: i64) -> Result<i64, &str> {
        match self {
            TimeSpec::After(d) => Ok(accepted_ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))),
            TimeSpec::At(ms) => Ok(*ms),
            TimeSpec::Unreadable(header) => Err(header),
        }
    }
}

/// A job's key (emq extension): `coalesce:KEY` keeps only the latest
/// waiting job per key and queue; `unique:KEY` lets one job per key and
/// queue be waiting or running at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobKeyHeader {
    /// `coalesce:KEY`: a new job replaces the waiting one of the same key.
    Coalesce(String),
    /// `unique:KEY`: a new job is the existing one while it lives.
    Unique(String),
    /// Both headers, or an empty key or one with control characters, as
    /// it came (the router refuses the job, saying why).
    Unreadable(String),
}

impl JobKeyHeader {
    fn parse(existing: Option<JobKeyHeader>, key: &str, value: &str) -> JobKeyHeader {
        let item = format!("{key}:{value}");
        let bad = value.is_empty() || value.len() > 256 || value.chars().any(char::is_control);
        match existing {
            Some(JobKeyHeader::Unreadable(raw)) => JobKeyHeader::Unreadable(format!("{raw},{item}")),
            Some(other) => JobKeyHeader::Unreadable(format!("{},{item}", other.encode())),
            None if bad => JobKeyHeader::Unreadable(item),
            None if key == "coalesce" => JobKeyHeader::Coalesce(value.to_string()),
            None => JobKeyHeader::Unique(value.to_string()),
        }
    }

    /// The header as written: `coalesce:KEY` or `unique:KEY`.
    pub fn encode(&self) -> String {
        match self {
            JobKeyHeader::Coalesce(k) => format!("coalesce:{k}"),
            JobKeyHeader::Unique(k) => format!("unique:{k}"),
            JobKeyHeader::Unreadable(raw) => raw.clone(),
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
    pub not_before: Option<TimeSpec>,
    /// `expires:SECONDS` or `expires-at:TIME` (emq extension): not to start
    /// after this.
    pub expires: Option<TimeSpec>,
    /// `coalesce:KEY` or `unique:KEY` (emq extension).
    pub key: Option<JobKeyHeader>,
    /// `batch-reply` (emq extension): the client reads BATCH, so its result
    /// may come in one with others.
    pub batch_reply: bool,
    /// Everything else, verbatim, in order.
    pub other: Vec<String>,
}

const BATCH_REPLY: &str = "batch-reply";

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
                (BATCH_REPLY, None) => h.batch_reply = true,
                ("retry-count", Some(v)) => h.retry_count = v.parse().unwrap_or(0),
                ("timeout", Some(v)) => h.timeout_secs = v.parse().unwrap_or(0),
                ("content-type", Some(v)) => h.content_type = ContentType::parse(v).unwrap_or_default(),
                (k @ ("delay" | "not-before"), Some(v)) => h.not_before = Some(TimeSpec::parse(NOT_BEFORE_KEYS, k, v)),
                (k @ ("expires" | "expires-at"), Some(v)) => h.expires = Some(TimeSpec::parse(EXPIRES_KEYS, k, v)),
                (k @ ("coalesce" | "unique"), Some(v)) => h.key = Some(JobKeyHeader::parse(h.key.take(), k, v)),
                _ => h.other.push(item.to_string()),
            }
        }
        h
    }

    /// The headers frame, unknown headers last and untouched. Written into
    /// one string (the router encodes every submission's headers).
    pub fn encode(&self) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(48);
        let mut part = |piece: std::fmt::Arguments<'_>| {
            if !out.is_empty() {
                out.push(',');
            }
            let _ = out.write_fmt(piece);
        };
        if self.reply_requested {
            part(format_args!("reply-requested"));
        }
        if self.guarantee {
            part(format_args!("guarantee"));
        }
        if self.retry_count > 0 {
            part(format_args!("retry-count:{}", self.retry_count));
        }
        if self.timeout_secs > 0 {
            part(format_args!("timeout:{}", self.timeout_secs));
        }
        if self.content_type != ContentType::Json {
            part(format_args!("content-type:{}", self.content_type.as_str()));
        }
        if let Some(t) = &self.not_before {
            part(format_args!("{}", t.encode(NOT_BEFORE_KEYS)));
        }
        if let Some(t) = &self.expires {
            part(format_args!("{}", t.encode(EXPIRES_KEYS)));
        }
        if let Some(k) = &self.key {
            part(format_args!("{}", k.encode()));
        }
        if self.batch_reply {
            part(format_args!("{BATCH_REPLY}"));
        }
        for other in &self.other {
            part(format_args!("{other}"));
        }
        out
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
        assert_eq!(h.not_before, Some(TimeSpec::After(Duration::from_millis(1500))));
        assert_eq!(Headers::parse(&h.encode()), h);
        let h = Headers::parse("not-before:2026-12-01T10:00:00Z");
        assert_eq!(h.not_before, Some(TimeSpec::At(1_796_119_200_000)));
        assert_eq!(Headers::parse(&h.encode()), h);
        let h = Headers::parse("not-before:2026-12-01T11:00:00+01:00");
        assert_eq!(
            h.not_before,
            Some(TimeSpec::At(1_796_119_200_000)),
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
            assert_eq!(h.not_before, Some(TimeSpec::Unreadable(bad.into())), "{bad}");
            assert_eq!(h.encode(), bad, "kept as it came");
        }
    }

    #[test]
    fn expiry_and_keys_parse_and_round_trip() {
        let h = Headers::parse("expires:30,coalesce:user-7");
        assert_eq!(h.expires, Some(TimeSpec::After(Duration::from_secs(30))));
        assert_eq!(h.key, Some(JobKeyHeader::Coalesce("user-7".into())));
        assert_eq!(Headers::parse(&h.encode()), h);
        let h = Headers::parse("expires-at:2026-12-01T10:00:00Z,unique:report:daily");
        assert_eq!(h.expires, Some(TimeSpec::At(1_796_119_200_000)));
        assert_eq!(
            h.key,
            Some(JobKeyHeader::Unique("report:daily".into())),
            "a key may hold ':'"
        );
        assert_eq!(Headers::parse(&h.encode()), h);
        assert_eq!(TimeSpec::After(Duration::from_secs(2)).resolve(1000), Ok(3000));
        for bad in ["coalesce:a,unique:b", "unique:", "expires:later"] {
            let h = Headers::parse(bad);
            let unreadable = matches!(h.key, Some(JobKeyHeader::Unreadable(_)))
                || matches!(h.expires, Some(TimeSpec::Unreadable(_)));
            assert!(unreadable, "{bad}: {h:?}");
        }
    }

    #[test]
    fn empty_frame_is_no_headers() {
        assert_eq!(Headers::parse(""), Headers::default());
        assert_eq!(Headers::default().encode(), "");
    }

    /// Every header in its place, commas only between them.
    #[test]
    fn encodes_every_header_in_order() {
        let frame = "reply-requested,guarantee,retry-count:2,timeout:30,content-type:msgpack,delay:1.5,\
                     expires:60,unique:k1,batch-reply,x-custom,y:1";
        let h = Headers::parse(frame);
        assert_eq!(h.encode(), frame);
        let only_other = Headers::parse("x-custom");
        assert_eq!(only_other.encode(), "x-custom");
    }
}
