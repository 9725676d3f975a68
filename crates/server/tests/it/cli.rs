//! The `confer` binary as a user meets it: a user error is one `error: …` line and a
//! non-zero exit whatever the environment, and logs written to a pipe carry no colour.

use std::process::{Command, Output};

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
