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

/// Database `db` of the test Redis, emptied first (each test file uses its own numbers).
#[allow(dead_code)] // not every test file uses it
pub fn redis_db(db: u8) -> Option<String> {
    let url = redis_url()?;
    let base = url.trim_end_matches('/');
    let base = match base.rsplit_once('/') {
        Some((b, db)) if !db.is_empty() && db.bytes().all(|c| c.is_ascii_digit()) => b,
        _ => base,
    };
    let url = format!("{base}/{db}");
    let client = redis::Client::open(url.as_str()).expect("the test Redis's URL");
    let mut con = client.get_connection().expect("the test Redis");
    redis::cmd("FLUSHDB")
        .query::<()>(&mut con)
        .expect("emptying a test database");
    Some(url)
}

/// Marks `node` alive, as its heartbeat would.
#[allow(dead_code)] // not every test file uses it
pub fn alive(url: &str, prefix: &str, node: &str) {
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    redis::cmd("SET")
        .arg(format!("{prefix}:alive:{node}"))
        .arg(1)
        .query::<()>(&mut con)
        .unwrap();
}

/// The keys of users counted online under prefix `t`.
#[allow(dead_code)] // not every test file uses it
pub fn online_keys(url: &str) -> Vec<String> {
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    redis::cmd("KEYS")
        .arg("t:online:*")
        .query(&mut con)
        .unwrap()
}
