//! How a message names uploaded files, the URL an upload is downloaded from, and what a
//! file is called after re-encoding: one definition for every door.
//!
//! A message names uploads with an item id (a whole number, or a decimal string), an
//! object with an `item_id` member, or a list of those. The core has no JSON type, so each
//! door shows its own parsed value through [`Shape`] and [`item_ids`] applies the rule.

/// The member of an object that names an upload.
pub const ITEM_ID: &str = "item_id";

/// A door's parsed value, as far as naming uploads goes.
pub enum Shape<'a, V> {
    /// A number: `Some` when it is a whole number that fits in a `u64`.
    Number(Option<u64>),
    Text(&'a str),
    /// An object, with its [`ITEM_ID`] member if it has one.
    Object(Option<&'a V>),
    List(&'a [V]),
    /// Anything else (null, booleans).
    Other,
}

fn one<'a, V>(value: &'a V, shape: &impl Fn(&'a V) -> Shape<'a, V>) -> Option<u64> {
    match shape(value) {
        Shape::Number(n) => n,
        Shape::Text(s) => s.trim().parse().ok(),
        Shape::Object(Some(id)) => match shape(id) {
            Shape::Number(n) => n,
            Shape::Text(s) => s.trim().parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// The item ids `value` names, or `None` when it does not name files in this form (a
/// door keeps such a value as the client's own content).
pub fn item_ids<'a, V>(value: &'a V, shape: impl Fn(&'a V) -> Shape<'a, V>) -> Option<Vec<u64>> {
    match shape(value) {
        Shape::List(items) => items.iter().map(|v| one(v, &shape)).collect(),
        _ => one(value, &shape).map(|id| vec![id]),
    }
}

/// The path an upload is served at: `/files/{item_id}/{file name}`, the name
/// percent-encoded (all but RFC 3986's unreserved characters), so a name with `?`, `#`,
/// spaces or non-ASCII letters downloads through it as it is.
pub fn file_url(item_id: u64, filename: &str) -> String {
    let mut url = format!("/files/{item_id}/");
    for b in filename.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// `filename` with its extension replaced by `extension` (or given it, when it has none):
/// what a file is called once re-encoded into another format (`cat.png` → `cat.webp`).
pub fn with_extension(filename: &str, extension: &str) -> String {
    format!("{}.{extension}", stem(filename))
}

/// The name without its extension (a leading dot does not start one).
fn stem(filename: &str) -> &str {
    match filename.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => filename,
    }
}

/// Whether `requested` names the same file as `current` under an extension the file had
/// before it was re-encoded (`cat.png` for what is now `cat.webp`), so an old URL still
/// leads to it.
pub fn is_former_name(requested: &str, current: &str) -> bool {
    requested != current && stem(requested) == stem(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for a door's JSON value.
    enum V {
        N(f64),
        S(&'static str),
        O(Option<Box<V>>),
        L(Vec<V>),
        Null,
    }

    fn shape(v: &V) -> Shape<'_, V> {
        match v {
            V::N(n) if n.fract() == 0.0 && *n >= 0.0 => Shape::Number(Some(*n as u64)),
            V::N(_) => Shape::Number(None),
            V::S(s) => Shape::Text(s),
            V::O(id) => Shape::Object(id.as_deref()),
            V::L(items) => Shape::List(items),
            V::Null => Shape::Other,
        }
    }

    #[test]
    fn ids_numbers_strings_objects_and_lists() {
        assert_eq!(item_ids(&V::N(5.0), shape), Some(vec![5]));
        assert_eq!(
            item_ids(&V::O(Some(Box::new(V::S(" 7")))), shape),
            Some(vec![7])
        );
        let list = V::L(vec![V::N(1.0), V::S("2"), V::O(Some(Box::new(V::N(3.0))))]);
        assert_eq!(item_ids(&list, shape), Some(vec![1, 2, 3]));
        assert_eq!(item_ids(&V::L(vec![V::N(1.0), V::O(None)]), shape), None);
        assert_eq!(item_ids(&V::S("a picture"), shape), None);
        assert_eq!(item_ids(&V::N(1.5), shape), None);
        assert_eq!(item_ids(&V::Null, shape), None);
        assert_eq!(
            item_ids(&V::L(vec![V::L(vec![])]), shape),
            None,
            "flat lists only"
        );
    }

    #[test]
    fn a_re_encoded_file_gets_the_new_extension_and_keeps_its_former_names() {
        assert_eq!(with_extension("cat.png", "webp"), "cat.webp");
        assert_eq!(with_extension("a.b.png", "webp"), "a.b.webp");
        assert_eq!(with_extension("README", "txt"), "README.txt");
        assert_eq!(with_extension(".hidden", "webp"), ".hidden.webp");
        assert!(is_former_name("cat.png", "cat.webp"));
        assert!(is_former_name("cat", "cat.webp"));
        assert!(!is_former_name("cat.webp", "cat.webp"));
        assert!(!is_former_name("dog.png", "cat.webp"));
    }

    #[test]
    fn file_urls_are_percent_encoded() {
        assert_eq!(file_url(3, "cat.png"), "/files/3/cat.png");
        assert_eq!(
            file_url(4, "what? #1 é.txt"),
            "/files/4/what%3F%20%231%20%C3%A9.txt"
        );
    }
}
