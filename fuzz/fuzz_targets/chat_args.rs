//! Chat API: an event's argument, as a string (JSON text or the relaxed single-quoted form
//! of the document's examples) and, where it is JSON, as the value itself, then read
//! through every typed accessor of `Args`. An object written in the single-quoted form
//! must parse to the same object as its JSON.
#![no_main]

use confer_door_chat::args::Args;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(args) = Args::parse(Value::String(text.to_string())) {
        accessors(args.rest());
    }
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return;
    };
    if let Value::Object(map) = &value {
        let relaxed = single_quoted(&value);
        match Args::parse(Value::String(relaxed.clone())) {
            Ok(args) => assert_eq!(&args.rest(), map, "{relaxed}"),
            Err(f) => panic!("the single-quoted form {relaxed} is refused: {}", f.message),
        }
    }
    if let Ok(args) = Args::parse(value) {
        accessors(args.rest());
    }
});

/// Every accessor on every field, each on a fresh `Args` (they take the field).
fn accessors(map: Map<String, Value>) {
    let fresh = || Args::parse(Value::Object(map.clone())).expect("an object is accepted");
    for key in map.keys() {
        let names = [key.as_str()];
        let _ = fresh().opt_u64(&names);
        let _ = fresh().u64(&names);
        let _ = fresh().group();
        let _ = fresh().uin(&names);
        let _ = fresh().opt_str(&names);
        let _ = fresh().str(&names);
        let _ = fresh().opt_uins(&names);
        let _ = fresh().opt_text(&names);
        let _ = fresh().extras(&[(key.as_str(), "alias")]);
        let rest = {
            let mut a = fresh();
            let _ = a.opt_str(&names);
            a.rest()
        };
        assert!(!rest.contains_key(key), "a taken field is left over");
    }
}

/// The document's style: every string in single quotes, a quote inside escaped.
fn single_quoted(value: &Value) -> String {
    match value {
        Value::String(s) => {
            let json = Value::from(s.as_str()).to_string();
            format!("'{}'", json[1..json.len() - 1].replace('\'', "\\'"))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(single_quoted).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}: {}",
                        single_quoted(&Value::from(k.as_str())),
                        single_quoted(v)
                    )
                })
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        other => other.to_string(),
    }
}
