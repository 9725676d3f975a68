//! `GET /messageStatus`: the box's last sync time as text (unix seconds, `1` if never),
//! after preparing its hub→edge batch (`Core::hub_prepare_batch`) for `GET
//! /messages/<that value>`.
//!
//! confer's extension: `?stored=<since>`, the `since` of the last batch the edge stored
//! (a confer edge sends it; the original edge does not, and the original hub ignores
//! it). Items handed out as a later `since` (a batch lost on the way) are handed again.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::{core_error, error, ChathostApi};

/// The `stored` parameter of a query string, if any; a value that is not a whole number
/// is refused.
fn stored_of(query: Option<&str>) -> Result<Option<i64>, Response> {
    let Some(raw) = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("stored="))
    else {
        return Ok(None);
    };
    raw.parse::<u64>()
        .map(|n| Some(i64::try_from(n).unwrap_or(i64::MAX)))
        .map_err(|_| error(StatusCode::BAD_REQUEST, "stored must be a whole number"))
}

pub(crate) async fn message_status(
    api: &ChathostApi,
    boxid: &str,
    query: Option<&str>,
) -> Response {
    let stored = match stored_of(query) {
        Ok(s) => s,
        Err(refused) => return refused,
    };
    match api.core.hub_prepare_batch(boxid, stored).await {
        Ok(since) => ([(header::CONTENT_TYPE, "text/plain")], since.to_string()).into_response(),
        Err(e) => core_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::stored_of;

    #[test]
    fn the_stored_parameter_is_read_from_the_query_and_a_bad_one_refused() {
        assert_eq!(stored_of(None).ok(), Some(None));
        assert_eq!(stored_of(Some("boxid=b1")).ok(), Some(None));
        assert_eq!(
            stored_of(Some("boxid=b1&stored=1700")).ok(),
            Some(Some(1700))
        );
        assert!(stored_of(Some("stored=soon")).is_err());
        assert!(stored_of(Some("stored=-1")).is_err());
    }
}
