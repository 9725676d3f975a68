//! Chat API arguments. Real clients emit JSON objects; the document's examples emit
//! strings, some with single quotes (`"{'group_id': 123}"`). All three are accepted. Ids
//! may be numbers or decimal strings; the document's misspellings are accepted as aliases.
//! Fields a command does not read are named in its ack (`unknown_fields`, [`Unread`]).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use confer_core::references::Shape;
use confer_core::{GroupId, Json, Uin};
use serde_json::{Map, Value};

use crate::codes::Failure;

/// A JSON value as the core's rule for naming uploads sees it
/// ([`confer_core::references::item_ids`]).
pub fn upload_shape(v: &Value) -> Shape<'_, Value> {
    match v {
        Value::Number(n) => Shape::Number(n.as_u64()),
        Value::String(s) => Shape::Text(s),
        Value::Object(o) => Shape::Object(o.get(confer_core::references::ITEM_ID)),
        Value::Array(items) => Shape::List(items),
        _ => Shape::Other,
    }
}

/// The fields a command left unread, filled in when its [`Args`] is dropped (see
/// [`Args::tracked`]).
#[derive(Clone, Default)]
pub struct Unread(Arc<Mutex<Vec<String>>>);

impl Unread {
    /// The unread field names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        names.sort();
        names
    }
}

/// A command's arguments. Every read takes the field out, so what is left when the
/// command is done is what it did not understand: reported in the ack as
/// `unknown_fields` (the documented misspellings are read like the names they stand for).
pub struct Args {
    map: Map<String, Value>,
    unread: Option<Unread>,
}

impl Drop for Args {
    fn drop(&mut self) {
        if let Some(unread) = &self.unread {
            let mut names = unread.0.lock().unwrap_or_else(|e| e.into_inner());
            names.extend(std::mem::take(&mut self.map).into_iter().map(|(k, _)| k));
        }
    }
}

/// Turn the document's single-quoted form into JSON: single-quoted strings become
/// double-quoted ones; double-quoted strings pass through.
fn relaxed_to_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in text.chars() {
        match quote {
            None => match c {
                '\'' => {
                    quote = Some('\'');
                    out.push('"');
                }
                '"' => {
                    quote = Some('"');
                    out.push('"');
                }
                _ => out.push(c),
            },
            Some(q) => {
                if escaped {
                    escaped = false;
                    out.push(c);
                } else if c == '\\' {
                    escaped = true;
                    out.push(c);
                } else if c == q {
                    quote = None;
                    out.push('"');
                } else if c == '"' {
                    out.push_str("\\\"");
                } else {
                    out.push(c);
                }
            }
        }
    }
    out
}

impl Args {
    /// Accept an object, a JSON string holding one, or the single-quoted form.
    pub fn parse(payload: Value) -> Result<Args, Failure> {
        let value = match payload {
            Value::String(text) => match serde_json::from_str::<Value>(&text) {
                Ok(v) => v,
                Err(_) => serde_json::from_str::<Value>(&relaxed_to_json(&text))
                    .map_err(|_| Failure::invalid("arguments are not a JSON object"))?,
            },
            other => other,
        };
        match value {
            Value::Object(map) => Ok(Args { map, unread: None }),
            Value::Null => Ok(Args {
                map: Map::new(),
                unread: None,
            }),
            _ => Err(Failure::invalid("arguments must be an object")),
        }
    }

    /// [`Args::parse`], and the names of the fields the command will have left unread
    /// once it is done with these arguments (they are dropped).
    pub fn tracked(payload: Value) -> Result<(Args, Unread), Failure> {
        let mut args = Args::parse(payload)?;
        let unread = Unread::default();
        args.unread = Some(unread.clone());
        Ok((args, unread))
    }

    /// The first of `names` present (the documented name first, then misspellings); the
    /// others count as read too.
    fn take(&mut self, names: &[&str]) -> Option<Value> {
        let mut found = None;
        for n in names {
            if let Some(v) = self.map.remove(*n) {
                found = found.or(Some(v));
            }
        }
        found.filter(|v| !v.is_null())
    }

    pub fn opt_u64(&mut self, names: &[&str]) -> Result<Option<u64>, Failure> {
        match self.take(names) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| Failure::invalid(names[0])),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| Failure::invalid(names[0])),
            Some(_) => Err(Failure::invalid(names[0])),
        }
    }

    /// A 32-bit number: a larger one is refused (result 1), never truncated.
    pub fn opt_u32(&mut self, names: &[&str]) -> Result<Option<u32>, Failure> {
        self.opt_u64(names)?
            .map(|n| u32::try_from(n).map_err(|_| Failure::invalid(names[0])))
            .transpose()
    }

    pub fn u64(&mut self, names: &[&str]) -> Result<u64, Failure> {
        self.opt_u64(names)?
            .ok_or_else(|| Failure::invalid(names[0]))
    }

    pub fn group(&mut self) -> Result<GroupId, Failure> {
        Ok(GroupId(self.u64(&["group_id"])?))
    }

    pub fn uin(&mut self, names: &[&str]) -> Result<Uin, Failure> {
        Ok(Uin(self.u64(names)?))
    }

    pub fn opt_str(&mut self, names: &[&str]) -> Result<Option<String>, Failure> {
        match self.take(names) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(Failure::invalid(names[0])),
        }
    }

    pub fn str(&mut self, names: &[&str]) -> Result<String, Failure> {
        self.opt_str(names)?
            .ok_or_else(|| Failure::invalid(names[0]))
    }

    /// A list of user numbers (numbers or strings).
    pub fn opt_uins(&mut self, names: &[&str]) -> Result<Option<BTreeSet<Uin>>, Failure> {
        match self.take(names) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::Number(n) => n.as_u64().map(Uin),
                    Value::String(s) => s.trim().parse().ok().map(Uin),
                    _ => None,
                })
                .collect::<Option<BTreeSet<Uin>>>()
                .map(Some)
                .ok_or_else(|| Failure::invalid(names[0])),
            Some(_) => Err(Failure::invalid(names[0])),
        }
    }

    /// A custom-content field the document types as a string; an object or array a
    /// client sends instead is kept as its JSON text.
    pub fn opt_text(&mut self, names: &[&str]) -> Result<Option<String>, Failure> {
        match self.take(names) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v @ (Value::Object(_) | Value::Array(_))) => Ok(Some(v.to_string())),
            Some(_) => Err(Failure::invalid(names[0])),
        }
    }

    /// The given display fields that are present, as a JSON object (stored and echoed).
    pub fn extras(&mut self, names: &[(&str, &str)]) -> Option<Json> {
        let mut out = Map::new();
        for (name, alias) in names {
            if let Some(Value::String(v)) = self.take(&[name, alias]) {
                out.insert((*name).to_string(), Value::String(v));
            }
        }
        (!out.is_empty()).then(|| Json::from_validated(Value::Object(out).to_string()))
    }

    /// Everything not taken yet, as a JSON object (relayed signalling).
    pub fn rest(mut self) -> Map<String, Value> {
        std::mem::take(&mut self.map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_json_strings_and_the_single_quoted_form() {
        let mut a = Args::parse(json!({"group_id": "42"})).unwrap();
        assert_eq!(a.group().unwrap(), GroupId(42));
        let mut b = Args::parse(json!("{\"group_id\": 7}")).unwrap();
        assert_eq!(b.group().unwrap(), GroupId(7));
        let mut c = Args::parse(json!(
            "{'appid': 123, 'name': \"Netalo\", 'type': 2, 'occupants_uin': [123, '456'], 'note': 'it\"s'}"
        ))
        .unwrap();
        assert_eq!(c.str(&["name"]).unwrap(), "Netalo");
        let uins = c
            .opt_uins(&["occupants_uins", "occupants_uin"])
            .unwrap()
            .unwrap();
        assert_eq!(uins, BTreeSet::from([Uin(123), Uin(456)]));
        assert_eq!(c.str(&["note"]).unwrap(), "it\"s");
    }

    #[test]
    fn fields_left_unread_are_reported_sorted_and_aliases_count_as_read() {
        let (mut args, unread) = Args::tracked(json!(
            {"group_id": 1, "text": "hi", "members": [2], "occupants_uin": [3], "occupants_uins": [4]}
        ))
        .unwrap();
        args.group().unwrap();
        let uins = args.opt_uins(&["occupants_uins", "occupants_uin"]).unwrap();
        assert_eq!(uins, Some(BTreeSet::from([Uin(4)])));
        drop(args);
        assert_eq!(unread.names(), ["members", "text"]);
        let (args, unread) = Args::tracked(json!({"sdp": "x"})).unwrap();
        let _ = args.rest();
        assert!(unread.names().is_empty(), "relayed fields are read");
    }

    #[test]
    fn garbage_and_wrong_types_are_invalid_parameters() {
        assert!(Args::parse(json!("{not json")).is_err());
        assert!(Args::parse(json!([1, 2])).is_err());
        let mut a = Args::parse(json!({"group_id": "abc", "uins": [1, {}]})).unwrap();
        assert_eq!(
            a.group().unwrap_err().code,
            crate::codes::INVALID_PARAMETERS
        );
        assert!(a.opt_uins(&["uins"]).is_err());
        assert!(a.group().is_err(), "missing");
    }
}
