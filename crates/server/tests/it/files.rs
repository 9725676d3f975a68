//! Attachments: upload, add_file in the Moodle form, sending in a message, the file server
//! (access, Range, ETag), bad input, and clean-up.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::{code, http_bytes, ok_data, token, Client, TestServer};

const BOUNDARY: &str = "confer-test-boundary";

fn multipart(field: &str, filename: Option<&str>, content: &[u8]) -> Vec<u8> {
    let mut body = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"");
    if let Some(f) = filename {
        body.push_str(&format!("; filename=\"{f}\""));
    }
    body.push_str("\r\nContent-Type: application/octet-stream\r\n\r\n");
    let mut bytes = body.into_bytes();
    bytes.extend_from_slice(content);
    bytes.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    bytes
}

pub(crate) async fn upload(
    server: &TestServer,
    token: &str,
    name: &str,
    content: &[u8],
) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let ctype = format!("multipart/form-data; boundary={BOUNDARY}");
    let (status, _, body) = http_bytes(
        server.addr,
        "POST",
        "/api/v1/files",
        &[("Authorization", &auth), ("Content-Type", &ctype)],
        &multipart("file", Some(name), content),
    )
    .await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// As alice (password "pw"): create conference "c", send each uploaded item in a message
/// of its own there, and age the first message by 100 days, as if it had been sent then
/// (what the clean-up job looks at). Alice's client.
pub(crate) async fn send_aging_the_first(server: &TestServer, items: &[&Value]) -> Client {
    let (alice, _) = server.login("alice", "pw").await;
    ok_data(
        &alice
            .call("media", "conf", "create", json!({"conf_id": "c"}))
            .await,
    );
    for item in items {
        ok_data(
            &alice
                .call(
                    "media",
                    "conf",
                    "msglog_send",
                    json!({"conf_id": "c", "msg": {"attachments": [item["item_id"]]}}),
                )
                .await,
        );
    }
    let db = rusqlite::Connection::open(server.data_dir().join("confer.db")).unwrap();
    db.execute(
        "UPDATE messages SET created_at = created_at - 100 * 86400000000 WHERE seq = 1",
        [],
    )
    .unwrap();
    alice
}

pub(crate) async fn get(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Vec<u8>) {
    http_bytes(server.addr, "GET", path, headers, b"").await
}

fn png_like(len: usize) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    v.extend((0..len).map(|i| (i * 7 % 251) as u8));
    v
}

fn blob_count(server: &TestServer) -> usize {
    walk(&server.data_dir().join("files"))
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        if p.ends_with("staging") {
                            0
                        } else {
                            walk(&p)
                        }
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn staging_is_empty(server: &TestServer) -> bool {
    std::fs::read_dir(server.data_dir().join("files").join("staging"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

#[tokio::test]
async fn upload_add_file_send_and_download_with_ranges_and_etags() {
    let server = TestServer::start().await;
    for u in ["alice", "bob", "eve"] {
        server.add_user(u, "pw").await;
    }
    let (alice_t, bob_t, eve_t) = (
        token(server.addr, "alice", "pw").await,
        token(server.addr, "bob", "pw").await,
        token(server.addr, "eve", "pw").await,
    );
    let content = png_like(100_000);
    let (status, up) = upload(&server, &alice_t, "cat.png", &content).await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["mimetype"], "image/png", "detected from content");
    assert_eq!(up["size"], content.len() as u64);
    assert_eq!(up["filename"], "cat.png");
    let item = up["item_id"].as_str().unwrap().to_string();
    let url = up["url"].as_str().unwrap().to_string();

    // add_file in the Moodle form: someone else's draft is not found, a bad token is 401.
    let api = "/local/chat_attachments/api.php";
    let json_ct = [("Content-Type", "application/json")];
    let (s, body) = server
        .http(
            "POST",
            api,
            &json_ct,
            &json!({"token": bob_t, "method": "add_file", "item_id": item}).to_string(),
        )
        .await;
    assert_eq!(s, 404, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["errorcode"],
        "filenotfound"
    );
    let (s, body) = server
        .http(
            "POST",
            api,
            &json_ct,
            &json!({"token": "bad", "method": "add_file", "item_id": item}).to_string(),
        )
        .await;
    assert_eq!(s, 401);
    assert!(serde_json::from_str::<Value>(&body).unwrap()["exception"].is_string());
    let (s, _) = server
        .http(
            "POST",
            api,
            &json_ct,
            &json!({"token": alice_t, "method": "nope", "item_id": item}).to_string(),
        )
        .await;
    assert_eq!(s, 400);
    let form = format!("token={alice_t}&method=add_file&item_id={item}");
    let (s, body) = server
        .http(
            "POST",
            api,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &form,
        )
        .await;
    assert_eq!((s, body.as_str()), (200, r#"{"success":true}"#));

    // Before a message carries it, only the owner reads it.
    let bob_auth = format!("Bearer {bob_t}");
    assert_eq!(
        get(&server, &url, &[("Authorization", &bob_auth)]).await.0,
        404
    );
    let (s, head, bytes) = get(&server, &format!("{url}?token={alice_t}"), &[]).await;
    assert_eq!(s, 200);
    assert!(head.contains("cache-control: private"), "{head}");

    // Send it in a conference message through the External API.
    let (alice, _) = server.login("alice", "pw").await;
    let (bob, _) = server.login("bob", "pw").await;
    ok_data(
        &alice
            .call("media", "conf", "create", json!({"conf_id": "pics"}))
            .await,
    );
    ok_data(
        &bob.call("media", "conf", "join", json!({"conf_id": "pics"}))
            .await,
    );
    let bob_upload = upload(&server, &bob_t, "mine.txt", b"bob's").await.1["item_id"]
        .as_str()
        .unwrap()
        .to_string();
    let forged = alice
        .call(
            "media",
            "conf",
            "msglog_send",
            json!({"conf_id": "pics", "msg": {"attachments": [bob_upload]}}),
        )
        .await;
    assert_eq!(code(&forged), 100046, "only your own uploads");
    ok_data(&alice.call("media", "conf", "msglog_send", json!({"conf_id": "pics", "msg": {"text": "look", "attachments": [{"item_id": item}]}})).await);

    let (s, head, got) = get(&server, &url, &[("Authorization", &bob_auth)]).await;
    assert_eq!(s, 200);
    assert_eq!(
        hex::encode(Sha256::digest(&got)),
        hex::encode(Sha256::digest(&content))
    );
    assert_eq!(got, bytes);
    assert!(head.contains("content-type: image/png"));
    assert!(head.contains("content-disposition: inline; filename=\"cat.png\""));
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        etag,
        format!("\"{}\"", hex::encode(Sha256::digest(&content)))
    );

    let moodle_url =
        format!("/pluginfile.php/1/local_chat_attachments/chat_attachment/{item}/x/cat.png");
    for (range, start, end) in [
        ("bytes=0-99", 0usize, 99usize),
        ("bytes=5000-5999", 5000, 5999),
        ("bytes=-300", content.len() - 300, content.len() - 1),
    ] {
        let (s, head, part) = get(
            &server,
            &moodle_url,
            &[("Authorization", &bob_auth), ("Range", range)],
        )
        .await;
        assert_eq!(s, 206, "{range}");
        assert_eq!(part, &content[start..=end], "{range}");
        assert!(
            head.contains(&format!(
                "content-range: bytes {start}-{end}/{}",
                content.len()
            )),
            "{head}"
        );
    }
    let (s, _, _) = get(
        &server,
        &url,
        &[("Authorization", &bob_auth), ("Range", "bytes=999999-")],
    )
    .await;
    assert_eq!(s, 416);
    let (s, _, body) = get(
        &server,
        &url,
        &[("Authorization", &bob_auth), ("If-None-Match", &etag)],
    )
    .await;
    assert_eq!((s, body.len()), (304, 0));

    // Strangers, anonymous requests, forged ids and paths learn nothing.
    assert_eq!(
        get(
            &server,
            &url,
            &[("Authorization", &format!("Bearer {eve_t}"))]
        )
        .await
        .0,
        404
    );
    assert_eq!(get(&server, &url, &[]).await.0, 401);
    assert_eq!(
        get(
            &server,
            &format!("/files/999999/cat.png?token={bob_t}"),
            &[]
        )
        .await
        .0,
        404
    );
    assert_eq!(
        get(
            &server,
            &format!("/files/{item}/other.png?token={bob_t}"),
            &[]
        )
        .await
        .0,
        404
    );
    assert_eq!(get(&server, &format!("/pluginfile.php/1/local_chat_attachments/chat_attachment/{item}/../cat.png?token={bob_t}"), &[]).await.0, 404);
    server.stop().await;
}

#[tokio::test]
async fn bad_uploads_and_one_copy_of_the_same_content() {
    let server = TestServer::start_with(|c| c.max_upload_bytes = 10_000).await;
    server.add_user("alice", "pw").await;
    let t = token(server.addr, "alice", "pw").await;
    let (s, body) = upload(&server, &t, "big.bin", &vec![1u8; 50_000]).await;
    assert_eq!(s, 413, "{body}");
    assert!(body["error"].is_string());
    assert!(staging_is_empty(&server), "the partial file is removed");

    let ctype = format!("multipart/form-data; boundary={BOUNDARY}");
    let auth = format!("Bearer {t}");
    let (s, _, _) = http_bytes(
        server.addr,
        "POST",
        "/api/v1/files",
        &[("Authorization", &auth), ("Content-Type", &ctype)],
        &multipart("note", None, b"just text"),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(upload(&server, "not-a-token", "a.txt", b"x").await.0, 401);

    let same = b"the same bytes, uploaded many times at once".to_vec();
    let uploads = (0..6).map(|i| {
        let (server, t, same) = (&server, &t, &same);
        async move { upload(server, t, &format!("copy{i}.txt"), same).await }
    });
    let results = futures_util::future::join_all(uploads).await;
    let ids: std::collections::BTreeSet<String> = results
        .iter()
        .map(|(s, v)| {
            assert_eq!(*s, 200);
            v["item_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 6, "each upload is its own item");
    assert_eq!(blob_count(&server), 1, "one stored copy");
    assert!(staging_is_empty(&server));
    server.stop().await;
}

#[tokio::test]
async fn clean_up_frees_old_files_and_keeps_the_messages() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let t = token(server.addr, "alice", "pw").await;
    let old = upload(&server, &t, "old.bin", &vec![7u8; 4000]).await.1;
    let new = upload(&server, &t, "new.bin", &vec![8u8; 3000]).await.1;
    let alice = send_aging_the_first(&server, &[&old, &new]).await;

    let core = confer_server::build_core(&server.config).unwrap();
    let blobs = confer_server::open_blobs(&server.config).unwrap();
    let dry = confer_server::attachments::clean_up(&core, &blobs, 90, true, true)
        .await
        .unwrap();
    assert_eq!((dry.files, dry.bytes_freed), (1, 4000));
    assert_eq!(blob_count(&server), 2, "a dry run changes nothing");
    let old_url = format!("{}?token={t}", old["url"].as_str().unwrap());
    assert_eq!(get(&server, &old_url, &[]).await.0, 200);

    let done = confer_server::attachments::clean_up(&core, &blobs, 90, false, true)
        .await
        .unwrap();
    assert_eq!((done.files, done.bytes_freed), (1, 4000));
    core.flush().await.unwrap();
    assert_eq!(blob_count(&server), 1);
    let (s, head, body) = get(&server, &old_url, &[]).await;
    assert_eq!(s, 410);
    assert!(head.contains("image/svg+xml"));
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(
        head.contains("content-security-policy: sandbox; default-src 'none'"),
        "{head}"
    );
    assert!(String::from_utf8_lossy(&body).contains("file removed"));
    assert_eq!(
        get(
            &server,
            &format!("{}?token={t}", new["url"].as_str().unwrap()),
            &[]
        )
        .await
        .0,
        200
    );
    let log = ok_data(
        &alice
            .call("media", "conf", "msglog_get", json!({"conf_id": "c"}))
            .await,
    );
    assert_eq!(log.as_array().unwrap().len(), 2, "the messages stay");
    let again = confer_server::attachments::clean_up(&core, &blobs, 90, false, true)
        .await
        .unwrap();
    assert_eq!(again.files, 0);
    server.stop().await;
}

fn ffmpeg(args: &[&str]) {
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg is needed for this test: scripts/test installs it");
    assert!(status.success(), "ffmpeg {args:?}");
}

/// What ffprobe says the file holds: (codec of the first stream, width or 0).
fn probe(bytes: &[u8]) -> (String, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe");
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width",
            "-of",
            "json",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe could not decode the result");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["streams"][0];
    (
        s["codec_name"].as_str().unwrap_or("").to_string(),
        s["width"].as_u64().unwrap_or(0),
    )
}

#[tokio::test]
async fn compress_video_audio_and_image_with_ffmpeg() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let t = token(server.addr, "alice", "pw").await;
    let work = tempfile::tempdir().unwrap();
    let p = |name: &str| work.path().join(name).display().to_string();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=2:size=1280x720:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=2",
        "-c:v",
        "libx264",
        "-b:v",
        "8M",
        "-c:a",
        "aac",
        "-shortest",
        &p("clip.mp4"),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=5",
        "-c:a",
        "pcm_s16le",
        &p("tone.wav"),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=1920x1080",
        "-frames:v",
        "1",
        &p("frame.png"),
    ]);

    let core = confer_server::build_core(&server.config).unwrap();
    let blobs = confer_server::open_blobs(&server.config).unwrap();
    let settings = confer_server::attachments::CompressSettings::from_config(&server.config);
    for (file, expect_codec, expect_mime, renamed) in [
        ("clip.mp4", "h264", "video/mp4", "clip.mp4"),
        ("tone.wav", "opus", "audio/ogg", "tone.ogg"),
        ("frame.png", "webp", "image/webp", "frame.webp"),
    ] {
        let original = std::fs::read(work.path().join(file)).unwrap();
        let up = upload(&server, &t, file, &original).await.1;
        let item: u64 = up["item_id"].as_str().unwrap().parse().unwrap();
        let url = format!("{}?token={t}", up["url"].as_str().unwrap());
        let (_, head_before, _) = get(&server, &url, &[]).await;

        let outcome = confer_server::attachments::compress(&core, &blobs, item, &settings, true)
            .await
            .unwrap();
        let confer_server::attachments::Compressed::Smaller {
            before,
            after,
            filename,
        } = outcome
        else {
            panic!("{file}: {outcome:?}");
        };
        assert!(after < before, "{file}");
        assert_eq!(filename, renamed, "the name follows the new format");

        // The old URL leads to the new one, which serves the new content.
        let new_url = format!("/files/{item}/{renamed}?token={t}");
        let (s, head_after, served) = if renamed == file {
            get(&server, &url, &[]).await
        } else {
            let (s, head, _) = get(&server, &url, &[]).await;
            assert_eq!(s, 301, "{file}: {head}");
            assert!(
                head.contains(&format!("location: {}", new_url.to_lowercase())),
                "{head}"
            );
            get(&server, &new_url, &[]).await
        };
        assert_eq!(s, 200);
        assert_eq!(served.len() as u64, after);
        assert!(
            head_after.contains(&format!("content-type: {expect_mime}")),
            "{head_after}"
        );
        let etag = |h: &str| {
            h.lines()
                .find_map(|l| l.strip_prefix("etag: "))
                .unwrap()
                .to_string()
        };
        assert_ne!(etag(&head_before), etag(&head_after), "{file}: a new ETag");
        let (codec, width) = probe(&served);
        assert_eq!(codec, expect_codec, "{file}");
        if file == "frame.png" {
            assert_eq!(width, 1280, "resized to the configured maximum");
        }
    }
    assert!(staging_is_empty(&server));
    assert_eq!(
        blob_count(&server),
        3,
        "the originals are gone once replaced"
    );

    // Without ffmpeg on PATH the tool says so, and the original stays.
    let text = upload(
        &server,
        &t,
        "x.wav",
        &std::fs::read(work.path().join("tone.wav")).unwrap(),
    )
    .await
    .1;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_confer"))
        .args([
            "attachments",
            "compress",
            text["item_id"].as_str().unwrap(),
            "--data-dir",
        ])
        .arg(server.data_dir())
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ffmpeg was not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        get(
            &server,
            &format!("{}?token={t}", text["url"].as_str().unwrap()),
            &[]
        )
        .await
        .0,
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn a_half_written_upload_left_by_a_crash_is_removed_at_start() {
    let server = TestServer::start().await;
    let staging = server.data_dir().join("files").join("staging");
    std::fs::write(staging.join("0123456789abcdef"), b"half of a file").unwrap();
    assert!(!staging_is_empty(&server));
    let server = server.restart().await;
    assert!(staging_is_empty(&server), "staging is cleared at start");
    server.stop().await;
}

#[tokio::test]
async fn add_file_takes_json_as_curl_d_sends_it_forms_and_explains_a_bad_body() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let t = token(server.addr, "alice", "pw").await;
    let form_ct = [("Content-Type", "application/x-www-form-urlencoded")];
    for api in ["/api/v1/attachments", "/local/chat_attachments/api.php"] {
        // The README's line: `curl -d "{json}"` labels a JSON text as a form.
        let item = upload(&server, &t, "a.txt", b"a").await.1["item_id"]
            .as_str()
            .unwrap()
            .to_string();
        let body = format!(r#"{{"token":"{t}","method":"add_file","item_id":{item}}}"#);
        let (s, answer) = server.http("POST", api, &form_ct, &body).await;
        assert_eq!((s, answer.as_str()), (200, r#"{"success":true}"#), "{api}");

        // Form parameters, as the Moodle plugin posted them.
        let item = upload(&server, &t, "b.txt", b"b").await.1["item_id"]
            .as_str()
            .unwrap()
            .to_string();
        let body = format!("token={t}&method=add_file&item_id={item}");
        let (s, answer) = server.http("POST", api, &form_ct, &body).await;
        assert_eq!((s, answer.as_str()), (200, r#"{"success":true}"#), "{api}");

        // An unreadable body is told what is wrong with it.
        for (ct, body, says) in [
            ("application/json", r#"{"token": "x", "#, "not valid JSON"),
            ("application/x-www-form-urlencoded", "", "empty"),
            (
                "text/plain",
                "hello there",
                "neither a JSON object nor a form",
            ),
        ] {
            let (s, answer) = server
                .http("POST", api, &[("Content-Type", ct)], body)
                .await;
            assert_eq!(s, 400, "{api} {body}");
            let answer: Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(answer["errorcode"], "invalidparameter");
            let message = answer["message"].as_str().unwrap();
            assert!(message.contains(says), "{api} {body}: {message}");
        }

        // A body over the limit is refused in the same JSON form, not the framework's text.
        let huge = format!(
            "token={t}&method=add_file&item_id=1&pad={}",
            "x".repeat(3 << 20)
        );
        let (s, answer) = server.http("POST", api, &form_ct, &huge).await;
        assert_eq!(s, 413, "{api}");
        let answer: Value = serde_json::from_str(&answer).expect("a JSON error");
        assert_eq!(answer["errorcode"], "invalidparameter", "{api}");
    }
    server.stop().await;
}

#[tokio::test]
async fn msglog_messages_carry_each_upload_url_name_type_and_size() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let (alice_t, bob_t) = (
        token(server.addr, "alice", "pw").await,
        token(server.addr, "bob", "pw").await,
    );
    let content = png_like(5_000);
    let up = upload(&server, &alice_t, "cat.png", &content).await.1;
    let item = up["item_id"].as_str().unwrap().to_string();
    let (alice, _) = server.login("alice", "pw").await;
    let (bob, _) = server.login("bob", "pw").await;
    ok_data(
        &alice
            .call("media", "conf", "create", json!({"conf_id": "pics"}))
            .await,
    );
    ok_data(
        &bob.call("media", "conf", "join", json!({"conf_id": "pics"}))
            .await,
    );
    ok_data(
        &alice
            .call(
                "media",
                "conf",
                "msglog_send",
                json!({"conf_id": "pics", "msg": {"text": "look", "attachments": [item]}}),
            )
            .await,
    );
    let expected = json!([{
        "item_id": item,
        "url": format!("/files/{item}/cat.png"),
        "filename": "cat.png",
        "mimetype": "image/png",
        "size": content.len(),
    }]);
    let event = bob.event_of_type("msglog_new_msg").await;
    assert_eq!(event["body"]["files"], expected, "{event}");
    let log = ok_data(
        &bob.call("media", "conf", "msglog_get", json!({"conf_id": "pics"}))
            .await,
    );
    assert_eq!(log[0]["files"], expected, "{log}");

    // The url is all a recipient needs.
    let url = event["body"]["files"][0]["url"].as_str().unwrap();
    let (s, _, got) = get(&server, &format!("{url}?token={bob_t}"), &[]).await;
    assert_eq!((s, got), (200, content));
    server.stop().await;
}

#[tokio::test]
async fn uploaded_pages_are_downloads_never_pages_of_our_origin_and_urls_are_encoded() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let t = token(server.addr, "alice", "pw").await;
    let page = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>";
    let xhtml = b"<?xml version=\"1.0\"?><html xmlns=\"http://www.w3.org/1999/xhtml\"><script>alert(1)</script></html>";
    let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>";
    let png = png_like(300);
    for (name, content, disposition) in [
        ("page.html", &page[..], "attachment"),
        ("page.xhtml", &xhtml[..], "attachment"),
        ("logo.svg", &svg[..], "attachment"),
        ("notes.txt", b"just text", "attachment"),
        ("cat.png", &png[..], "inline"),
        ("what? #1 100% été.png", &png[..], "inline"),
    ] {
        let (s, up) = upload(&server, &t, name, content).await;
        assert_eq!(s, 200, "{up}");
        assert_eq!(up["filename"], name);
        let url = up["url"].as_str().unwrap();
        assert!(
            url.is_ascii() && !url[1..].contains(['?', '#', ' ']),
            "{url}"
        );
        let (s, head, got) = get(&server, &format!("{url}?token={t}"), &[]).await;
        assert_eq!(s, 200, "{name} via {url}");
        assert_eq!(got, content, "{name}");
        assert!(
            head.contains(&format!("content-disposition: {disposition};")),
            "{name}: {head}"
        );
        assert!(head.contains("x-content-type-options: nosniff"), "{head}");
        assert!(
            head.contains("content-security-policy: sandbox; default-src 'none'"),
            "{head}"
        );
        // The Moodle form of the URL is served the same way.
        let item = up["item_id"].as_str().unwrap();
        let encoded = url.rsplit('/').next().unwrap();
        let moodle = format!(
            "/pluginfile.php/1/local_chat_attachments/chat_attachment/{item}/x/{encoded}?token={t}"
        );
        let (s, head, _) = get(&server, &moodle, &[]).await;
        assert_eq!(s, 200, "{moodle}");
        assert!(head.contains("x-content-type-options: nosniff"), "{head}");
        assert!(head.contains("content-security-policy: sandbox"), "{head}");
    }
    // Even a refusal carries them.
    let (s, head, _) = get(&server, "/files/999/x.html", &[]).await;
    assert_eq!(s, 401);
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    server.stop().await;
}
