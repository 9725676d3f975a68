//! Attachments: an upload's multipart body, read as `POST /api/v1/files` reads it. The
//! input's first line is the `Content-Type` header, the rest the body. An accepted file is
//! within the size limit and has a SHA-256; a refusal is a 4xx.
#![no_main]

use std::sync::OnceLock;

use confer_door_files::fuzzing;
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;

/// Small, so that the fuzzer reaches the over-limit path too.
const MAX_UPLOAD: u64 = 64;

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let content_type = content_type.strip_suffix(b"\r").unwrap_or(content_type);
    match runtime().block_on(fuzzing::upload(content_type, body.to_vec(), MAX_UPLOAD)) {
        Ok((_name, sha, size, mime)) => {
            assert!(size <= MAX_UPLOAD);
            assert!(size <= body.len() as u64);
            assert_eq!(sha.len(), 64);
            assert!(!mime.is_empty());
        }
        Err((status, _)) => assert!((400..500).contains(&status), "status {status}"),
    }
});
