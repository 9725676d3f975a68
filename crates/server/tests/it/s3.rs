//! Attachments on an S3-compatible object store (`attachments_s3_*`, door-files `s3.rs`)
//! against a real local one: moto's server (PyPI `moto[server]`), which scripts/suite-scale
//! starts and names in `CONFER_TEST_S3_ENDPOINT`. Upload, download (whole and a range),
//! a download on a node that lost its local copy, and the clean-up job removing the
//! object. Without the endpoint the test says it skipped, unless
//! `CONFER_REQUIRE_SERVICES` is set.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use crate::common::{http_bytes, token, TestServer};
use crate::files::{get, send_aging_the_first, upload};

fn endpoint() -> Option<String> {
    let Ok(url) = std::env::var("CONFER_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var_os("CONFER_REQUIRE_SERVICES").is_none(),
            "CONFER_REQUIRE_SERVICES is set but CONFER_TEST_S3_ENDPOINT is not"
        );
        eprintln!("skipped: CONFER_TEST_S3_ENDPOINT is not set (scripts/suite-scale sets it)");
        return None;
    };
    Some(url.trim_end_matches('/').to_string())
}

fn addr(endpoint: &str) -> SocketAddr {
    endpoint.trim_start_matches("http://").parse().unwrap()
}

/// The keys in a bucket (moto answers unsigned requests).
async fn keys(endpoint: &str, bucket: &str) -> Vec<String> {
    let (status, _, body) = http_bytes(
        addr(endpoint),
        "GET",
        &format!("/{bucket}?list-type=2"),
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body).into_owned();
    text.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_on_s3_upload_download_refetch_and_clean_up() {
    let Some(endpoint) = endpoint() else {
        return;
    };
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let bucket = format!(
        "confer-it-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let (status, _, _) = http_bytes(addr(&endpoint), "PUT", &format!("/{bucket}"), &[], b"").await;
    assert_eq!(status, 200, "creating the bucket");
    let (e, b) = (endpoint.clone(), bucket.clone());
    let server = TestServer::start_with(move |c| {
        c.attachments_s3_bucket = Some(b);
        c.attachments_s3_prefix = Some("files/".into());
        c.attachments_s3_endpoint = Some(e);
        c.attachments_s3_region = Some("us-east-1".into());
        c.attachments_s3_access_key = Some("test".into());
        c.attachments_s3_secret_key = Some("test".into());
    })
    .await;
    server.add_user("alice", "pw").await;
    let t = token(server.addr, "alice", "pw").await;
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sha = hex::encode(Sha256::digest(&content));
    let (status, item) = upload(&server, &t, "a.bin", &content).await;
    assert_eq!(status, 200, "{item}");
    assert_eq!(
        keys(&endpoint, &bucket).await,
        [format!("files/{sha}")],
        "the upload is in the bucket"
    );

    let url = format!("{}?token={t}", item["url"].as_str().unwrap());
    let (s, _, body) = get(&server, &url, &[]).await;
    assert_eq!(s, 200);
    assert_eq!(body, content);

    // This node's copy goes (as on another node that never had it): the file comes
    // from the bucket, a range too.
    let local = server.data_dir().join("files").join(&sha[..2]).join(&sha);
    std::fs::remove_file(&local).unwrap();
    let (s, _, body) = get(&server, &url, &[("Range", "bytes=100-199")]).await;
    assert_eq!(s, 206);
    assert_eq!(body, content[100..200]);
    assert!(local.is_file(), "kept as this node's copy again");
    std::fs::remove_file(&local).unwrap();
    let (s, _, body) = get(&server, &url, &[]).await;
    assert_eq!((s, body.len()), (200, content.len()));
    assert_eq!(body, content);

    // The clean-up job removes the object of an old message's file.
    send_aging_the_first(&server, &[&item]).await;
    let core = confer_server::build_core(&server.config).unwrap();
    let blobs = confer_server::open_blob_store(&server.config).unwrap();
    let done = confer_server::attachments::clean_up(&core, &*blobs, 90, false, true)
        .await
        .unwrap();
    assert_eq!((done.files, done.bytes_freed), (1, content.len() as u64));
    core.flush().await.unwrap();
    assert!(
        keys(&endpoint, &bucket).await.is_empty(),
        "the object is gone"
    );
    assert!(!local.exists());
    assert_eq!(get(&server, &url, &[]).await.0, 410);
    server.stop().await;
}
