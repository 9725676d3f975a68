//! What the Redis tests share: where the test Redis is.

/// `CONFER_TEST_REDIS_URL` (scripts/suite-scale starts a Redis); without it the test says
/// it skipped, unless `CONFER_REQUIRE_SERVICES` is set.
pub fn redis_url() -> Option<String> {
    let Ok(url) = std::env::var("CONFER_TEST_REDIS_URL") else {
        assert!(
            std::env::var_os("CONFER_REQUIRE_SERVICES").is_none(),
            "CONFER_REQUIRE_SERVICES is set but CONFER_TEST_REDIS_URL is not"
        );
        eprintln!("skipped: CONFER_TEST_REDIS_URL is not set (scripts/suite-scale sets it)");
        return None;
    };
    Some(url)
}
