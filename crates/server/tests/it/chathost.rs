//! The edge-to-hub sync: the hub's chathost API (every endpoint, bad input, the admin
//! API with its cookie login) and a confer edge syncing with a confer hub (two servers,
//! two data folders), including runs that die at each of the nine steps.

use std::collections::BTreeSet;

use confer_core::model::ConversationKind;
use confer_core::{Principal, SessionId};
use confer_server::sync::{self, Hooks, Options};
use serde_json::{json, Value};

use crate::common::{http_bytes, TestServer, ADMIN_PASSWORD};

pub(crate) const BOX: &str = "aa-bb-cc-dd-ee-ff";
const TOKEN: &str = "0b6e4f8e-1c1f-4a57-9b53-7c2f1e0f5d11";
const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

async fn hub() -> TestServer {
    TestServer::start_with(|c| c.hub_role = true).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {BOX}|{token}")
}

async fn call(s: &TestServer, method: &str, path: &str, body: &str) -> (u16, String) {
    let auth = bearer(TOKEN);
    s.http(
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await
}

/// Log in to the admin API; the cookie header to send.
async fn admin_cookie(s: &TestServer) -> String {
    let body = json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string();
    let (status, head, answer) = http_bytes(
        s.addr,
        "POST",
        "/chathost/auth",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let line = head
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .expect("a session cookie");
    let cookie = line["set-cookie:".len()..].trim();
    cookie.split(';').next().unwrap().to_string()
}

async fn admin(
    s: &TestServer,
    cookie: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    s.http(
        method,
        path,
        &[("Cookie", cookie), ("Content-Type", "application/json")],
        body,
    )
    .await
}

fn roster() -> Value {
    json!([
        {"id": 1, "course_name": "Site", "sitename": "School One", "siteadmin_name": "Ada",
         "students": [], "teachers": []},
        {"id": 2, "course_name": "Math", "summary": "", "created_on": 0, "updated_on": 0,
         "teachers": [{"id": 5, "username": "tmath", "first_name": "Tess", "last_name": "Math",
                       "email": "tmath@school.org"}],
         "students": [{"id": 7, "username": "sam", "first_name": "Sam", "email": "sam@x"},
                      {"id": 8, "username": "kim", "email": "kim@x"}]},
        {"id": "3", "course_name": "Art",
         "teachers": [{"id": 6, "username": "tart", "email": "tart@school.org"}],
         "students": [{"id": 7, "username": "sam", "email": "sam@x"}]}
    ])
}

fn multipart(id: &str, file: Option<&[u8]>) -> (String, Vec<u8>) {
    let b = "XyZbOuNdArY";
    let mut body = Vec::new();
    for (k, v) in [
        ("id", id),
        ("type", "photo"),
        ("filepath", "/"),
        ("filename", "cat.png"),
    ] {
        body.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some(file) = file {
        body.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cat.png\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(file);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

fn edge_message(id: u64, text: &str, attachment: Option<&str>) -> Value {
    let (message, att) = match attachment {
        Some(a) => (
            format!("<attachment type=\"photo\" id=\"{a}\" filepath=\"/\" filename=\"cat.png\">"),
            json!({"type": "photo", "id": a, "filepath": "/", "filename": "cat.png"}),
        ),
        None => (text.to_string(), Value::Null),
    };
    json!({"id": id, "conversation_id": 1, "subject": null, "message": message,
           "sender": {"id": 7, "username": "sam", "email": "sam@x"},
           "recipient": {"id": 5, "username": "tmath", "email": "tmath@school.org"},
           "attachment": att, "created_on": 1_700_000_000})
}

/// The private conversation of two accounts on a server, read through its storage.
async fn private_messages(s: &TestServer, a: &str, b: &str) -> Vec<confer_core::Message> {
    let core = confer_server::build_core(&s.config).unwrap();
    let accounts = core.list_accounts().await.unwrap();
    let uin = |l: &str| {
        accounts
            .iter()
            .find(|x| x.login == l)
            .unwrap_or_else(|| panic!("no {l}"))
            .uin
    };
    let me = Principal {
        uin: uin(a),
        login: a.into(),
        admin: false,
    };
    let group = core
        .check_group(&me, ConversationKind::Private, BTreeSet::from([uin(b)]))
        .await
        .unwrap();
    let page = core
        .list_chat_messages(&me, group.group_id, None, Some(0), 0, 1000)
        .await
        .unwrap();
    core.flush().await.unwrap();
    page.messages
}

#[tokio::test]
async fn hub_endpoints_answer_as_the_spec_says_and_refuse_bad_input() {
    let s = hub().await;
    // Health and credentials.
    assert_eq!(
        s.http("GET", "/chathost/healthcheck?boxid=x", &[], "")
            .await,
        (200, "OK".into())
    );
    assert_eq!(
        s.http(
            "GET",
            "/chathost/healthCheck",
            &[("Authorization", "junk")],
            ""
        )
        .await
        .0,
        200
    );
    assert_eq!(s.http("GET", "/chathost/check", &[], "").await.0, 401);
    assert_eq!(
        call(&s, "GET", "/chathost/check", "").await.0,
        401,
        "unknown box"
    );
    assert_eq!(
        s.http("GET", "/chathost/messageStatus", &[("x-boxid", BOX)], "")
            .await
            .0,
        401
    );
    // Without a session every admin path is 401.
    for (m, p) in [
        ("GET", "/chathost/admin/boxes"),
        ("GET", "/chathost/auth"),
        ("GET", "/chathost/logout"),
        ("PUT", "/chathost/admin/security/b/t"),
        ("GET", "/chathost/admin/system"),
    ] {
        assert_eq!(s.http(m, p, &[], "").await.0, 401, "{m} {p}");
    }
    let bad = json!({"username": "admin", "password": "wrong"}).to_string();
    assert_eq!(
        s.http(
            "POST",
            "/chathost/auth",
            &[("Content-Type", "application/json")],
            &bad
        )
        .await
        .0,
        401
    );
    let cookie = admin_cookie(&s).await;
    assert_eq!(
        admin(&s, &cookie, "GET", "/chathost/auth", "").await,
        (200, json!({"username": "admin"}).to_string())
    );
    // Register the box with a key; it syncs with it at once.
    let (status, _) = admin(
        &s,
        &cookie,
        "PUT",
        &format!("/chathost/admin/security/{BOX}/{TOKEN}"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(call(&s, "GET", "/chathost/check", "").await.0, 200);
    assert_eq!(
        s.http(
            "GET",
            "/chathost/check",
            &[("Authorization", &bearer("wrong-key"))],
            ""
        )
        .await
        .0,
        401
    );
    let (_, sec) = admin(
        &s,
        &cookie,
        "GET",
        &format!("/chathost/admin/security/{BOX}"),
        "",
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&sec).unwrap()["currentSecurityKey"],
        format!("{BOX}|{TOKEN}")
    );
    assert_eq!(
        call(&s, "GET", "/chathost/messageStatus", "").await,
        (200, "1".into())
    );

    // Rosters: bad bodies store nothing.
    assert_eq!(
        call(&s, "POST", "/chathost/courseRosters", "[{").await.0,
        400
    );
    assert_eq!(
        call(&s, "POST", "/chathost/courseRosters", "{}").await.0,
        400
    );
    let no_username = json!([{"id": 2, "students": [{"email": "a@b"}]}]).to_string();
    assert_eq!(
        call(&s, "POST", "/chathost/courseRosters", &no_username)
            .await
            .0,
        400
    );
    assert_eq!(
        admin(
            &s,
            &cookie,
            "GET",
            &format!("/chathost/admin/roster/{BOX}"),
            ""
        )
        .await
        .1,
        "[]"
    );
    assert_eq!(
        call(&s, "POST", "/chathost/courseRosters", &roster().to_string())
            .await
            .0,
        200
    );
    let (_, boxes) = admin(&s, &cookie, "GET", "/chathost/admin/boxes", "").await;
    let boxes: Value = serde_json::from_str(&boxes).unwrap();
    assert_eq!(boxes[0]["boxid"], BOX);
    assert_eq!(
        (
            boxes[0]["courses"].clone(),
            boxes[0]["teachers"].clone(),
            boxes[0]["students"].clone()
        ),
        (json!(2), json!(2), json!(2))
    );
    assert_eq!(boxes[0]["sitename"], "School One");
    let (_, stored) = admin(
        &s,
        &cookie,
        "GET",
        &format!("/chathost/admin/roster/{BOX}"),
        "",
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&stored).unwrap()[1]["course_name"],
        "Math"
    );
    // Accounts and conversations: teachers by username, students with the box suffix,
    // each student-teacher pair opened with a welcome message.
    let welcome = private_messages(&s, "tmath", &format!("sam.{BOX}")).await;
    assert_eq!(welcome.len(), 1);
    assert!(
        welcome[0].text.as_deref().unwrap().contains("Math"),
        "{:?}",
        welcome[0].text
    );
    assert_eq!(
        private_messages(&s, "tart", &format!("sam.{BOX}"))
            .await
            .len(),
        1
    );

    // Attachments.
    assert_eq!(
        call(&s, "GET", "/chathost/attachments/img1/exists", "")
            .await
            .0,
        404
    );
    let auth = bearer(TOKEN);
    let (ct, body) = multipart("img1", None);
    let no_file = http_bytes(
        s.addr,
        "POST",
        "/chathost/attachments",
        &[("Authorization", &auth), ("Content-Type", &ct)],
        &body,
    )
    .await;
    assert_eq!(no_file.0, 400);
    assert_eq!(
        call(&s, "POST", "/chathost/attachments", "not multipart")
            .await
            .0,
        400
    );
    let (ct, body) = multipart("img1", Some(PNG));
    for _ in 0..2 {
        let up = http_bytes(
            s.addr,
            "POST",
            "/chathost/attachments",
            &[("Authorization", &auth), ("Content-Type", &ct)],
            &body,
        )
        .await;
        assert_eq!(up.0, 200, "{}", String::from_utf8_lossy(&up.2));
    }
    let (status, head, _) = http_bytes(
        s.addr,
        "GET",
        "/chathost/attachments/img1/exists",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: image/png"), "{head}");

    // Messages: a text, a photo, one whose attachment was never uploaded (404 with its
    // id), one to an unknown teacher (skipped).
    let mut stranger = edge_message(13, "to nobody", None);
    stranger["recipient"]["email"] = json!("nobody@nowhere");
    let batch = json!([
        edge_message(10, "hello teacher", None),
        edge_message(11, "", Some("img1")),
        edge_message(12, "", Some("never-uploaded")),
        stranger
    ])
    .to_string();
    for _ in 0..2 {
        assert_eq!(
            call(&s, "POST", "/chathost/messages", &batch).await,
            (404, r#"["12"]"#.into())
        );
    }
    assert_eq!(
        call(&s, "POST", "/chathost/messages", "[{\"id\": 1}]")
            .await
            .0,
        400
    );
    assert_eq!(
        call(&s, "POST", "/chathost/messages", "{\"id\": 1}")
            .await
            .0,
        400
    );
    let stored = private_messages(&s, "tmath", &format!("sam.{BOX}")).await;
    assert_eq!(
        stored.len(),
        3,
        "welcome, text, photo once each: {stored:?}"
    );
    assert_eq!(stored[1].text.as_deref(), Some("hello teacher"));
    assert_eq!(stored[2].files[0].mimetype, "image/png");
    assert_eq!(stored[2].kind, 2);

    // The teacher answers (admin API, as the teacher); the box gets it once.
    let group = stored[0].group_id;
    let teacher_post = json!({"text": "well done", "as": "tmath"}).to_string();
    let basic = format!("Basic {}", base64_admin());
    let (status, answer) = s
        .http(
            "POST",
            &format!("/api/v1/admin/groups/{group}/messages"),
            &[
                ("Authorization", &basic),
                ("Content-Type", "application/json"),
            ],
            &teacher_post,
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let (_, since) = call(&s, "GET", "/chathost/messageStatus", "").await;
    // The first messageStatus (above) moved the box's sync time from 1 to then.
    assert!(since.parse::<i64>().unwrap() > 1, "{since}");
    assert_eq!(call(&s, "GET", "/chathost/messages/abc", "").await.0, 400);
    let (status, items) = call(&s, "GET", &format!("/chathost/messages/{since}"), "").await;
    assert_eq!(status, 200);
    let items: Value = serde_json::from_str(&items).unwrap();
    assert_eq!(items.as_array().unwrap().len(), 1, "{items}");
    assert_eq!(items[0]["message"], "well done");
    assert_eq!(items[0]["sender"]["username"], "tmath");
    assert_eq!(items[0]["recipient"]["username"], "sam");
    assert_eq!(
        call(&s, "GET", &format!("/chathost/messages/{since}"), "").await,
        (200, "[]".into())
    );

    // Logs of each type; strings mixed with objects; bad type and body.
    for kind in ["moodle", "content", "system", "sync"] {
        let body = json!([{"timestamp": 1, "log": format!("{kind} one")}, "bare"]).to_string();
        assert_eq!(
            call(&s, "POST", &format!("/chathost/logs/{kind}"), &body)
                .await
                .0,
            200
        );
    }
    assert_eq!(call(&s, "POST", "/chathost/logs/other", "[]").await.0, 404);
    assert_eq!(
        call(&s, "POST", "/chathost/logs/sync", "{not json").await.0,
        400
    );
    let (_, logs) = admin(
        &s,
        &cookie,
        "GET",
        &format!("/chathost/admin/logs/{BOX}"),
        "",
    )
    .await;
    let logs: Value = serde_json::from_str(&logs).unwrap();
    assert_eq!(logs.as_array().unwrap().len(), 8);
    assert_eq!(logs[0]["type"], "moodle");

    // Settings: queued by the admin (the key registration queued one too), handed once,
    // confirmed.
    assert_eq!(
        admin(
            &s,
            &cookie,
            "POST",
            &format!("/chathost/admin/settings/{BOX}"),
            r#"{"key":"wifi","value":"on"}"#
        )
        .await
        .0,
        200
    );
    assert_eq!(
        admin(
            &s,
            &cookie,
            "POST",
            &format!("/chathost/admin/settings/{BOX}"),
            r#"{"value":"on"}"#
        )
        .await
        .0,
        400
    );
    let (_, pending) = call(&s, "GET", "/chathost/settings", "").await;
    let pending: Value = serde_json::from_str(&pending).unwrap();
    let keys: Vec<&str> = pending
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["moodle-security-key", "wifi"]);
    assert_eq!(
        call(&s, "GET", "/chathost/settings", "").await,
        (200, "[]".into())
    );
    let (_, listed) = admin(
        &s,
        &cookie,
        "GET",
        &format!("/chathost/admin/settings/{BOX}"),
        "",
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&listed).unwrap()[1]["pending"],
        "Yes"
    );
    let id = pending[1]["deleteId"].as_str().unwrap();
    assert_eq!(
        call(&s, "DELETE", &format!("/chathost/settings/{id}"), "")
            .await
            .0,
        200
    );
    assert_eq!(
        call(&s, "DELETE", &format!("/chathost/settings/{id}"), "")
            .await
            .0,
        404
    );
    assert_eq!(call(&s, "DELETE", "/chathost/settings/x1", "").await.0, 400);

    // Bodies over 50 MB: 413 before they are read.
    let big = declared_body(&s, "/chathost/logs/sync", 60_000_000).await;
    assert!(big.starts_with("HTTP/1.1 413"), "{big}");
    assert_eq!(call(&s, "GET", "/chathost/nothing", "").await.0, 404);

    // Keys: removed, the box gets 401; logging out ends the session.
    assert_eq!(
        admin(
            &s,
            &cookie,
            "DELETE",
            &format!("/chathost/admin/security/{BOX}"),
            ""
        )
        .await
        .0,
        200
    );
    assert_eq!(call(&s, "GET", "/chathost/check", "").await.0, 401);
    assert_eq!(
        admin(&s, &cookie, "GET", "/chathost/logout", "").await.0,
        200
    );
    assert_eq!(
        admin(&s, &cookie, "GET", "/chathost/admin/boxes", "")
            .await
            .0,
        401
    );
    s.stop().await;
}

/// Send a request head declaring a body of `len` bytes, and no body: the status line.
async fn declared_body(s: &TestServer, path: &str, len: u64) -> String {
    declared_body_with(s, path, len, "").await
}

/// [`declared_body`], with an admin session's cookie.
async fn declared_body_with(s: &TestServer, path: &str, len: u64, cookie: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nCookie: {cookie}\r\nContent-Length: {len}\r\n\r\n",
        bearer(TOKEN)
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = tcp.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Stream a chunked body of `len` bytes (no length declared) and read the answer's status
/// line; the hub may stop reading and answer early.
async fn chunked_body(s: &TestServer, path: &str, len: usize, cookie: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nCookie: {cookie}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        bearer(TOKEN)
    );
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..len.div_ceil(chunk.len()) {
            wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            wr.write_all(&chunk).await?;
            wr.write_all(b"\r\n").await?;
        }
        wr.write_all(b"0\r\n\r\n").await
    });
    let mut buf = vec![0u8; 512];
    let n = rd.read(&mut buf).await.unwrap();
    writer.abort();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Every endpoint that takes a body refuses, in the hub's own form (`{"error"}` with
/// 400/413), malformed JSON, a value of the wrong shape, and a body over 50 MB whether its
/// length is declared or not; path ids that are not numbers are 400; an unknown box or a
/// wrong key is 401. Nothing of a refused body is stored.
#[tokio::test]
async fn every_hub_endpoint_with_a_body_refuses_bad_bodies_and_stores_nothing_of_them() {
    let s = hub().await;
    let core = confer_server::build_core(&s.config).unwrap();
    core.hub_add_key(BOX, TOKEN, false, "").await.unwrap();
    core.flush().await.unwrap();
    let cookie = admin_cookie(&s).await;
    let settings_path = format!("/chathost/admin/settings/{BOX}");
    let bodies: [(&str, &str); 5] = [
        ("/chathost/courseRosters", "{\"id\": 2}"),
        ("/chathost/messages", "[\"not a message\"]"),
        ("/chathost/logs/sync", "{\"log\": \"not in an array\"}"),
        (&settings_path, "[\"key\", \"value\"]"),
        ("/chathost/auth", "[\"admin\"]"),
    ];
    let send = |path: &str, body: &str| {
        let (s, cookie, path, body) = (&s, cookie.clone(), path.to_string(), body.to_string());
        async move {
            let auth = bearer(TOKEN);
            s.http(
                "POST",
                &path,
                &[
                    ("Authorization", &auth),
                    ("Cookie", &cookie),
                    ("Content-Type", "application/json"),
                ],
                &body,
            )
            .await
        }
    };
    for (path, wrong_shape) in bodies {
        for body in ["[{", "", wrong_shape] {
            let (status, answer) = send(path, body).await;
            assert_eq!(status, 400, "{path} {body:?}: {answer}");
            let answer: Value = serde_json::from_str(&answer).unwrap();
            assert!(answer["error"].is_string(), "{path}: {answer}");
        }
        let declared = declared_body_with(&s, path, 50 * 1024 * 1024 + 1, &cookie).await;
        assert!(declared.starts_with("HTTP/1.1 413"), "{path}: {declared}");
        let streamed = chunked_body(&s, path, 51 * 1024 * 1024, &cookie).await;
        assert!(streamed.starts_with("HTTP/1.1 413"), "{path}: {streamed}");
    }
    // The multipart upload: no file, or not multipart at all.
    let (ct, body) = multipart("no-file", None);
    let auth = bearer(TOKEN);
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", ct.as_str()),
    ];
    let (status, _, answer) =
        http_bytes(s.addr, "POST", "/chathost/attachments", &headers, &body).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(send("/chathost/attachments", "{}").await.0, 400);
    let declared = declared_body(&s, "/chathost/attachments", 60_000_000).await;
    assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
    // Path ids that are not what they should be.
    for path in [
        "/chathost/messages/soon",
        "/chathost/messages/-1",
        "/chathost/files/x/1",
    ] {
        assert_eq!(call(&s, "GET", path, "").await.0, 400, "{path}");
    }
    assert_eq!(
        call(&s, "DELETE", "/chathost/settings/1.5", "").await.0,
        400
    );
    assert_eq!(
        admin(&s, &cookie, "DELETE", &format!("{settings_path}/x"), "")
            .await
            .0,
        400
    );
    // A log type that is not one of the four: no such log (404).
    assert_eq!(send("/chathost/logs/poetry", "[]").await.0, 404);
    // An unknown box, a wrong key, a key of another box: 401 on every box endpoint.
    for auth in [
        "Bearer 00-00-00-00-00-00|".to_string() + TOKEN,
        bearer("wrong"),
        format!("Bearer {TOKEN}"),
        "Basic YTpi".to_string(),
    ] {
        for (method, path) in [
            ("GET", "/chathost/check"),
            ("GET", "/chathost/messageStatus"),
            ("POST", "/chathost/courseRosters"),
            ("POST", "/chathost/messages"),
            ("GET", "/chathost/messages/1"),
            ("GET", "/chathost/attachments/1/exists"),
            ("POST", "/chathost/attachments"),
            ("POST", "/chathost/logs/sync"),
            ("GET", "/chathost/settings"),
            ("DELETE", "/chathost/settings/1"),
        ] {
            let (status, _) = s
                .http(
                    method,
                    path,
                    &[("Authorization", &auth), ("x-boxid", BOX)],
                    "[]",
                )
                .await;
            assert_eq!(status, 401, "{auth} {method} {path}");
        }
    }
    // Nothing of it stored: no roster, no logs, no settings, no messages.
    let read = |path: String| {
        let (s, cookie) = (&s, cookie.clone());
        async move { admin(s, &cookie, "GET", &path, "").await }
    };
    assert_eq!(
        read(format!("/chathost/admin/roster/{BOX}")).await,
        (200, "[]".into())
    );
    assert_eq!(
        read(format!("/chathost/admin/logs/{BOX}")).await,
        (200, "[]".into())
    );
    assert_eq!(read(settings_path.clone()).await, (200, "[]".into()));
    assert!(
        core.list_accounts().await.unwrap().is_empty(),
        "no accounts made"
    );
}

fn base64_admin() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"))
}

#[tokio::test]
async fn a_hub_account_with_the_admin_flag_may_use_the_admin_api_and_others_may_not() {
    let s = hub().await;
    s.add_user("boss", "pw-boss").await;
    s.add_user("worker", "pw-worker").await;
    let core = confer_server::build_core(&s.config).unwrap();
    core.set_account_admin("boss", true).await.unwrap();
    core.flush().await.unwrap();
    let json_ct = [("Content-Type", "application/json")];
    let worker = json!({"username": "worker", "password": "pw-worker"}).to_string();
    assert_eq!(
        s.http("POST", "/chathost/auth", &json_ct, &worker).await.0,
        401
    );
    let boss = json!({"username": "boss", "password": "pw-boss"}).to_string();
    assert_eq!(
        s.http("POST", "/chathost/auth", &json_ct, &boss).await,
        (200, json!({"username": "boss"}).to_string())
    );
    // A browser's form post is redirected.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let (status, head, _) = http_bytes(
        s.addr,
        "POST",
        "/chathost/auth",
        &form,
        b"username=boss&password=pw-boss&redirect=/chathost/admin/boxes",
    )
    .await;
    assert_eq!(status, 302);
    assert!(
        head.contains("location: /chathost/admin/boxes")
            && head.contains("set-cookie: chathost_session="),
        "{head}"
    );
    let (status, head, _) = http_bytes(
        s.addr,
        "POST",
        "/chathost/auth",
        &form,
        b"username=boss&password=no",
    )
    .await;
    assert_eq!(status, 302);
    assert!(!head.contains("set-cookie"), "{head}");
    s.stop().await;
}

/// A hub with the box registered, and an edge data folder with a teacher owning a
/// course group and a student in it, their private conversation holding a text and a
/// photo from the student.
pub(crate) struct Pair {
    pub(crate) hub: TestServer,
    edge: TestServer,
}

impl Pair {
    async fn new() -> Pair {
        Pair::with_hub(hub().await).await
    }

    /// The hub, once the edge is no longer needed.
    pub(crate) fn into_hub(self) -> TestServer {
        self.hub
    }

    /// The same, with a hub of the caller's (another storage backend's, say).
    pub(crate) async fn with_hub(hub: TestServer) -> Pair {
        let core = confer_server::build_core(&hub.config).unwrap();
        core.hub_add_key(BOX, TOKEN, false, "").await.unwrap();
        core.flush().await.unwrap();
        let edge = TestServer::start_with(|c| {
            c.sync_token = Some(TOKEN.into());
        })
        .await;
        edge.add_user("tmath", "pw").await;
        edge.add_user("sam", "pw").await;
        let core = confer_server::build_core(&edge.config).unwrap();
        let accounts = core.list_accounts().await.unwrap();
        let who = |l: &str| {
            let a = accounts.iter().find(|a| a.login == l).unwrap();
            Principal {
                uin: a.uin,
                login: a.login.clone(),
                admin: false,
            }
        };
        let (t, st) = (who("tmath"), who("sam"));
        core.create_group(
            &t,
            ConversationKind::Group,
            Some("Math".into()),
            None,
            None,
            BTreeSet::from([st.uin]),
        )
        .await
        .unwrap();
        core.flush().await.unwrap();
        let pair = Pair { hub, edge };
        pair.student_says("hello from the box").await;
        pair.student_sends_photo().await;
        pair
    }

    async fn edge_core(&self) -> (std::sync::Arc<confer_core::Core>, Principal, Principal) {
        let core = confer_server::build_core(&self.edge.config).unwrap();
        let accounts = core.list_accounts().await.unwrap();
        let who = |l: &str| {
            let a = accounts.iter().find(|a| a.login == l).unwrap();
            Principal {
                uin: a.uin,
                login: a.login.clone(),
                admin: false,
            }
        };
        let (t, s) = (who("tmath"), who("sam"));
        (core, t, s)
    }

    async fn student_says(&self, text: &str) {
        let (core, t, s) = self.edge_core().await;
        let (g, _) = core
            .create_group(
                &s,
                ConversationKind::Private,
                None,
                None,
                None,
                BTreeSet::from([t.uin]),
            )
            .await
            .unwrap();
        let input = confer_core::service::ChatMessageInput {
            text: Some(text.into()),
            ..Default::default()
        };
        core.post_chat_message(&s, &SessionId::random(), g.group_id, input)
            .await
            .unwrap();
        core.flush().await.unwrap();
    }

    async fn student_sends_photo(&self) {
        let (core, t, s) = self.edge_core().await;
        let blobs = confer_server::open_blobs(&self.edge.config).unwrap();
        use confer_door_files::BlobStore;
        use sha2::Digest;
        let sha = hex::encode(sha2::Sha256::digest(PNG));
        let staged = blobs.staging_path();
        std::fs::write(&staged, PNG).unwrap();
        blobs.publish(&staged, &sha).await.unwrap();
        let up = core
            .register_upload(
                &s,
                sha,
                PNG.len() as u64,
                "image/png".into(),
                "cat.png".into(),
            )
            .await
            .unwrap();
        core.add_file(&s, up.item_id).await.unwrap();
        let (g, _) = core
            .create_group(
                &s,
                ConversationKind::Private,
                None,
                None,
                None,
                BTreeSet::from([t.uin]),
            )
            .await
            .unwrap();
        let input = confer_core::service::ChatMessageInput {
            kind: 2,
            attachments: Some(json!([{"item_id": up.item_id.to_string()}]).to_string()),
            attachment_ids: vec![up.item_id],
            ..Default::default()
        };
        core.post_chat_message(&s, &SessionId::random(), g.group_id, input)
            .await
            .unwrap();
        core.flush().await.unwrap();
    }

    fn options(&self) -> Options {
        Options {
            hub: Some(format!("http://{}", self.hub.addr)),
            box_id: Some(BOX.into()),
            log_to_file: true,
        }
    }

    pub(crate) async fn run(&self, hooks: Hooks) -> sync::Report {
        sync::run_with(&self.edge.config, &self.options(), hooks)
            .await
            .unwrap()
    }

    /// The teacher answers on the hub (through the admin API, as the teacher).
    pub(crate) async fn teacher_answers(&self, text: &str) {
        let hub_side = private_messages(&self.hub, "tmath", &format!("sam.{BOX}")).await;
        let group = hub_side[0].group_id;
        let body = json!({"text": text, "as": "tmath"}).to_string();
        let basic = format!("Basic {}", base64_admin());
        let (status, answer) = self
            .hub
            .http(
                "POST",
                &format!("/api/v1/admin/groups/{group}/messages"),
                &[
                    ("Authorization", &basic),
                    ("Content-Type", "application/json"),
                ],
                &body,
            )
            .await;
        assert_eq!(status, 201, "{answer}");
    }

    /// The teacher sends a photo on the hub (uploaded through the core, as the file door
    /// does).
    async fn teacher_sends_photo(&self) {
        let core = confer_server::build_core(&self.hub.config).unwrap();
        let accounts = core.list_accounts().await.unwrap();
        let who = |l: &str| {
            let a = accounts.iter().find(|a| a.login == l).unwrap();
            Principal {
                uin: a.uin,
                login: a.login.clone(),
                admin: false,
            }
        };
        let (t, s) = (who("tmath"), who(&format!("sam.{BOX}")));
        let blobs = confer_server::open_blobs(&self.hub.config).unwrap();
        use confer_door_files::BlobStore;
        use sha2::Digest;
        let content = [PNG, b"teacher"].concat();
        let sha = hex::encode(sha2::Sha256::digest(&content));
        let staged = blobs.staging_path();
        std::fs::write(&staged, &content).unwrap();
        blobs.publish(&staged, &sha).await.unwrap();
        let up = core
            .register_upload(
                &t,
                sha,
                content.len() as u64,
                "image/png".into(),
                "leaf.png".into(),
            )
            .await
            .unwrap();
        core.add_file(&t, up.item_id).await.unwrap();
        let g = core
            .check_group(&t, ConversationKind::Private, BTreeSet::from([s.uin]))
            .await
            .unwrap();
        let input = confer_core::service::ChatMessageInput {
            kind: 2,
            attachments: Some(json!([{"item_id": up.item_id.to_string()}]).to_string()),
            attachment_ids: vec![up.item_id],
            ..Default::default()
        };
        core.post_chat_message(&t, &SessionId::random(), g.group_id, input)
            .await
            .unwrap();
        core.flush().await.unwrap();
    }

    /// (texts of the hub's conversation, texts of the edge's).
    pub(crate) async fn both_sides(&self) -> (Vec<String>, Vec<String>) {
        let show = |m: &confer_core::Message| match m.files.first() {
            Some(f) => format!("[{}]", f.mimetype),
            None => m.text.clone().unwrap_or_default(),
        };
        let hub: Vec<String> = private_messages(&self.hub, "tmath", &format!("sam.{BOX}"))
            .await
            .iter()
            .map(show)
            .collect();
        let edge: Vec<String> = private_messages(&self.edge, "tmath", "sam")
            .await
            .iter()
            .map(show)
            .collect();
        (hub, edge)
    }
}

#[tokio::test]
async fn a_confer_edge_syncs_with_a_confer_hub_both_ways_and_a_second_run_moves_nothing() {
    let pair = Pair::new().await;
    let report = pair.run(Hooks::default()).await;
    assert_eq!(report.failed, None, "{:?}", report.steps);
    assert_eq!((report.messages_sent, report.attachments_sent), (2, 1));
    let (hub, _) = pair.both_sides().await;
    assert_eq!(
        hub[1..],
        ["hello from the box".to_string(), "[image/png]".to_string()]
    );
    // The roster arrived: the course and its people.
    let core = confer_server::build_core(&pair.hub.config).unwrap();
    let b = core.hub_box(BOX).await.unwrap().unwrap();
    assert!(b.roster.unwrap().as_str().contains("\"Math\""));
    // The teacher answers; a setting is queued; the next run brings both.
    core.hub_queue_setting(BOX, "wifi", "on").await.unwrap();
    core.flush().await.unwrap();
    pair.teacher_answers("well done, Sam").await;
    pair.teacher_sends_photo().await;
    let report = pair.run(Hooks::default()).await;
    assert_eq!(report.failed, None, "{:?}", report.steps);
    assert_eq!((report.messages_sent, report.messages_received), (0, 2));
    assert_eq!(report.settings_applied, ["wifi"]);
    let (_, edge) = pair.both_sides().await;
    assert_eq!(
        edge[edge.len() - 2..],
        ["well done, Sam".to_string(), "[image/png]".to_string()]
    );
    // The photo was downloaded: the student reads the teacher's bytes on the edge.
    let on_edge = private_messages(&pair.edge, "sam", "tmath").await;
    let file = &on_edge.last().unwrap().files[0];
    assert_eq!(
        (file.filename.as_str(), file.size),
        ("leaf.png", PNG.len() as u64 + 7)
    );
    let edge_core = confer_server::build_core(&pair.edge.config).unwrap();
    let settings = edge_core.hub_settings("").await.unwrap();
    assert!(settings.iter().any(|s| s.key == "wifi" && s.value == "on"));
    // The sync logs reached the hub (the previous report).
    assert!(!core.hub_logs(BOX).await.unwrap().is_empty());
    // Nothing new: a third run moves nothing, and both sides stay as they were.
    let before = pair.both_sides().await;
    let report = pair.run(Hooks::default()).await;
    assert_eq!(
        (
            report.messages_sent,
            report.messages_received,
            report.attachments_sent
        ),
        (0, 0, 0)
    );
    assert_eq!(pair.both_sides().await, before);
    let written: Value = serde_json::from_str(
        &std::fs::read_to_string(pair.edge.data_dir().join("report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(written["ok"], true);
    assert_eq!(written["steps"].as_array().unwrap().len(), 9);
}

#[tokio::test]
async fn a_run_that_dies_at_any_step_and_is_repeated_ends_as_one_clean_run() {
    let pair = Pair::new().await;
    // A first run creates the hub's side of the conversation the teacher answers in.
    assert_eq!(pair.run(Hooks::default()).await.failed, None);
    for step in 1..=9u8 {
        pair.student_says(&format!("before step {step}")).await;
        pair.teacher_answers(&format!("answer {step}")).await;
        let died = pair
            .run(Hooks {
                stop_before: Some(step),
                ..Hooks::default()
            })
            .await;
        assert!(
            died.failed
                .as_deref()
                .unwrap()
                .starts_with(&format!("step {step} ")),
            "{:?}",
            died.failed
        );
        let report = pair.run(Hooks::default()).await;
        assert_eq!(
            report.failed, None,
            "after dying at step {step}: {:?}",
            report.steps
        );
    }
    let (hub, edge) = pair.both_sides().await;
    let count = |side: &[String], text: &str| side.iter().filter(|t| t.as_str() == text).count();
    for step in 1..=9 {
        assert_eq!(
            count(&hub, &format!("before step {step}")),
            1,
            "hub: {hub:?}"
        );
        assert_eq!(count(&edge, &format!("answer {step}")), 1, "edge: {edge:?}");
    }
    assert_eq!(count(&hub, "[image/png]"), 1);
    assert_eq!(count(&hub, "hello from the box"), 1);
}

/// A run killed right after the hub answered step N (the batch of step 7 and the
/// settings of step 9 fetched, which the hub hands out once, nothing of them stored yet),
/// then repeated: every hub message and setting is on the edge once, every edge message
/// on the hub once, and the hub has nothing left for the box.
#[tokio::test]
async fn a_run_killed_right_after_any_hub_answer_and_repeated_loses_and_doubles_nothing() {
    let pair = Pair::new().await;
    assert_eq!(pair.run(Hooks::default()).await.failed, None);
    let hub_core = confer_server::build_core(&pair.hub.config).unwrap();
    for step in 1..=9u8 {
        pair.student_says(&format!("before death {step}")).await;
        pair.teacher_answers(&format!("reply {step}")).await;
        hub_core
            .hub_queue_setting(BOX, &format!("key{step}"), "on")
            .await
            .unwrap();
        hub_core.flush().await.unwrap();
        let died = pair
            .run(Hooks {
                die_after: Some(step),
                ..Hooks::default()
            })
            .await;
        let failed = died.failed.unwrap_or_default();
        assert!(
            failed.starts_with(&format!("step {step} ")) && failed.contains("test hook"),
            "{failed}"
        );
        let report = pair.run(Hooks::default()).await;
        assert_eq!(
            report.failed, None,
            "after dying at step {step}: {:?}",
            report.steps
        );
    }
    let (hub, edge) = pair.both_sides().await;
    let count = |side: &[String], text: &str| side.iter().filter(|t| t.as_str() == text).count();
    for step in 1..=9 {
        assert_eq!(
            count(&hub, &format!("before death {step}")),
            1,
            "hub: {hub:?}"
        );
        assert_eq!(count(&edge, &format!("reply {step}")), 1, "edge: {edge:?}");
    }
    let edge_core = confer_server::build_core(&pair.edge.config).unwrap();
    let received = edge_core.hub_settings("").await.unwrap();
    for step in 1..=9 {
        let key = format!("key{step}");
        assert_eq!(
            received.iter().filter(|s| s.key == key).count(),
            1,
            "{key} on the edge: {received:?}"
        );
    }
    assert!(
        hub_core.hub_settings(BOX).await.unwrap().is_empty(),
        "every setting confirmed"
    );
    assert!(!pair.edge.data_dir().join("sync-inbox.json").exists());
}

#[tokio::test]
async fn a_hub_that_is_down_or_refuses_the_key_ends_the_run_with_a_report_saying_so() {
    let pair = Pair::new().await;
    // Wrong key: step 2, 401; nothing sent.
    let mut options = pair.options();
    let mut config = pair.edge.config.clone();
    config.sync_token = Some("not-the-key".into());
    let report = sync::run_with(&config, &options, Hooks::default())
        .await
        .unwrap();
    let failed = report.failed.clone().unwrap();
    assert!(failed.starts_with("step 2 (check): HTTP 401"), "{failed}");
    let hub_core = confer_server::build_core(&pair.hub.config).unwrap();
    let known = hub_core.hub_box(BOX).await.unwrap();
    assert!(
        known.and_then(|b| b.roster).is_none(),
        "nothing reached the hub"
    );
    // Down: step 1.
    let addr = pair.hub.addr;
    pair.hub.stop().await;
    options.hub = Some(format!("http://{addr}"));
    let report = sync::run_with(&pair.edge.config, &options, Hooks::default())
        .await
        .unwrap();
    assert!(
        report
            .failed
            .clone()
            .unwrap()
            .starts_with("step 1 (healthcheck)"),
        "{:?}",
        report.failed
    );
    let written: Value = serde_json::from_str(
        &std::fs::read_to_string(pair.edge.data_dir().join("report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(written["ok"], false);
    assert!(written["failed"].as_str().unwrap().starts_with("step 1"));
}

/// A hub that misbehaves as told: `mode` names the step that goes wrong and how.
/// Everything else answers as a hub with nothing to send. The bodies posted to
/// `/chathost/messages` are kept.
async fn fake_hub(mode: &'static str) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use axum::extract::State;
    use axum::routing::{any, get, post};
    type Posted = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;
    let posted: Posted = Default::default();
    async fn status() -> axum::response::Response {
        use axum::response::IntoResponse;
        "1".into_response()
    }
    let app = axum::Router::new()
        .route("/chathost/healthcheck", get(|| async { "OK" }))
        .route("/chathost/check", get(|| async { "OK" }))
        .route(
            "/chathost/messageStatus",
            get(move || async move {
                if mode == "hang" {
                    std::future::pending::<()>().await;
                }
                status().await
            }),
        )
        .route(
            "/chathost/courseRosters",
            post(move || async move {
                if mode == "5xx" {
                    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom")
                } else {
                    (axum::http::StatusCode::OK, "OK")
                }
            }),
        )
        .route(
            "/chathost/messages",
            post(move |State(p): State<Posted>, body: String| async move {
                let v: Value = serde_json::from_str(&body).unwrap();
                p.lock().unwrap().push(v.clone());
                if mode == "404" {
                    let first = v[0]["id"].clone();
                    (
                        axum::http::StatusCode::NOT_FOUND,
                        json!([first]).to_string(),
                    )
                } else {
                    (axum::http::StatusCode::OK, "{}".to_string())
                }
            }),
        )
        .route(
            "/chathost/messages/{since}",
            get(move || async move {
                if mode == "malformed" {
                    "[{not json"
                } else {
                    "[]"
                }
            }),
        )
        .route("/chathost/{*rest}", any(|| async { "[]" }))
        .with_state(posted.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), posted)
}

#[tokio::test]
async fn a_hub_that_hangs_fails_answers_garbage_or_refuses_messages_is_reported_and_the_next_run_catches_up(
) {
    let pair = Pair::new().await;
    let mut config = pair.edge.config.clone();
    config.sync_timeout_ms = 300;
    let run = |hub: String| {
        let config = config.clone();
        let options = Options {
            hub: Some(hub),
            ..pair.options()
        };
        async move {
            sync::run_with(&config, &options, Hooks::default())
                .await
                .unwrap()
        }
    };
    let (hang, _) = fake_hub("hang").await;
    let failed = run(hang).await.failed.unwrap();
    assert!(
        failed.starts_with("step 3 (messageStatus): no answer within 300 ms"),
        "{failed}"
    );
    let (five, posted) = fake_hub("5xx").await;
    let failed = run(five).await.failed.unwrap();
    assert_eq!(failed, "step 4 (courseRosters): HTTP 500: boom");
    assert!(
        posted.lock().unwrap().is_empty(),
        "no messages sent after the 500"
    );
    let (garbage, posted) = fake_hub("malformed").await;
    let failed = run(garbage).await.failed.unwrap();
    assert!(
        failed.starts_with("step 7 (messages since): malformed JSON"),
        "{failed}"
    );
    assert_eq!(
        posted.lock().unwrap()[0].as_array().unwrap().len(),
        2,
        "both messages went up"
    );
    // Nothing of the garbage was kept to be stored later.
    assert!(!pair.edge.data_dir().join("sync-inbox.json").exists());
    // The fake hub took them (200): they are not sent to it again.
    let (refusing, posted) = fake_hub("404").await;
    let report = run(refusing.clone()).await;
    assert_eq!(
        report.messages_sent, 0,
        "already accepted by the other hub: {:?}",
        report.steps
    );
    // A new message refused (404 with its id) stays owed: sent again on the next run.
    pair.student_says("refused once").await;
    let report = run(refusing.clone()).await;
    assert_eq!(report.failed, None);
    assert_eq!(report.messages_failed.len(), 1);
    let report = run(refusing).await;
    assert_eq!(report.messages_failed.len(), 1, "retried");
    let bodies = posted.lock().unwrap().clone();
    let texts: Vec<&Value> = bodies
        .iter()
        .flat_map(|b| b.as_array().unwrap())
        .map(|m| &m["message"])
        .collect();
    assert_eq!(
        texts.iter().filter(|t| **t == "refused once").count(),
        2,
        "{texts:?}"
    );
}

/// An https front for a hub: TLS (the self-signed certificate of
/// `tests/fixtures/hub-tls-*.pem`, for `127.0.0.1` and `localhost`, made once with
/// `openssl req -x509 -newkey ec … -days 36500`) in front of its plain HTTP port, as a
/// reverse proxy would be. Returns its `https://` address.
async fn https_front(plain: std::net::SocketAddr) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let certs = CertificateDer::pem_file_iter(dir.join("hub-tls-cert.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("hub-tls-key.pem")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to do.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut hub) = tokio::net::TcpStream::connect(plain).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut hub).await;
                }
            });
        }
    });
    format!("https://{addr}")
}

#[tokio::test]
async fn an_edge_syncs_with_an_https_hub_whose_certificate_it_is_told_to_trust() {
    let pair = Pair::new().await;
    let options = Options {
        hub: Some(https_front(pair.hub.addr).await),
        ..pair.options()
    };
    // Not told to trust it: the run stops at step 1, saying why; nothing reached the hub.
    let report = sync::run_with(&pair.edge.config, &options, Hooks::default())
        .await
        .unwrap();
    let failed = report.failed.unwrap_or_default();
    assert!(
        failed.starts_with("step 1 (healthcheck): connecting:") && failed.contains("certificate"),
        "{failed}"
    );
    let hub_core = confer_server::build_core(&pair.hub.config).unwrap();
    let known = hub_core.hub_box(BOX).await.unwrap();
    assert!(
        known.and_then(|b| b.roster).is_none(),
        "no roster on the hub"
    );
    // With `sync_ca_file` naming the hub's certificate: one clean run, both ways.
    let mut config = pair.edge.config.clone();
    config.sync_ca_file = Some(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hub-tls-cert.pem"),
    );
    let report = sync::run_with(&config, &options, Hooks::default())
        .await
        .unwrap();
    assert_eq!(report.failed, None, "{:?}", report.steps);
    assert_eq!((report.messages_sent, report.attachments_sent), (2, 1));
    pair.teacher_answers("over https").await;
    let report = sync::run_with(&config, &options, Hooks::default())
        .await
        .unwrap();
    assert_eq!(report.failed, None, "{:?}", report.steps);
    let (hub, edge) = pair.both_sides().await;
    assert_eq!(hub[1..3], ["hello from the box", "[image/png]"]);
    assert_eq!(edge.last().map(String::as_str), Some("over https"));
    // A file that is not a certificate is refused before any call, by name.
    config.sync_ca_file = Some(pair.edge.data_dir().join("report.json"));
    let err = sync::run_with(&config, &options, Hooks::default())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("report.json"), "{err:#}");
}

/// Requests a [`hanging_hub`] received: (method, path).
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A hub that answers every call as a hub with one setting to hand over would, except
/// the call `hang` (method, path prefix), which it never answers.
async fn hanging_hub(hang: (&'static str, &'static str)) -> (String, Seen) {
    use axum::extract::{Request, State};
    use axum::response::IntoResponse;
    let seen: Seen = Default::default();
    async fn answer(
        State((hang, seen)): State<((&str, &str), Seen)>,
        req: Request,
    ) -> axum::response::Response {
        let (method, path) = (req.method().to_string(), req.uri().path().to_string());
        seen.lock().unwrap().push((method.clone(), path.clone()));
        if method == hang.0 && path.starts_with(hang.1) {
            std::future::pending::<()>().await;
        }
        let setting =
            json!([{"deleteId": "7", "boxid": BOX, "key": "wifi", "value": "on", "timestamp": 1}]);
        match (method.as_str(), path.as_str()) {
            ("GET", "/chathost/messageStatus") => "1".into_response(),
            ("GET", p) if p.ends_with("/exists") => {
                axum::http::StatusCode::NOT_FOUND.into_response()
            }
            ("GET", p) if p.starts_with("/chathost/messages/") => "[]".into_response(),
            ("GET", "/chathost/settings") => setting.to_string().into_response(),
            _ => "OK".into_response(),
        }
    }
    let app = axum::Router::new()
        .fallback(answer)
        .with_state((hang, seen.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), seen)
}

/// Every call of the nine steps has a timeout: a hub that never answers one ends the run
/// at that step, saying so, with nothing after it called; the edge still owes what the
/// hub did not confirm (a run against a hub that answers sends it) and what it stored
/// stays stored once.
#[tokio::test]
async fn a_hub_that_never_answers_any_one_call_ends_the_run_at_that_step_and_nothing_is_lost() {
    let calls: [(u8, &str, (&'static str, &'static str)); 10] = [
        (1, "healthcheck", ("GET", "/chathost/healthcheck")),
        (2, "check", ("GET", "/chathost/check")),
        (3, "messageStatus", ("GET", "/chathost/messageStatus")),
        (4, "courseRosters", ("POST", "/chathost/courseRosters")),
        (5, "attachments", ("GET", "/chathost/attachments/")),
        (5, "attachments", ("POST", "/chathost/attachments")),
        (6, "messages", ("POST", "/chathost/messages")),
        (7, "messages since", ("GET", "/chathost/messages/")),
        (8, "logs", ("POST", "/chathost/logs/")),
        (9, "settings", ("DELETE", "/chathost/settings/")),
    ];
    for (step, name, hang) in calls {
        let pair = Pair::new().await;
        let mut config = pair.edge.config.clone();
        config.sync_timeout_ms = 300;
        let (url, seen) = hanging_hub(hang).await;
        let options = Options {
            hub: Some(url),
            ..pair.options()
        };
        let report = sync::run_with(&config, &options, Hooks::default())
            .await
            .unwrap();
        let failed = report.failed.unwrap_or_default();
        assert!(
            failed.starts_with(&format!("step {step} ({name}): no answer within 300 ms")),
            "{hang:?}: {failed}"
        );
        // The run stopped there: the call that hung was its last.
        let last = seen.lock().unwrap().last().cloned().unwrap();
        assert!(
            last.0 == hang.0 && last.1.starts_with(hang.1),
            "{hang:?}: then {last:?}"
        );
        if step == 9 {
            // Handed over again while the first copy waits unconfirmed: kept once.
            assert!(sync::run_with(&config, &options, Hooks::default())
                .await
                .unwrap()
                .failed
                .is_some());
            let inbox: Value = serde_json::from_slice(
                &std::fs::read(pair.edge.data_dir().join("sync-inbox.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(inbox["settings"].as_array().unwrap().len(), 1, "{inbox}");
        }
        // The next run, against a hub that answers, sends what was not confirmed.
        let (url, _) = hanging_hub(("NONE", "")).await;
        let options = Options {
            hub: Some(url),
            ..pair.options()
        };
        let again = sync::run_with(&config, &options, Hooks::default())
            .await
            .unwrap();
        assert_eq!(again.failed, None, "{:?}", again.steps);
        let owed = match step {
            ..=5 => (2, 1),
            6 => (2, 0),
            _ => (0, 0),
        };
        assert_eq!(
            (again.messages_sent, again.attachments_sent),
            owed,
            "{hang:?}"
        );
        // The setting (handed over again by this hub) is on the edge once.
        let edge = confer_server::build_core(&pair.edge.config).unwrap();
        let wifi = edge.hub_settings("").await.unwrap();
        assert_eq!(
            wifi.iter().filter(|s| s.key == "wifi").count(),
            1,
            "{hang:?}"
        );
        assert!(!pair.edge.data_dir().join("sync-inbox.json").exists());
    }
}

/// The door's table of endpoints (which `confer doc commands` prints and
/// tests/docs/test_docs.py holds docs/openapi.yaml to) is the router's: every entry is
/// answered by an endpoint (whatever its status, never "no such … endpoint"), in any
/// case of letters, and a path not in it is not.
#[tokio::test]
async fn every_endpoint_in_the_chathost_table_is_routed_and_nothing_else_is() {
    let s = hub().await;
    let core = confer_server::build_core(&s.config).unwrap();
    core.hub_add_key(BOX, TOKEN, false, "").await.unwrap();
    core.flush().await.unwrap();
    let cookie = admin_cookie(&s).await;
    let auth = bearer(TOKEN);
    let send = |method: &'static str, path: String| {
        let (s, cookie, auth) = (&s, cookie.clone(), auth.clone());
        async move {
            s.http(
                method,
                &path,
                &[("Authorization", &auth), ("Cookie", &cookie)],
                "",
            )
            .await
        }
    };
    let unrouted = |body: &str| {
        body.contains("no such chathost endpoint") || body.contains("no such admin endpoint")
    };
    for (method, path) in [
        ("GET", "/chathost/nothing"),
        ("PUT", "/chathost/messages"),
        ("GET", "/chathost/admin/nothing"),
    ] {
        let (status, body) = send(method, path.to_string()).await;
        assert!(
            status == 404 && unrouted(&body),
            "{method} {path}: {status} {body}"
        );
    }
    // The destructive ones last, so the others still find the box and the session.
    let mut table = confer_door_chathost::ENDPOINTS.to_vec();
    table.sort_by_key(|(m, p)| {
        (
            *m == "DELETE" || p.ends_with("/logout"),
            p.contains("security"),
        )
    });
    for (method, template) in table {
        let path = template
            .replace("{boxid}", BOX)
            .replace("{since}", "1")
            .replace("{type}", "sync")
            .replace("{token}", TOKEN)
            .replace(['{', '}'], "");
        let path = path
            .replace("deleteId", "1")
            .replace("message_id", "1")
            .replace("item_id", "1")
            .replace("/id/", "/1/");
        for path in [
            path.clone(),
            path.to_uppercase().replace(&BOX.to_uppercase(), BOX),
        ] {
            let (status, body) = send(method, path.clone()).await;
            assert!(!unrouted(&body), "{method} {path}: {status} {body}");
        }
    }
}

/// A hub with one text and one photo for the student, whose photo answers 503 the first
/// time it is downloaded.
async fn flaky_file_hub() -> String {
    use axum::extract::{Request, State};
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicUsize, Ordering};
    type Counts = std::sync::Arc<(AtomicUsize, AtomicUsize)>;
    async fn answer(State(counts): State<Counts>, req: Request) -> axum::response::Response {
        let path = req.uri().path().to_string();
        match (req.method().as_str(), path.as_str()) {
            ("GET", "/chathost/messageStatus") => "1".into_response(),
            ("GET", p) if p.starts_with("/chathost/messages/") => {
                // Handed out once, as a hub does.
                if counts.0.fetch_add(1, Ordering::SeqCst) > 0 {
                    return "[]".into_response();
                }
                json!([
                    {"id": "h1", "subject": null, "message": "a text from the hub",
                     "sender": {"username": "tbio"}, "recipient": {"username": "sam"}, "created_on": 1},
                    {"id": "h2", "subject": null,
                     "message": "<attachment type=\"photo\" id=\"9\" filename=\"cell.png\" filepath=\"/chathost/files/2/9\">",
                     "sender": {"username": "tbio"}, "recipient": {"username": "sam"}, "created_on": 1},
                ])
                .to_string()
                .into_response()
            }
            ("GET", "/chathost/files/2/9") => {
                if counts.1.fetch_add(1, Ordering::SeqCst) == 0 {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response()
                } else {
                    PNG.to_vec().into_response()
                }
            }
            ("GET", p) if p.ends_with("/exists") => "OK".into_response(),
            ("GET", "/chathost/settings") => "[]".into_response(),
            _ => "OK".into_response(),
        }
    }
    let app = axum::Router::new()
        .fallback(answer)
        .with_state(Counts::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// A hub message whose file does not download is not lost with the batch (handed out
/// once): it waits in the inbox, counted in the report, and is stored on the next run.
#[tokio::test]
async fn a_hub_message_whose_file_fails_to_download_is_stored_on_the_next_run() {
    let pair = Pair::new().await;
    let options = Options {
        hub: Some(flaky_file_hub().await),
        ..pair.options()
    };
    let first = sync::run_with(&pair.edge.config, &options, Hooks::default())
        .await
        .unwrap();
    assert_eq!(first.failed, None, "{:?}", first.steps);
    assert_eq!((first.messages_received, first.messages_held), (1, 1));
    assert!(pair.edge.data_dir().join("sync-inbox.json").exists());
    let second = sync::run_with(&pair.edge.config, &options, Hooks::default())
        .await
        .unwrap();
    assert_eq!(second.failed, None, "{:?}", second.steps);
    assert_eq!((second.messages_received, second.messages_held), (1, 0));
    assert!(!pair.edge.data_dir().join("sync-inbox.json").exists());
    let got: Vec<String> = private_messages(&pair.edge, "tbio", "sam")
        .await
        .iter()
        .map(|m| match m.files.first() {
            Some(f) => format!("[{} {}]", f.filename, f.size),
            None => m.text.clone().unwrap_or_default(),
        })
        .collect();
    assert_eq!(
        got,
        [
            "a text from the hub".to_string(),
            format!("[cell.png {}]", PNG.len())
        ]
    );
}

fn confer(args: &[&str], data_dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_confer"))
        .args(args)
        .env("CONFER_DATA_DIR", data_dir)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[tokio::test]
async fn boxes_and_hub_administrators_are_managed_from_the_cli() {
    let s = hub().await;
    let dir = s.data_dir();
    let out = confer(&["hub", "box", "add", BOX], &dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let credential = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let token = credential
        .strip_prefix(&format!("{BOX}|"))
        .expect("boxid|token");
    let auth = bearer(token);
    assert_eq!(
        s.http("GET", "/chathost/check", &[("Authorization", &auth)], "")
            .await
            .0,
        200
    );
    // A second key, given: both work.
    assert!(confer(&["hub", "box", "add", BOX, "--token", TOKEN], &dir)
        .status
        .success());
    assert_eq!(call(&s, "GET", "/chathost/check", "").await.0, 200);
    assert_eq!(
        s.http("GET", "/chathost/check", &[("Authorization", &auth)], "")
            .await
            .0,
        200
    );
    let list = String::from_utf8_lossy(&confer(&["hub", "box", "list"], &dir).stdout).to_string();
    assert!(list.starts_with(&format!("{BOX}\t2\t")), "{list}");
    let bad = confer(&["hub", "box", "add", "a|b"], &dir);
    assert!(!bad.status.success());
    // `resetKey <token>` through the admin API: the new key only.
    let cookie = admin_cookie(&s).await;
    let reset = format!("/chathost/admin/security/{BOX}/resetKey%20fresh-key-123");
    assert_eq!(admin(&s, &cookie, "PUT", &reset, "").await.0, 200);
    assert_eq!(call(&s, "GET", "/chathost/check", "").await.0, 401);
    let fresh = bearer("fresh-key-123");
    assert_eq!(
        s.http("GET", "/chathost/check", &[("Authorization", &fresh)], "")
            .await
            .0,
        200
    );
    assert!(confer(&["hub", "box", "remove", BOX], &dir)
        .status
        .success());
    assert_eq!(call(&s, "GET", "/chathost/check", "").await.0, 401);
    assert!(!confer(&["hub", "box", "remove", BOX], &dir)
        .status
        .success());
    // `user add --admin`: a hub administrator.
    let out = confer(&["user", "add", "ops", "--password", "pw", "--admin"], &dir);
    assert!(String::from_utf8_lossy(&out.stdout).contains("hub administrator"));
    let login = json!({"username": "ops", "password": "pw"}).to_string();
    assert_eq!(
        s.http(
            "POST",
            "/chathost/auth",
            &[("Content-Type", "application/json")],
            &login
        )
        .await
        .0,
        200
    );
    s.stop().await;
}

#[tokio::test]
async fn trust_on_first_use_registers_an_unknown_box_only_when_configured() {
    let off = hub().await;
    assert_eq!(call(&off, "GET", "/chathost/check", "").await.0, 401);
    off.stop().await;
    let on = TestServer::start_with(|c| {
        c.hub_role = true;
        c.hub_trust_on_first_use = true;
    })
    .await;
    assert_eq!(call(&on, "GET", "/chathost/check", "").await.0, 200);
    assert_eq!(
        on.http(
            "GET",
            "/chathost/check",
            &[("Authorization", &bearer("other-key"))],
            ""
        )
        .await
        .0,
        401
    );
    // A short token is replaced by one the hub makes, queued as `authorization`.
    let short = "Bearer 11-22-33-44-55-66|abc".to_string();
    assert_eq!(
        on.http("GET", "/chathost/check", &[("Authorization", &short)], "")
            .await
            .0,
        200
    );
    let (_, settings) = on
        .http(
            "GET",
            "/chathost/settings",
            &[("Authorization", &short)],
            "",
        )
        .await;
    let settings: Value = serde_json::from_str(&settings).unwrap();
    assert_eq!(settings[0]["key"], "authorization");
    let fresh = format!(
        "Bearer 11-22-33-44-55-66|{}",
        settings[0]["value"].as_str().unwrap()
    );
    assert_eq!(
        on.http("GET", "/chathost/check", &[("Authorization", &fresh)], "")
            .await
            .0,
        200
    );
    // Without the hub role there is no chathost API.
    let plain = TestServer::start().await;
    assert_eq!(
        plain.http("GET", "/chathost/healthcheck", &[], "").await.0,
        404
    );
    on.stop().await;
    plain.stop().await;
}

/// A front for a hub that passes every call through, but while `cut` is set answers
/// `GET …/messages/:since` with the hub's head and only part of its body, then drops
/// the connection (a link lost while the batch is on its way).
async fn cutting_front(
    hub: std::net::SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut edge, _)) = listener.accept().await {
            let cut = cut.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match edge.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let Ok(mut up) = tokio::net::TcpStream::connect(hub).await else {
                    return;
                };
                if up.write_all(&head).await.is_err() {
                    return;
                }
                let batch = String::from_utf8_lossy(&head)
                    .to_lowercase()
                    .starts_with("get /chathost/messages/");
                if !(batch && cut.load(std::sync::atomic::Ordering::SeqCst)) {
                    let _ = tokio::io::copy_bidirectional(&mut edge, &mut up).await;
                    return;
                }
                // The whole answer (the hub closes: `connection: close`), then a part.
                let mut answer = Vec::new();
                let _ = up.read_to_end(&mut answer).await;
                let body_at = answer
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map_or(answer.len(), |p| p + 4);
                let keep = body_at + (answer.len() - body_at) / 2;
                let _ = edge.write_all(&answer[..keep]).await;
            });
        }
    });
    format!("http://{addr}")
}

/// The connection drops while the hub sends a batch (twice in a row): the confer edge
/// said on `messageStatus` which batch it stored last (`?stored=`), so the next run gets
/// the lost messages again, and every hub message is on the edge exactly once.
#[tokio::test]
async fn a_hub_batch_cut_off_on_the_way_is_handed_again_and_stored_once() {
    let pair = Pair::new().await;
    assert_eq!(pair.run(Hooks::default()).await.failed, None);
    let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let options = Options {
        hub: Some(cutting_front(pair.hub.addr, cut.clone()).await),
        ..pair.options()
    };
    for n in 1..=2 {
        pair.teacher_answers(&format!("lost on the way {n}")).await;
        let report = sync::run_with(&pair.edge.config, &options, Hooks::default())
            .await
            .unwrap();
        let failed = report.failed.unwrap_or_default();
        assert!(failed.starts_with("step 7 "), "{failed}");
    }
    let (_, edge) = pair.both_sides().await;
    assert!(
        !edge.iter().any(|t| t.starts_with("lost on the way")),
        "{edge:?}"
    );
    pair.teacher_answers("after the cuts").await;
    cut.store(false, std::sync::atomic::Ordering::SeqCst);
    let report = sync::run_with(&pair.edge.config, &options, Hooks::default())
        .await
        .unwrap();
    assert_eq!(report.failed, None, "{:?}", report.steps);
    assert_eq!(report.messages_received, 3);
    let report = pair.run(Hooks::default()).await;
    assert_eq!((report.failed, report.messages_received), (None, 0));
    let (hub, edge) = pair.both_sides().await;
    let count = |side: &[String], text: &str| side.iter().filter(|t| t.as_str() == text).count();
    for text in ["lost on the way 1", "lost on the way 2", "after the cuts"] {
        assert_eq!(count(&hub, text), 1, "hub: {hub:?}");
        assert_eq!(count(&edge, text), 1, "edge: {edge:?}");
    }
}

/// The original edge's sequence (no `stored`): a batch is handed once, whether or not
/// the box stored it; a second GET of the same `since`, and the next run, answer `[]`.
#[tokio::test]
async fn without_the_stored_parameter_a_hub_batch_is_handed_out_once() {
    let pair = Pair::new().await;
    assert_eq!(pair.run(Hooks::default()).await.failed, None);
    pair.teacher_answers("once only").await;
    let (status, since) = call(&pair.hub, "GET", "/chathost/messageStatus", "").await;
    assert_eq!(status, 200);
    let path = format!("/chathost/messages/{since}");
    let (status, batch) = call(&pair.hub, "GET", &path, "").await;
    assert_eq!(status, 200);
    let batch: Value = serde_json::from_str(&batch).unwrap();
    assert_eq!(batch.as_array().map(Vec::len), Some(1), "{batch}");
    assert_eq!(batch[0]["message"], "once only");
    assert_eq!(call(&pair.hub, "GET", &path, "").await, (200, "[]".into()));
    let (_, since) = call(&pair.hub, "GET", "/chathost/messageStatus", "").await;
    let path = format!("/chathost/messages/{since}");
    assert_eq!(call(&pair.hub, "GET", &path, "").await, (200, "[]".into()));
    // A `stored` that is not a whole number is refused.
    let (status, _) = call(&pair.hub, "GET", "/chathost/messageStatus?stored=x", "").await;
    assert_eq!(status, 400);
}
