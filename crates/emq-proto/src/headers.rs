//! The REQUEST headers frame: comma-separated flags and `key:value` pairs, as
//! EventMQ writes them (`reply-requested,guarantee,retry-count:3,timeout:30`).
//! Unknown headers are kept and re-emitted untouched, so that a newer peer's
//! headers survive a trip through this router.

use crate::ContentType;

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
    fn empty_frame_is_no_headers() {
        assert_eq!(Headers::parse(""), Headers::default());
        assert_eq!(Headers::default().encode(), "");
    }
}
