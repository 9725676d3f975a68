//! Conference door: a client's text frame, decoded as the connection decodes it, then
//! every parameter read through every typed accessor of `Params`. A decoded command is
//! encoded again in the client's form and must decode to the same thing; a bad frame's
//! answer is JSON echoing its `seq`.
#![no_main]

use confer_door_vsp::frame::{self, Params};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // Text frames only: the WebSocket layer refuses invalid UTF-8 before the decoder.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match frame::decode(text) {
        Ok(command) => {
            let again = frame::command(&command);
            let back = frame::decode(&again).expect("a command re-encoded decodes");
            assert_eq!(back, command);
            let keys: Vec<String> = command.params.iter().map(|(k, _)| k.clone()).collect();
            for key in &keys {
                let fresh = || frame::decode(&again).expect("decodes").params;
                let mut p: Params = fresh();
                let _ = p.req(key);
                assert!(p.opt(key).is_none(), "a taken parameter is left over");
                let _ = fresh().id(key);
                let _ = fresh().flag(key);
            }
        }
        Err(bad) => {
            let answer: Value = serde_json::from_str(&frame::answer(&bad.obj, &bad.cmd, bad.seq, &Err(bad.error)))
                .expect("the error answer is JSON");
            assert_eq!(answer["ANSW"]["seq"], bad.seq);
        }
    }
});
