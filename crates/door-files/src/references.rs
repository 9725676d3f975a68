//! How messages name uploaded files: an `attachments` value that is an item id (number or
//! decimal string), an object with `item_id`, or an array of those. Shared by the doors
//! that accept messages, so the format is defined once.

use serde_json::Value;

fn one(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Object(o) => o.get("item_id").and_then(one),
        _ => None,
    }
}

/// The item ids named by `value`, or `None` when it does not name files in this form.
pub fn item_ids(value: &Value) -> Option<Vec<u64>> {
    match value {
        Value::Array(items) => items.iter().map(one).collect(),
        other => one(other).map(|id| vec![id]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_numbers_strings_objects_and_lists() {
        assert_eq!(item_ids(&json!(5)), Some(vec![5]));
        assert_eq!(
            item_ids(&json!({"item_id": "7", "name": "x"})),
            Some(vec![7])
        );
        assert_eq!(
            item_ids(&json!([1, "2", {"item_id": 3}])),
            Some(vec![1, 2, 3])
        );
        assert_eq!(item_ids(&json!([1, {"url": "x"}])), None);
        assert_eq!(item_ids(&json!("a picture")), None);
    }
}
