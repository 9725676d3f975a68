//! A PostgreSQL database of its own for one test, on the server `CONFER_TEST_POSTGRES_URL`
//! names (scripts/suite-scale starts one), dropped when the test ends: the one helper
//! both the PostgreSQL store's suite and the server's several-node tests make their
//! databases with.
//!
//! Without `CONFER_TEST_POSTGRES_URL`, [`TestDatabase::fresh`] says the test skipped and
//! gives `None`, unless `CONFER_REQUIRE_SERVICES` is set (the test command sets it), when
//! it fails.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A database of its own on the test server, dropped (with its connections) on drop.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    /// Where it is: the server's URL with this database's name as its path.
    pub url: String,
}

impl TestDatabase {
    /// A fresh database named `<prefix>_<pid>_<n>_<µs>`, or `None` (saying why) when no
    /// server is configured.
    pub fn fresh(prefix: &str) -> Option<TestDatabase> {
        let Ok(admin_url) = std::env::var("CONFER_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var_os("CONFER_REQUIRE_SERVICES").is_none(),
                "CONFER_REQUIRE_SERVICES is set but CONFER_TEST_POSTGRES_URL is not"
            );
            eprintln!("skipped: CONFER_TEST_POSTGRES_URL is not set (scripts/suite-scale sets it)");
            return None;
        };
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{prefix}_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            confer_core::model::now_us()
        );
        admin(&admin_url, &format!("CREATE DATABASE {name}"));
        let url = database_url(&admin_url, &name);
        Some(TestDatabase {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        admin(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// The URL of database `name` on the server of `admin_url` (its path replaced).
pub fn database_url(admin_url: &str, name: &str) -> String {
    let (base, _) = admin_url
        .rsplit_once('/')
        .filter(|(base, _)| base.contains("//") && !base.ends_with('/'))
        .unwrap_or((admin_url, ""));
    format!("{base}/{name}")
}

/// Run SQL on the database of `url`, on a thread of its own (the test's runtime may be
/// busy with this very call).
pub fn admin(url: &str, sql: &str) {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            let driver = tokio::spawn(connection);
            client.batch_execute(&sql).await.unwrap();
            drop(client);
            let _ = driver.await;
        });
    })
    .join()
    .unwrap();
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn a_database_url_replaces_the_path() {
        assert_eq!(
            database_url("postgres://u@h:5/postgres", "x"),
            "postgres://u@h:5/x"
        );
        assert_eq!(database_url("postgres://u@h:5", "x"), "postgres://u@h:5/x");
    }
}
