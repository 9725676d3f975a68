//! The wire format: client commands `{dst, lng, cmd, seq, obj, params}` (every `params`
//! value a string) and the server's `{"ANSW":{cmd, seq, obj, result}}` answers and
//! `{"EVT":{evt, obj, evttype?, result}}` events. Pure code, unit-tested.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::codes::{VspError, BAD_FRAME, BAD_PARAMS};

/// A decoded client command. `dst` and `lng` are accepted and not used.
#[derive(Debug, PartialEq, Eq)]
pub struct Command {
    pub obj: String,
    pub cmd: String,
    /// 0: no answer wanted (errors are answered all the same).
    pub seq: u64,
    pub params: Params,
}

/// A frame that is not a command: answered with what could be read of it.
#[derive(Debug, PartialEq, Eq)]
pub struct BadFrame {
    pub obj: String,
    pub cmd: String,
    pub seq: u64,
    pub error: VspError,
}

/// A command's parameters; each read takes its value out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    pub fn from_pairs<const N: usize>(pairs: [(&str, &str); N]) -> Self {
        Params(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// The parameters, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    pub fn opt(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    pub fn req(&mut self, key: &str) -> Result<String, VspError> {
        self.opt(key)
            .ok_or_else(|| VspError::bad_param(key, "missing"))
    }

    /// A required decimal id (`ID`, `PartyID`).
    pub fn id(&mut self, key: &str) -> Result<u64, VspError> {
        self.req(key)?
            .trim()
            .parse::<u64>()
            .map_err(|_| VspError::bad_param(key, "not a decimal number"))
    }

    /// An optional flag: `"0"` or `"1"` (also `"false"`/`"true"`).
    pub fn flag(&mut self, key: &str) -> Result<Option<bool>, VspError> {
        match self.opt(key).as_deref() {
            None => Ok(None),
            Some("1" | "true") => Ok(Some(true)),
            Some("0" | "false") => Ok(Some(false)),
            Some(_) => Err(VspError::bad_param(key, "not \"0\" or \"1\"")),
        }
    }
}

/// Decode one text frame.
pub fn decode(text: &str) -> Result<Command, BadFrame> {
    let bad = |obj: &str, cmd: &str, seq: u64, error: VspError| BadFrame {
        obj: obj.to_string(),
        cmd: cmd.to_string(),
        seq,
        error,
    };
    let mut frame = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(bad(
                "",
                "",
                0,
                VspError::new(BAD_FRAME, "bad frame: not a JSON object"),
            ))
        }
        Err(_) => {
            return Err(bad(
                "",
                "",
                0,
                VspError::new(BAD_FRAME, "bad frame: not JSON"),
            ))
        }
    };
    let seq = match frame.remove("seq") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or(0),
        // Some clients send numbers as strings, as they send every parameter.
        Some(Value::String(s)) if s.parse::<u64>().is_ok() => s.parse::<u64>().unwrap_or(0),
        Some(_) => {
            return Err(bad(
                "",
                "",
                0,
                VspError::new(BAD_FRAME, "bad frame: seq is not a number"),
            ))
        }
    };
    let text_field = |frame: &mut Map<String, Value>, key: &str| match frame.remove(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("bad frame: {key} is not a string")),
        None => Err(format!("bad frame: {key} is missing")),
    };
    let cmd = text_field(&mut frame, "cmd");
    let obj = text_field(&mut frame, "obj");
    let (cmd, obj) = match (cmd, obj) {
        (Ok(cmd), Ok(obj)) => (cmd, obj),
        (cmd, obj) => {
            let why = match (&cmd, &obj) {
                (Err(e), _) | (_, Err(e)) => e.clone(),
                _ => String::new(),
            };
            let cmd = cmd.unwrap_or_default();
            let obj = obj.unwrap_or_default();
            return Err(bad(&obj, &cmd, seq, VspError::new(BAD_FRAME, why)));
        }
    };
    let params = match frame.remove("params") {
        None | Some(Value::Null) => Params::default(),
        Some(Value::Object(map)) => {
            let mut params = BTreeMap::new();
            for (key, value) in map {
                match value {
                    Value::String(s) => {
                        params.insert(key, s);
                    }
                    _ => {
                        let e = VspError::new(
                            BAD_PARAMS,
                            format!("bad parameter {key}: every parameter value is a string"),
                        );
                        return Err(bad(&obj, &cmd, seq, e));
                    }
                }
            }
            Params(params)
        }
        Some(_) => {
            let e = VspError::new(BAD_PARAMS, "bad parameters: params is not an object");
            return Err(bad(&obj, &cmd, seq, e));
        }
    };
    Ok(Command {
        obj,
        cmd,
        seq,
        params,
    })
}

/// A command as a client sends it (tests and the fuzz target's round trip).
pub fn command(c: &Command) -> String {
    let params: Map<String, Value> = c
        .params
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    json!({"dst": "std", "lng": "en", "cmd": c.cmd, "seq": c.seq, "obj": c.obj, "params": params})
        .to_string()
}

/// `{"ANSW":{cmd, seq, obj, result:{code:0, …extra}}}` or the error's `{code, text}`.
pub fn answer(
    obj: &str,
    cmd: &str,
    seq: u64,
    result: &Result<Map<String, Value>, VspError>,
) -> String {
    let result = match result {
        Ok(extra) => {
            let mut r = Map::new();
            r.insert("code".into(), Value::from(0));
            for (k, v) in extra {
                r.insert(k.clone(), v.clone());
            }
            Value::Object(r)
        }
        Err(e) => json!({"code": e.code, "text": e.text}),
    };
    json!({"ANSW": {"cmd": cmd, "seq": seq, "obj": obj, "result": result}}).to_string()
}

/// `{"EVT":{evt, obj, evttype?, result}}`.
pub fn event(obj: &str, evt: &str, evttype: Option<&str>, result: Value) -> String {
    let mut e = Map::new();
    e.insert("evt".into(), Value::from(evt));
    e.insert("obj".into(), Value::from(obj));
    if let Some(t) = evttype {
        e.insert("evttype".into(), Value::from(t));
    }
    e.insert("result".into(), result);
    json!({ "EVT": e }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::BAD_FRAME;

    #[test]
    fn a_command_decodes_with_string_params() {
        let c = decode(
            r#"{"dst":"std","lng":"en","cmd":"join","seq":3,"obj":"conf","params":{"ID":"12"}}"#,
        );
        assert_eq!(
            c,
            Ok(Command {
                obj: "conf".into(),
                cmd: "join".into(),
                seq: 3,
                params: Params::from_pairs([("ID", "12")]),
            })
        );
    }

    #[test]
    fn bad_frames_say_why_with_what_could_be_read() {
        let code = |t: &str| decode(t).map_err(|b| (b.error.code, b.seq, b.cmd));
        assert_eq!(code("nope"), Err((BAD_FRAME, 0, String::new())));
        assert_eq!(code("[1]"), Err((BAD_FRAME, 0, String::new())));
        assert_eq!(
            code(r#"{"seq":4,"obj":"cd"}"#),
            Err((BAD_FRAME, 4, String::new()))
        );
        assert_eq!(
            code(r#"{"seq":4,"cmd":7,"obj":"cd"}"#),
            Err((BAD_FRAME, 4, String::new()))
        );
        assert_eq!(
            code(r#"{"seq":5,"cmd":"join","obj":"conf","params":{"ID":12}}"#),
            Err((BAD_PARAMS, 5, "join".into()))
        );
    }

    #[test]
    fn frames_are_encoded_as_the_spec_shows() {
        assert_eq!(
            answer(
                "cd",
                "create",
                2,
                &Ok(Map::from_iter([("ID".into(), Value::from(9))]))
            ),
            r#"{"ANSW":{"cmd":"create","seq":2,"obj":"cd","result":{"code":0,"ID":9}}}"#
        );
        assert_eq!(
            answer("cd", "x", 0, &Err(VspError::new(3, "unknown command"))),
            r#"{"ANSW":{"cmd":"x","seq":0,"obj":"cd","result":{"code":3,"text":"unknown command"}}}"#
        );
        assert_eq!(
            event("timer", "time", None, json!({"t": 5})),
            r#"{"EVT":{"evt":"time","obj":"timer","result":{"t":5}}}"#
        );
    }
}
