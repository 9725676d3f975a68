//! Chat API arguments. Real clients emit JSON objects; the document's examples emit
//! strings, some with single quotes (`"{'group_id': 123}"`). All three are accepted. Ids
//! may be numbers or decimal strings; the document's misspellings are accepted as aliases.

use std::collections::BTreeSet;

use confer_core::{GroupId, Json, Uin};
use serde_json::{Map, Value};

use crate::codes::Failure;

pub struct Args {
    map: Map<String, Value>,
}

/// Turn the document's single-quoted form into JSON: single-quoted strings become
/// double-quoted ones; double-quoted strings pass through. Inside either, `\'` is a quote.
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
                    // `\'` is a quote (JavaScript's and Python's escape, not JSON's).
                    escaped = false;
                    if c != '\'' {
                        out.push('\\');
                    }
                    out.push(c);
                } else if c == '\\' {
                    escaped = true;
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
            Value::Object(map) => Ok(Args { map }),
            Value::Null => Ok(Args { map: Map::new() }),
            _ => Err(Failure::invalid("arguments must be an object")),
        }
    }

    /// The first of `names` present (the documented name first, then misspellings).
    fn take(&mut self, names: &[&str]) -> Option<Value> {
        names
            .iter()
            .find_map(|n| self.map.remove(*n))
            .filter(|v| !v.is_null())
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
    pub fn rest(self) -> Map<String, Value> {
        self.map
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
    fn an_escaped_single_quote_inside_single_quotes_is_a_quote() {
        // Found by the fuzz target chat_args: `\'` became an invalid JSON escape.
        let mut a = Args::parse(json!(r#"{'note': 'it\'s', 'path': 'a\\'}"#)).unwrap();
        assert_eq!(a.str(&["note"]).unwrap(), "it's");
        assert_eq!(a.str(&["path"]).unwrap(), "a\\");
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
