//! The `nected-key` binary, run for real.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nected-key"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn temp_file(name: &str, content: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn hash_of_an_argument_and_of_stdin_without_its_newline() {
    // SHA-256("abc"), FIPS 180-2 test vector.
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let o = run(&["hash", "abc"], None);
    assert!(o.status.success());
    assert_eq!(stdout(&o), format!("{abc}\n"));
    assert_eq!(stdout(&run(&["hash"], Some(b"abc\n"))), format!("{abc}\n"));
    assert_eq!(stdout(&run(&["hash"], Some(b"abc"))), format!("{abc}\n"));
    assert_eq!(
        stdout(&run(&["hash", "-"], Some(b"abc\r\n"))),
        format!("{abc}\n")
    );
    // Only one newline goes.
    assert_ne!(
        stdout(&run(&["hash"], Some(b"abc\n\n"))),
        format!("{abc}\n")
    );
}

#[test]
fn new_prints_a_strong_key_and_its_entry_that_check_accepts() {
    let o = run(
        &[
            "new",
            "--id",
            "billing-2026-12",
            "--client",
            "billing",
            "--expires",
            "2027-01-01T00:00:00Z",
        ],
        None,
    );
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let mut lines = out.lines();
    let key = lines.next().unwrap();
    let entry: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert!(
        lines.next().is_none(),
        "stdout is the key and the entry only"
    );
    let body = key.strip_prefix("nk_").expect("recognizable prefix");
    // 43 base64url characters carry 256 bits.
    assert_eq!(body.len(), 43);
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "{key}"
    );
    let digest = stdout(&run(&["hash", key], None));
    assert_eq!(entry["sha256"].as_str().unwrap(), digest.trim());
    assert_eq!(entry["id"], "billing-2026-12");
    assert_eq!(entry["client"], "billing");
    assert_eq!(entry["expires"], "2027-01-01T00:00:00Z");
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains(key),
        "the key is printed once"
    );

    // Two keys never repeat.
    let other = stdout(&run(&["new", "--id", "x"], None));
    assert_ne!(other.lines().next().unwrap(), key);

    let config = format!(r#"{{ "routes": [], "keys": [ {entry} ] }}"#);
    let o = run(&["check", &temp_file("new.json", &config)], None);
    assert!(o.status.success(), "{}", stdout(&o));
}

#[test]
fn new_refuses_bad_arguments() {
    for args in [
        vec!["new"],
        vec!["new", "--id", "has space"],
        vec!["new", "--id", "a", "--client", ""],
        vec!["new", "--id", "a", "--expires", "tomorrow"],
        vec![
            "new",
            "--id",
            "a",
            "--not-before",
            "2027-01-02T00:00:00Z",
            "--expires",
            "2027-01-01T00:00:00Z",
        ],
        vec!["new", "--id", "a", "--colour", "red"],
    ] {
        let o = run(&args, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(o.stdout.is_empty(), "no key printed for {args:?}");
    }
}

#[test]
fn check_summarizes_a_valid_config() {
    let o = run(&["check", "envoy/plugin-config.json"], None);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    for needle in [
        "envoy/plugin-config.json: valid (config ",
        "routes 4 (2 public, 2 private)",
        "keys 3: revoked 1, expired 0, not yet valid 0, expiring within 7 days 0",
        "clients 2: billing cron",
    ] {
        assert!(out.contains(needle), "{needle:?} in\n{out}");
    }
    let o = run(&["check", "-"], Some(br#"{"default_auth":"none"}"#));
    assert!(o.status.success());
}

#[test]
fn check_lists_every_error_with_its_path_and_never_a_digest() {
    let digest = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
    let config = format!(
        r#"{{ "mode": "audit",
             "routes": [ {{ "name": "r", "prefix": "/a/", "auth": "none", "allow_clients": ["x"] }} ],
             "keys": [ {{ "id": "a", "sha256": "{digest}" }}, {{ "id": "b", "sha256": "{digest}" }},
                       {{ "id": "c", "sha256": "{}" }} ] }}"#,
        &digest[..63]
    );
    let o = run(&["check", &temp_file("bad.json", &config)], None);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    for needle in [
        "error: $.mode: must be one of \"enforce\", \"report\"",
        "error: $.routes[0].prefix: must be a canonical path",
        "error: $.routes[0].allow_clients: only allowed on `private` routes",
        "error: $.routes[0].allow_clients[0]: names a client that holds no key",
        "error: $.keys[1].sha256: duplicate of $.keys[0].sha256",
        "error: $.keys[2].sha256: must be 64 hex digits",
        "invalid: 6 errors",
    ] {
        assert!(out.contains(needle), "{needle:?} in\n{out}");
    }
    assert!(!out.contains(&digest[..63]), "a digest was printed:\n{out}");

    let o = run(&["check", "/nonexistent/config.json"], None);
    assert_eq!(o.status.code(), Some(1));
    let o = run(&["check", &temp_file("empty.json", "")], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("error: $: the configuration is empty"));
}

#[test]
fn check_warns_about_routes_that_can_never_match() {
    let config = format!(
        r#"{{ "routes": [
              {{ "name": "api", "prefix": "/api", "auth": "private" }},
              {{ "name": "api-public", "prefix": "/api/v1/public", "auth": "none" }},
              {{ "name": "docs", "prefix": "/docs", "methods": ["GET"], "auth": "none" }},
              {{ "name": "docs-head", "path": "/docs/x", "methods": ["HEAD"], "auth": "private" }},
              {{ "name": "docs-post", "path": "/docs/x", "methods": ["POST"], "auth": "private" }}
            ],
            "keys": [ {{ "id": "k", "sha256": "{}" }} ] }}"#,
        "0".repeat(64)
    );
    let o = run(&["check", &temp_file("shadow.json", &config)], None);
    let out = stdout(&o);
    assert!(o.status.success(), "warnings do not fail the check:\n{out}");
    assert!(out.contains(r#"warning: $.routes[1] ("api-public") can never match: $.routes[0] ("api") matches every request it would"#), "{out}");
    assert!(
        out.contains(r#"warning: $.routes[3] ("docs-head") can never match: $.routes[2] ("docs")"#),
        "{out}"
    );
    assert!(!out.contains("$.routes[4]"), "{out}");
    assert!(!out.contains("$.default_auth"), "{out}");

    let o = run(&["check", "-"], Some(br#"{"default_auth":"none","routes":[{"name":"a","prefix":"/admin","auth":"private"}]}"#));
    assert!(o.status.success());
    assert!(
        stdout(&o).contains(r#"warning: $.default_auth is "none""#),
        "{}",
        stdout(&o)
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["check"],
        vec!["hash", "a", "b"],
    ] {
        assert_eq!(run(&args, None).status.code(), Some(2), "{args:?}");
    }
    assert!(run(&["--help"], None).status.success());
}
