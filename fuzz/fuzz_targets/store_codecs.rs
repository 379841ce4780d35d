//! The store's value codecs, as read back from Redis or a file: a candidate list
//! (`store::decode_list`), the online feature snapshot, a session event and an exposure-log line.
//! `data[0]` picks the codec (and the list width). Contract: `Ok` or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recsys_core::exposure::parse_line;
use recsys_core::store::{FeatureSnapshot, SessionEvent, decode_list};

fuzz_target!(|data: &[u8]| {
    techshop_recs_fuzz::only_uncaught_panics_crash();
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    match pick % 4 {
        0 => {
            let width = usize::from(pick >> 2) % 9;
            let _ = decode_list(body, width, "fuzz");
        }
        1 => {
            let _ = FeatureSnapshot::decode(body, "fuzz");
        }
        2 => {
            if let Ok(s) = std::str::from_utf8(body) {
                if let Ok(e) = SessionEvent::decode(s) {
                    // What decodes encodes back to something that decodes the same.
                    assert_eq!(SessionEvent::decode(&e.encode()).ok(), Some(e));
                }
            }
        }
        _ => {
            if let Ok(s) = std::str::from_utf8(body) {
                let _ = parse_line(s, "fuzz");
            }
        }
    }
});
