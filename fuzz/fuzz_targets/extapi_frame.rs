//! External API: a client's text frame, decoded as the connection decodes it, then its
//! `data` read through every typed accessor of `Args`. What is decoded is encoded again
//! with the server's own encoders and must decode to the same thing.
#![no_main]

use confer_door_extapi::args::Args;
use confer_door_extapi::frame::{self, Incoming};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // Text frames only: the WebSocket layer refuses invalid UTF-8 before the decoder.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match frame::decode(text) {
        Ok(Incoming::Request(r)) => {
            let again = frame::request(r.tid, &r.class, Some(&r.subclass), &r.cmd, r.data.clone());
            let Ok(Incoming::Request(back)) = frame::decode(&again) else {
                panic!("a request re-encoded does not decode as one: {again}");
            };
            assert_eq!(
                (&back.class, &back.subclass, &back.cmd, &back.data, back.tid),
                (&r.class, &r.subclass, &r.cmd, &r.data, r.tid)
            );
            accessors(r.data);
        }
        Ok(Incoming::Answer { tid, result }) => {
            let again = match &result {
                Ok(data) => frame::ok(tid, data.clone()),
                Err(e) => frame::error(tid, e),
            };
            let Ok(Incoming::Answer {
                tid: back_tid,
                result: back,
            }) = frame::decode(&again)
            else {
                panic!("an answer re-encoded does not decode as one: {again}");
            };
            assert_eq!(back_tid, tid);
            // `ok` leaves out `data` when it is an empty object.
            let result = result.map(|d| d.filter(|v| v.as_object().is_none_or(|m| !m.is_empty())));
            assert_eq!(back, result);
        }
        Ok(Incoming::Ack { .. }) | Ok(Incoming::Stray(_)) => {}
        Err(bad) => {
            let answer: Value = serde_json::from_str(&frame::error(bad.tid, &bad.error))
                .expect("the error answer is JSON");
            assert_eq!(answer["tid"], bad.tid);
        }
    }
});

/// Every accessor on every field of `data`, each on a fresh `Args` (they take the field).
fn accessors(data: Option<Value>) {
    let Ok(args) = Args::new(data.clone()) else {
        return;
    };
    let keys = args.unrecognized();
    for key in &keys {
        let fresh = || Args::new(data.clone()).expect("accepted once");
        let _ = fresh().opt_str(key);
        let _ = fresh().req_str(key);
        let _ = fresh().pattern(key);
        let _ = fresh().opt_u64(key);
        let _ = fresh().opt_object(key);
        let _ = fresh().req_object(key);
        let mut a = fresh();
        let _ = a.take(key);
        assert!(
            !a.unrecognized().contains(key),
            "a taken field is left over"
        );
    }
}
