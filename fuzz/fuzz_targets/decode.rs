//! Fuzz the eMQP decoder: the input is split into frames (`len: u8, bytes`)
//! and decoded with a small frame limit. It must never panic, and whatever
//! decodes must re-encode to frames that decode to the same message. A
//! BATCH's entries are read too.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run decode -- -max_total_time=60`
//! (scripts/fuzz.sh).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut frames: Vec<&[u8]> = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize).min(tail.len());
        frames.push(&tail[..n]);
        rest = &tail[n..];
    }
    if let Ok(env) = emq_proto::decode_with_limit(&frames, 200) {
        let again = emq_proto::decode(&env.message.encode_with_id(&env.msgid));
        assert_eq!(again.as_ref(), Ok(&env));
    }
    // A BATCH's entries are read in place: never a panic either.
    if let Some(Ok(mut entries)) = emq_proto::batch_entries(&frames) {
        let mut entry = Vec::new();
        while let Some(read) = entries.next_into(&mut entry) {
            if read.is_ok() {
                let _ = emq_proto::decode_with_limit(&entry, 200);
            }
        }
    }
});
