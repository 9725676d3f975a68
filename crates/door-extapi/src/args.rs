//! [`Args`]: typed access to a command's `data` object that remembers which fields it
//! read, so whatever is left is reported as `unrecognized_fields`.

use confer_core::references::Shape;
use serde_json::{Map, Value};

use crate::error::{CmdError, INVALID_PARAMETERS};

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

pub struct Args {
    map: Map<String, Value>,
}

impl Args {
    /// `data` must be an object or absent (then it is empty).
    pub fn new(data: Option<Value>) -> Result<Self, CmdError> {
        match data {
            None | Some(Value::Null) => Ok(Args { map: Map::new() }),
            Some(Value::Object(map)) => Ok(Args { map }),
            Some(_) => Err(CmdError::new(INVALID_PARAMETERS, "data must be an object")),
        }
    }

    /// A field's raw value, taken out of the remaining set.
    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key)
    }

    pub fn req_str(&mut self, key: &str) -> Result<String, CmdError> {
        self.opt_str(key)?.ok_or_else(|| CmdError::missing(key))
    }

    /// A string field; a field of another type is an invalid value, not a missing one.
    pub fn opt_str(&mut self, key: &str) -> Result<Option<String>, CmdError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(CmdError::invalid(key)),
        }
    }

    /// A pattern field of an event or subscription: absent or `"*"` is a wildcard.
    pub fn pattern(&mut self, key: &str) -> Result<Option<String>, CmdError> {
        Ok(self.opt_str(key)?.filter(|s| s != "*"))
    }

    pub fn opt_u64(&mut self, key: &str) -> Result<Option<u64>, CmdError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| CmdError::invalid(key)),
            Some(_) => Err(CmdError::invalid(key)),
        }
    }

    /// An object field (absent is `None`).
    pub fn opt_object(&mut self, key: &str) -> Result<Option<Map<String, Value>>, CmdError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(CmdError::invalid(key)),
        }
    }

    pub fn req_object(&mut self, key: &str) -> Result<Map<String, Value>, CmdError> {
        self.opt_object(key)?.ok_or_else(|| CmdError::missing(key))
    }

    /// The names of the fields no parser took, sorted.
    /// Every field not read yet, taken: a command that keeps whatever else it is given
    /// (`login`'s session metadata) leaves nothing unrecognized.
    pub fn rest(&mut self) -> Map<String, Value> {
        std::mem::take(&mut self.map)
    }

    pub fn unrecognized(self) -> Vec<String> {
        let mut keys: Vec<String> = self.map.into_iter().map(|(k, _)| k).collect();
        keys.sort();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{INVALID_VALUE, MISSING_FIELD};
    use serde_json::json;

    #[test]
    fn typed_fields_missing_mistyped_and_leftovers() {
        let mut args = Args::new(Some(
            json!({"a": "x", "n": 5, "bad": 1, "extra": true, "w": "*"}),
        ))
        .unwrap();
        assert_eq!(args.req_str("a").unwrap(), "x");
        assert_eq!(args.opt_u64("n").unwrap(), Some(5));
        assert_eq!(args.req_str("bad").unwrap_err().code, INVALID_VALUE);
        assert_eq!(args.req_str("nope").unwrap_err().code, MISSING_FIELD);
        assert_eq!(args.pattern("w").unwrap(), None);
        assert_eq!(args.unrecognized(), vec!["extra".to_string()]);
        assert_eq!(
            Args::new(Some(json!([1]))).err().unwrap().code,
            INVALID_PARAMETERS
        );
    }
}
