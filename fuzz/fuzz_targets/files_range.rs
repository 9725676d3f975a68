//! Attachments: a `Range` header value, read as the file server reads it, for files of
//! several sizes. A range it grants lies inside the file; a plain `bytes=a-b` inside the
//! file is granted as written.
#![no_main]

use confer_door_files::fuzzing;
use libfuzzer_sys::fuzz_target;

const SIZES: [u64; 7] = [0, 1, 10, 100, 65_536, u64::MAX / 2, u64::MAX];

fuzz_target!(|data: &[u8]| {
    for size in SIZES {
        match fuzzing::range(data, size) {
            Ok(Some((start, end))) => {
                assert!(start <= end && end < size, "{start}-{end} of {size}");
            }
            Ok(None) | Err(()) => {}
        }
        if let Some((a, b)) = plain(data) {
            if a <= b && b < size {
                assert_eq!(fuzzing::range(data, size), Ok(Some((a, b))));
            }
        }
    }
});

/// `bytes=a-b` with nothing else.
fn plain(data: &[u8]) -> Option<(u64, u64)> {
    let spec = std::str::from_utf8(data).ok()?.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return None;
    }
    Some((a.parse().ok()?, b.parse().ok()?))
}
