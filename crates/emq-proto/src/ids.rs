//! Message ids. Only uniqueness matters, so an id source draws one random
//! 128-bit seed (given by whoever owns it, so that cores stay deterministic)
//! and counts from it, writing each value in uuid form as EventMQ does.

/// A source of fresh msgids: `seed`, `seed + 1`, ... in uuid form.
#[derive(Debug, Clone)]
pub struct MsgIds {
    next: u128,
}

impl MsgIds {
    /// Ids counting from `seed`. Processes draw it from the OS
    /// (`emq_net::random_seed`); tests pass a constant and get a
    /// reproducible run.
    pub fn from_seed(seed: u128) -> MsgIds {
        MsgIds { next: seed }
    }

    /// The next id.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> String {
        let n = self.next;
        self.next = n.wrapping_add(1);
        uuid_text(n)
    }
}

/// `n` as a hyphenated uuid: 8-4-4-4-12 lower-case hex digits.
pub fn uuid_text(n: u128) -> String {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::from_u128(n).hyphenated().encode_lower(&mut buf).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msgids_are_unique_uuid_strings() {
        let mut ids = MsgIds::from_seed(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        let all: std::collections::HashSet<String> = (0..10_000).map(|_| ids.next()).collect();
        assert_eq!(all.len(), 10_000);
        assert!(all.iter().all(|id| id.len() == 36 && uuid::Uuid::parse_str(id).is_ok()));
        assert_eq!(
            MsgIds::from_seed(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210).next(),
            "01234567-89ab-cdef-fedc-ba9876543210"
        );
        // Counting past the top wraps instead of panicking.
        let mut top = MsgIds::from_seed(u128::MAX);
        top.next();
        assert_eq!(top.next(), "00000000-0000-0000-0000-000000000000");
    }
}
