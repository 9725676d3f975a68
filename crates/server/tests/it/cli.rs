//! The `confer` binary as a user meets it: a user error is one `error: …` line and a
//! non-zero exit whatever the environment, and logs written to a pipe carry no colour.

use std::process::{Command, Output};

use serde_json::json;

use crate::common::{ok_data, TestServer, ADMIN_PASSWORD};

fn confer(args: &[&str], data_dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_confer"))
        .args(args)
        .env("CONFER_DATA_DIR", data_dir)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// The lines of stderr that are not log records (those start with a timestamp).
fn non_log_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| !l.starts_with(|c: char| c.is_ascii_digit()))
        .collect()
}

#[test]
fn a_user_error_is_one_line_even_with_rust_backtrace_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = confer(&["user", "passwd", "nobody", "--password", "x"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(
        non_log_lines(&stderr),
        ["error: setting the password of nobody: user not found"],
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no colour in a pipe: {stderr:?}"
    );
    assert!(
        stderr.contains("storage migration applied"),
        "the logs are there, plain: {stderr}"
    );
}

#[test]
fn a_bad_flag_value_is_one_line_and_exit_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = confer(
        &["attachments", "compress", "--all", "--min-size", "5X"],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "error: invalid value '5X' for '--min-size <MIN_SIZE>': unknown unit in 5X"
    );
    let out = confer(&["user", "add"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: the following required arguments were not provided:"),
        "{stderr}"
    );
}

/// Run the binary against a running test server (its address by `--server`, or through
/// `CONFER_LISTEN` as a user's configuration would say it): (success, stdout, stderr).
async fn remote(server: &TestServer, password: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_confer"))
        .args(args)
        .env("CONFER_LISTEN", server.addr.to_string())
        .env("CONFER_ADMIN_PASSWORD", password)
        .env("RUST_BACKTRACE", "1")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn group_message_and_session_commands_act_on_the_running_server() {
    let server = TestServer::start().await;
    for u in ["alice@example.com", "bob@example.com", "carol@example.com"] {
        server.add_user(u, "pw").await;
    }
    let ok = |r: (bool, String, String)| {
        assert!(r.0, "failed: {} {}", r.1, r.2);
        r.1
    };
    let out = ok(remote(
        &server,
        ADMIN_PASSWORD,
        &[
            "group",
            "create",
            "Team",
            "--owner",
            "alice@example.com",
            "--member",
            "bob@example.com",
        ],
    )
    .await);
    assert_eq!(out, "created group 1 (Team): owner 1, members 1,2\n");
    let out = ok(remote(&server, ADMIN_PASSWORD, &["group", "add-member", "1", "3"]).await);
    assert_eq!(out, "group 1: members 1,2,3\n");
    let out = ok(remote(
        &server,
        ADMIN_PASSWORD,
        &["group", "remove-member", "1", "bob@example.com"],
    )
    .await);
    assert_eq!(out, "group 1: members 1,3\n");
    let out = ok(remote(&server, ADMIN_PASSWORD, &["group", "list"]).await);
    assert_eq!(out, "1\t2\tTeam\t1\t1,3\n");

    // Carol, on the External API, sees the message sent in her name.
    let (carol, carol_session) = server.login("carol@example.com", "pw").await;
    ok_data(
        &carol
            .call(
                "core",
                "event",
                "subscribe",
                json!({"class": "media", "subclass": "conf", "type": "msglog_new_msg", "obj_id": "1"}),
            )
            .await,
    );
    let out = ok(remote(
        &server,
        ADMIN_PASSWORD,
        &[
            "message",
            "send",
            "1",
            "hi all",
            "--as",
            "carol@example.com",
        ],
    )
    .await);
    assert!(
        out.starts_with("sent message ") && out.ends_with(" (seq 1) to group 1 as 3\n"),
        "{out}"
    );
    let event = carol.event_of_type("msglog_new_msg").await;
    assert_eq!(event["body"]["message"], "hi all");
    assert_eq!(event["body"]["user_id"], "carol@example.com");

    let out = ok(remote(&server, ADMIN_PASSWORD, &["session", "list"]).await);
    let fields: Vec<&str> = out.trim_end().split('\t').collect();
    assert_eq!(
        &fields[..3],
        [carol_session.as_str(), "carol@example.com", "extapi"],
        "{out}"
    );
    let out = ok(remote(
        &server,
        ADMIN_PASSWORD,
        &["session", "stop", &carol_session],
    )
    .await);
    assert_eq!(out, format!("stopped {carol_session}\n"));
    assert!(carol.closed().await.is_some(), "carol was disconnected");

    // The server's errors, each one line.
    for (password, args, expected) in [
        (
            ADMIN_PASSWORD,
            &["session", "stop", carol_session.as_str()][..],
            format!("error: no live session {carol_session} (HTTP 404)"),
        ),
        (
            ADMIN_PASSWORD,
            &["group", "add-member", "1", "nobody"][..],
            "error: user not found: nobody (HTTP 404)".to_string(),
        ),
        (
            "wrong",
            &["group", "list"][..],
            "error: invalid admin credentials (HTTP 401)".to_string(),
        ),
    ] {
        let (success, _, stderr) = remote(&server, password, args).await;
        assert!(!success, "{args:?}");
        assert_eq!(stderr.trim_end(), expected, "{args:?}");
    }
    let addr = server.addr.to_string();
    server.stop().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_confer"))
        .args(["group", "list", "--server", &format!("http://{addr}")])
        .env("CONFER_ADMIN_PASSWORD", "x")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: cannot reach the server at http://{addr}")),
        "{stderr}"
    );
}

#[tokio::test]
async fn ffmpeg_missing_is_one_line_even_with_rust_backtrace_set() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let (_, body) = server
        .http(
            "POST",
            "/api/v1/login",
            &[],
            r#"{"user":"alice","password":"pw"}"#,
        )
        .await;
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let auth = format!("Bearer {}", token["session"].as_str().unwrap());
    let mut upload =
        b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cat.png\"\r\n\
        Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n"
            .to_vec();
    upload.extend_from_slice(b"\r\n--b--\r\n");
    let (status, _, answer) = crate::common::http_bytes(
        server.addr,
        "POST",
        "/api/v1/files",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "multipart/form-data; boundary=b"),
        ],
        &upload,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let item: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    let item = item["item_id"].as_str().unwrap().to_string();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_confer"))
        .args(["attachments", "compress", &item])
        .env("CONFER_DATA_DIR", server.data_dir())
        .env("PATH", "/nonexistent")
        .env("RUST_BACKTRACE", "1")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(
        non_log_lines(&stderr),
        [format!(
            "error: attachment {item}: ffmpeg was not found on PATH: install it (e.g. apt-get install ffmpeg)"
        )],
        "{stderr}"
    );
    server.stop().await;
}
