//! The hub's chathost API: what a box or a browser sends (rosters, message arrays, the
//! bearer credential, path segments, login forms), decoded as the door decodes it. The
//! first byte picks the decoder. Nothing panics; a credential it accepts has a box id
//! without `|` and neither part empty; every message accepted has an id; a decoded
//! segment is never longer than its text.
#![no_main]

use confer_door_chathost::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 5 {
        0 => {
            let _ = fuzzing::roster(rest);
        }
        1 => {
            if let Ok(ms) = fuzzing::messages(rest) {
                assert!(ms.iter().all(|(id, _)| !id.is_empty()), "{ms:?}");
            }
        }
        2 => {
            if let Some((boxid, token)) = fuzzing::credential(rest) {
                assert!(!boxid.is_empty() && !token.is_empty() && !boxid.contains('|'));
            }
        }
        3 => {
            let text = String::from_utf8_lossy(rest);
            assert!(fuzzing::segment(&text).len() <= text.len());
        }
        _ => {
            let _ = fuzzing::form(rest);
        }
    }
});
