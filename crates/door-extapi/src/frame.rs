//! Frames on the wire: decoding what a client sends, encoding what the server sends.
//!
//! A client frame is one of three things: a request `{class, subclass?, cmd, data?, tid}`,
//! an answer to a server request `{result, tid, data?}`, or `{ack: tid}` asking for more
//! time to answer one. A frame with a `cmd` is a request whatever other keys it carries;
//! only a frame without one is an answer or an ack. An answer that cannot be read (a
//! `result` other than `ok`/`error`, no usable `tid`) is [`Incoming::Stray`]: it belongs to
//! the server's tid space, so it is logged and ignored, never answered under the client's.

use serde_json::{json, Map, Value};

use crate::error::{CmdError, INVALID_VALUE, MISSING_FIELD, SYNTAX_ERROR};

#[derive(Debug)]
pub enum Incoming {
    Request(Request),
    /// The client's answer to the server's request `tid`.
    Answer {
        tid: u64,
        result: Result<Option<Value>, CmdError>,
    },
    /// The client needs longer to answer the server's request `tid`.
    Ack {
        tid: u64,
    },
    /// An answer frame that cannot be read; why.
    Stray(&'static str),
}

#[derive(Debug)]
pub struct Request {
    pub class: String,
    /// `"core"` when the client left it out.
    pub subclass: String,
    pub cmd: String,
    pub data: Option<Value>,
    pub tid: u64,
}

/// Why a frame could not be decoded, with the tid to answer under (0 when it had none).
#[derive(Debug)]
pub struct Undecodable {
    pub tid: u64,
    pub error: CmdError,
}

pub fn decode(text: &str) -> Result<Incoming, Undecodable> {
    let value: Value = serde_json::from_str(text).map_err(|e| Undecodable {
        tid: 0,
        error: CmdError::new(SYNTAX_ERROR, format!("syntax error: {e}")),
    })?;
    let Value::Object(mut map) = value else {
        return Err(Undecodable {
            tid: 0,
            error: CmdError::new(SYNTAX_ERROR, "syntax error: a frame must be a JSON object"),
        });
    };
    let fail = |tid: u64, error: CmdError| Undecodable { tid, error };
    if !map.contains_key("cmd") {
        if let Some(ack) = map.get("ack") {
            let tid = ack
                .as_u64()
                .ok_or_else(|| fail(0, CmdError::invalid("ack")))?;
            return Ok(Incoming::Ack { tid });
        }
        if map.contains_key("result") {
            return Ok(answer(map));
        }
    }
    let tid = match map.remove("tid") {
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| fail(0, CmdError::invalid("tid")))?,
        Some(_) => return Err(fail(0, CmdError::invalid("tid"))),
        None => return Err(fail(0, CmdError::missing("tid"))),
    };
    let mut string = |key: &str, default: Option<&str>| -> Result<String, Undecodable> {
        match map.remove(key) {
            Some(Value::String(s)) => Ok(s),
            None | Some(Value::Null) => match default {
                Some(d) => Ok(d.to_string()),
                None => Err(fail(
                    tid,
                    CmdError::new(MISSING_FIELD, format!("missing field: {key}")),
                )),
            },
            Some(_) => Err(fail(
                tid,
                CmdError::new(INVALID_VALUE, format!("invalid value: {key}")),
            )),
        }
    };
    let class = string("class", None)?;
    let subclass = string("subclass", Some("core"))?;
    let cmd = string("cmd", None)?;
    Ok(Incoming::Request(Request {
        class,
        subclass,
        cmd,
        data: map.remove("data"),
        tid,
    }))
}

/// A client's answer to a server request: `{result, tid, data?}`.
fn answer(mut map: Map<String, Value>) -> Incoming {
    let Some(tid) = map.get("tid").and_then(Value::as_u64) else {
        return Incoming::Stray("an answer without a valid tid");
    };
    let data = map.remove("data");
    let result = match map.get("result").and_then(Value::as_str) {
        Some("ok") => Ok(data),
        Some("error") => Err(answer_error(data)),
        _ => return Incoming::Stray("an answer whose result is neither ok nor error"),
    };
    Incoming::Answer { tid, result }
}

/// The error inside a client's `{"result":"error","data":{code,error}}` answer.
fn answer_error(data: Option<Value>) -> CmdError {
    let data = data.unwrap_or(Value::Null);
    let code = data.get("code").and_then(Value::as_u64).unwrap_or(999_999);
    let error = data
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("error")
        .to_string();
    CmdError::new(code, error)
}

/// `{"result":"ok","tid":N,"data":…}`, with `data` left out when it is an empty object.
pub fn ok(tid: u64, data: Option<Value>) -> String {
    let mut frame = Map::new();
    frame.insert("result".into(), Value::from("ok"));
    frame.insert("tid".into(), Value::from(tid));
    match data {
        None => {}
        Some(Value::Object(m)) if m.is_empty() => {}
        Some(d) => {
            frame.insert("data".into(), d);
        }
    }
    Value::Object(frame).to_string()
}

/// `{"result":"ok","tid":N,"data":[…]}` for one page of a listing, with `"more":true`
/// when items are left beyond it.
pub fn ok_page(tid: u64, list: Value, more: bool) -> String {
    let mut frame = Map::new();
    frame.insert("result".into(), Value::from("ok"));
    frame.insert("tid".into(), Value::from(tid));
    frame.insert("data".into(), list);
    if more {
        frame.insert("more".into(), Value::Bool(true));
    }
    Value::Object(frame).to_string()
}

/// `{"result":"error","tid":N,"data":{"code":C,"error":"text"}}`.
pub fn error(tid: u64, e: &CmdError) -> String {
    json!({"result": "error", "tid": tid, "data": {"code": e.code, "error": e.error}}).to_string()
}

/// `{"ack":N}`: the request `tid` was taken and will be answered later.
pub fn ack(tid: u64) -> String {
    format!("{{\"ack\":{tid}}}")
}

/// A server-originated request.
pub fn request(
    tid: u64,
    class: &str,
    subclass: Option<&str>,
    cmd: &str,
    data: Option<Value>,
) -> String {
    let mut frame = Map::new();
    frame.insert("class".into(), Value::from(class));
    if let Some(s) = subclass {
        frame.insert("subclass".into(), Value::from(s));
    }
    frame.insert("cmd".into(), Value::from(cmd));
    if let Some(d) = data {
        frame.insert("data".into(), d);
    }
    frame.insert("tid".into(), Value::from(tid));
    Value::Object(frame).to_string()
}

/// An event request around already-rendered event data: the data is shared by every
/// recipient, only the tid differs.
pub fn event(tid: u64, data: &str) -> String {
    format!("{{\"class\":\"core\",\"cmd\":\"event\",\"tid\":{tid},\"data\":{data}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_requests_answers_and_acks() {
        match decode(r#"{"class":"core","cmd":"x","tid":3}"#).unwrap() {
            Incoming::Request(r) => assert_eq!((r.subclass.as_str(), r.tid), ("core", 3)),
            other => panic!("{other:?}"),
        }
        match decode(r#"{"result":"error","tid":4,"data":{"code":5,"error":"no"}}"#).unwrap() {
            Incoming::Answer { tid, result } => {
                assert_eq!(tid, 4);
                assert_eq!(result.unwrap_err(), CmdError::new(5, "no"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode(r#"{"ack":7}"#).unwrap(),
            Incoming::Ack { tid: 7 }
        ));
    }

    #[test]
    fn a_cmd_makes_a_request_and_unreadable_answers_are_stray() {
        match decode(r#"{"class":"core","subclass":"user","cmd":"list","tid":77,"ack":5}"#).unwrap()
        {
            Incoming::Request(r) => assert_eq!(r.tid, 77),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode(r#"{"result":"maybe","tid":1}"#).unwrap(),
            Incoming::Stray(_)
        ));
        assert!(matches!(
            decode(r#"{"result":"ok"}"#).unwrap(),
            Incoming::Stray(_)
        ));
    }

    #[test]
    fn undecodable_frames_say_why() {
        assert_eq!(decode("{nope").unwrap_err().error.code, SYNTAX_ERROR);
        assert_eq!(decode("[1,2]").unwrap_err().error.code, SYNTAX_ERROR);
        let e = decode(r#"{"class":"core","tid":9}"#).unwrap_err();
        assert_eq!((e.tid, e.error.code), (9, MISSING_FIELD));
        let e = decode(r#"{"class":1,"cmd":"x","tid":9}"#).unwrap_err();
        assert_eq!(e.error.code, INVALID_VALUE);
        assert_eq!(
            decode(r#"{"class":"c","cmd":"x"}"#).unwrap_err().error.code,
            MISSING_FIELD
        );
    }

    #[test]
    fn ok_leaves_out_empty_data_but_keeps_lists() {
        assert_eq!(ok(1, Some(json!({}))), r#"{"result":"ok","tid":1}"#);
        assert_eq!(
            ok(1, Some(json!([]))),
            r#"{"result":"ok","tid":1,"data":[]}"#
        );
        assert_eq!(
            event(2, "{}"),
            r#"{"class":"core","cmd":"event","tid":2,"data":{}}"#
        );
    }

    #[test]
    fn a_page_says_more_beside_its_data_only_when_there_is_more() {
        assert_eq!(
            ok_page(3, json!([1]), true),
            r#"{"result":"ok","tid":3,"data":[1],"more":true}"#
        );
        assert_eq!(
            ok_page(3, json!([]), false),
            r#"{"result":"ok","tid":3,"data":[]}"#
        );
    }
}
