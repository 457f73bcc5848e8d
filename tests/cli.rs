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

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
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
        vec!["new", "--id", "a", "--expires", "now+1w"],
        vec!["new", "--id", "a", "--colour", "red"],
        vec!["new", "--id", "a", "--id", "b"],
    ] {
        let o = run(&args, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(o.stdout.is_empty(), "no key printed for {args:?}");
        assert!(!o.stderr.is_empty(), "the error is on stderr for {args:?}");
    }
    // A window that is over, or empty, is invalid input: exit 1.
    for args in [
        vec!["new", "--id", "a", "--expires", "2020-01-01T00:00:00Z"],
        vec!["new", "--id", "a", "--expires", "now"],
        vec![
            "new",
            "--id",
            "a",
            "--not-before",
            "2027-01-02T00:00:00Z",
            "--expires",
            "2027-01-01T00:00:00Z",
        ],
    ] {
        let o = run(&args, None);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(o.stdout.is_empty(), "no key printed for {args:?}");
    }
}

#[test]
fn new_accepts_relative_times() {
    let o = run(
        &[
            "new",
            "--id",
            "a",
            "--not-before",
            "now",
            "--expires",
            "now+90d",
        ],
        None,
    );
    assert!(o.status.success(), "{o:?}");
    let entry: serde_json::Value =
        serde_json::from_str(stdout(&o).lines().nth(1).unwrap()).unwrap();
    let nb = entry["not_before"].as_str().unwrap();
    let ex = entry["expires"].as_str().unwrap();
    assert!(nb.ends_with('Z') && ex.ends_with('Z'), "{entry}");
    let t = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    };
    assert_eq!((t(ex) - t(nb)).whole_days(), 90);
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
    assert!(o.stdout.is_empty(), "errors go to stderr");
    let out = stderr(&o);
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
    assert!(stderr(&o).contains("error: $: the configuration is empty"));
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

/// Every command, for the help tests.
const COMMANDS: &[&str] = &[
    "new", "hash", "check", "add", "revoke", "rotate", "list", "render", "usage", "schema",
];

#[test]
fn version_and_help_on_every_command() {
    let o = run(&["--version"], None);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o),
        format!("nected-key {}\n", env!("CARGO_PKG_VERSION"))
    );
    let top = stdout(&run(&["--help"], None));
    assert!(
        !top.contains("\\n"),
        "no escaped newline in the help:\n{top}"
    );
    for command in COMMANDS {
        assert!(
            top.contains(&format!("\n  {command} ")),
            "{command} in\n{top}"
        );
        let usage_line = format!("usage: nected-key {command}");
        for args in [
            vec![*command, "--help"],
            vec![*command, "-h"],
            vec!["help", command],
        ] {
            let o = run(&args, None);
            assert!(o.status.success(), "{args:?}");
            assert!(
                stdout(&o).starts_with(&usage_line),
                "{args:?}: {}",
                stdout(&o)
            );
        }
    }
    // `hash --help` is help, not the hash of "--help"; `--` makes it a key.
    let o = run(&["hash", "--", "--help"], None);
    assert_eq!(stdout(&o).trim().len(), 64);
    // `check --help` does not open a file named --help.
    assert!(stdout(&run(&["check", "--help"], None)).starts_with("usage: nected-key check"));
    let o = run(&["help", "frobnicate"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty() && !o.stderr.is_empty());
}

fn demo_copy(name: &str) -> String {
    temp_file(
        name,
        &std::fs::read_to_string("envoy/plugin-config.json").unwrap(),
    )
}

fn check_out(file: &str) -> String {
    let o = run(&["check", file], None);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

fn fingerprint_of(check_output: &str) -> String {
    let at = check_output.find("(config ").unwrap() + "(config ".len();
    check_output[at..at + 12].to_owned()
}

fn keys_of(file: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    v["keys"].as_array().unwrap().clone()
}

#[test]
fn add_revoke_rotate_and_list_edit_the_file_in_place() {
    let file = demo_copy("lifecycle.json");
    let before = std::fs::read_to_string(&file).unwrap();

    // add: the key alone on stdout, its digest in the file, nothing else changed.
    let o = run(
        &[
            "add",
            "--config",
            &file,
            "--id",
            "me",
            "--expires",
            "now+30d",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let key = stdout(&o).trim_end().to_owned();
    assert_eq!(stdout(&o), format!("{key}\n"), "stdout is the key alone");
    assert!(key.starts_with("nk_") && key.len() == 46);
    let after = std::fs::read_to_string(&file).unwrap();
    assert!(!after.contains(&key), "the key is never stored");
    assert!(!stderr(&o).contains(&key), "the key is printed once");
    let digest = stdout(&run(&["hash", &key], None)).trim().to_owned();
    let keys = keys_of(&file);
    let me = keys.last().unwrap();
    assert_eq!(me["id"], "me");
    assert_eq!(me["sha256"], digest);
    assert!(me["expires"].as_str().unwrap().ends_with('Z'));
    // Other members and their order, even their layout, are kept.
    let added_line = after
        .lines()
        .find(|l| l.contains("\"id\": \"me\""))
        .unwrap();
    assert_eq!(
        after
            .replace(&format!("{added_line}\n"), "")
            .replace("\"revoked\": true },", "\"revoked\": true }"),
        before
    );
    check_out(&file);

    // Refusals leave the file as it was, exit 1.
    for args in [
        vec!["add", "--config", &file, "--id", "me"],
        vec![
            "add",
            "--config",
            &file,
            "--id",
            "late",
            "--expires",
            "2020-01-01T00:00:00Z",
        ],
        vec!["revoke", "--config", &file, "nobody"],
        vec!["rotate", "--config", &file, "nobody", "--id", "x"],
        vec!["rotate", "--config", &file, "me", "--id", "cron-demo"],
        vec!["rotate", "--config", &file, "leaked-demo", "--id", "x"],
    ] {
        let o = run(&args, None);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), after, "{args:?}");
    }
    for args in [
        vec!["add", "--config", &file],
        vec![
            "rotate",
            "--config",
            &file,
            "me",
            "--id",
            "x",
            "--overlap",
            "soon",
        ],
        vec!["revoke", "--config", &file],
    ] {
        assert_eq!(run(&args, None).status.code(), Some(2), "{args:?}");
    }

    // rotate: a new key for the same client; the old one expires after the overlap.
    let o = run(
        &[
            "rotate",
            "--config",
            &file,
            "cron-demo",
            "--id",
            "cron-2",
            "--overlap",
            "2d",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let new_key = stdout(&o).trim_end().to_owned();
    let keys = keys_of(&file);
    let cron = keys.iter().find(|k| k["id"] == "cron-demo").unwrap();
    let cron2 = keys.iter().find(|k| k["id"] == "cron-2").unwrap();
    assert_eq!(cron2["client"], "cron");
    assert_eq!(
        cron2["sha256"],
        stdout(&run(&["hash", &new_key], None)).trim()
    );
    assert!(cron2.get("not_before").is_none() && cron2.get("expires").is_none());
    assert!(cron["expires"].as_str().unwrap().ends_with('Z'));

    // revoke: sets revoked: true; a second time changes nothing.
    let o = run(&["revoke", "--config", &file, "me"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        keys_of(&file).iter().find(|k| k["id"] == "me").unwrap()["revoked"],
        true
    );
    let o = run(&["revoke", "--config", &file, "me"], None);
    assert!(stdout(&o).contains("already revoked"));

    // list: every key, its state and a mark on those expiring within 7 days.
    let o = run(&["list", "--config", &file], None);
    let text = stdout(&o);
    assert!(o.status.success());
    let line = |id: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap()
            .to_owned()
    };
    assert!(
        line("cron-demo").contains(" valid ") && line("cron-demo").contains("! expires in 1d"),
        "{text}"
    );
    assert!(line("me").contains(" revoked "), "{text}");
    assert!(line("leaked-demo").contains(" revoked "), "{text}");
    assert!(!line("billing-demo").contains('!'), "{text}");
    let o = run(&["list", "--config", &file, "--json"], None);
    let list: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(list.len(), 5);
    let cron = list.iter().find(|k| k["id"] == "cron-demo").unwrap();
    assert_eq!(cron["state"], "valid");
    assert_eq!(cron["client"], "cron");
    assert_eq!(cron["expiring_within_7d"], true);
    assert_eq!(
        list.iter().find(|k| k["id"] == "me").unwrap()["state"],
        "revoked"
    );
    check_out(&file);
}

#[test]
fn an_invalid_file_is_not_edited() {
    let file = temp_file("invalid.json", r#"{"keys": [{"id": "a"}]}"#);
    let o = run(&["add", "--config", &file, "--id", "b"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        o.stdout.is_empty(),
        "no key for a file that was not changed"
    );
    assert!(
        stderr(&o).contains("$.keys[0].sha256: required field is missing"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        r#"{"keys": [{"id": "a"}]}"#
    );
}

#[test]
fn every_rendered_file_passes_check_with_the_fingerprint_of_the_plain_json() {
    let plain = fingerprint_of(&check_out("envoy/plugin-config.json"));
    // The same configuration written differently has the same fingerprint.
    let compact: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("envoy/plugin-config.json").unwrap())
            .unwrap();
    let compact = temp_file("compact.json", &compact.to_string());
    assert_eq!(fingerprint_of(&check_out(&compact)), plain);
    for gateway in [
        "envoy",
        "envoy-ecds",
        "istio",
        "envoy-gateway",
        "kong",
        "apisix",
    ] {
        let o = run(
            &[
                "render",
                "--gateway",
                gateway,
                "--config",
                "envoy/plugin-config.json",
            ],
            None,
        );
        assert!(o.status.success(), "{gateway}: {}", stderr(&o));
        let rendered = stdout(&o);
        assert!(
            rendered.contains(&plain) || gateway == "apisix",
            "{gateway} names the fingerprint"
        );
        let file = temp_file(&format!("rendered-{gateway}"), &rendered);
        let out = check_out(&file);
        assert_eq!(out.matches(": valid (config ").count(), 1, "{out}");
        assert_eq!(fingerprint_of(&out), plain, "{gateway}:\n{out}");
        // Rendering a rendered file gives the same file.
        let again = run(&["render", "--gateway", gateway, "--config", &file], None);
        assert_eq!(stdout(&again), rendered, "{gateway}");
        // Kong's `:authority` is not the client's host: the demo config has
        // no `host_from`, so rendering for Kong says what to add.
        assert_eq!(
            stderr(&o).contains(r#""host_from": "host""#),
            gateway == "kong",
            "{gateway}: {}",
            stderr(&o)
        );
    }
    let with_host = temp_file(
        "host-from.json",
        r#"{"host_from": "host", "routes": [], "keys": []}"#,
    );
    let o = run(
        &["render", "--gateway", "kong", "--config", &with_host],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    let o = run(
        &[
            "render",
            "--gateway",
            "nginx",
            "--config",
            "envoy/plugin-config.json",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["render", "--gateway", "istio"], Some(br#"{"keys": 1}"#));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("$.keys: must be an array"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn check_hints_at_yaml_that_is_not_a_rendered_file() {
    let o = run(&["check", "envoy/docker-compose.yaml"], None);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("hint: this looks like YAML"), "{err}");
    assert!(err.contains("nected-key render"), "{err}");
    // Plain broken JSON gets no YAML hint.
    let o = run(&["check", "-"], Some(b"{\"keys\": [}"));
    assert!(!stderr(&o).contains("hint"), "{}", stderr(&o));
}

#[test]
fn check_suggests_the_field_a_near_miss_means_and_hides_secrets() {
    let digest = "ab".repeat(32);
    let config = format!(
        r#"{{"keys":[{{"id":"a","sha265":"{digest}"}},{{"id":"b","sha256":"{digest}0","nk_N7iDDqgYNCI3rrLc837ImsGxi9El1gyJIHzGsizyOes":1}}]}}"#
    );
    let o = run(&["check", "-"], Some(config.as_bytes()));
    let err = stderr(&o);
    assert!(
        err.contains("$.keys[0].sha265: unknown field; did you mean `sha256`?"),
        "{err}"
    );
    assert!(
        err.contains("$.keys[1]: unknown field (its name is not shown"),
        "{err}"
    );
    assert!(!err.contains("nk_N7i") && !err.contains(&digest), "{err}");
}

#[test]
fn docs_cli_md_is_the_help_text() {
    // docs/cli.md is generated from the help; regenerate it with the loop in
    // this test if the help changes.
    let mut want = String::from(
        "# `nected-key` command reference\n\nThe text below is what `nected-key --help` and `nected-key help COMMAND` print (a test checks it is current: `cargo test --test cli`). How the commands fit together in practice — rotation, revocation, deployment, metrics — is in [operations.md](operations.md).\n\n```\n",
    );
    want += &stdout(&run(&["--help"], None));
    want += "```\n";
    for command in COMMANDS {
        want += &format!("\n## `{command}`\n\n```\n");
        want += &stdout(&run(&["help", command], None));
        want += "```\n";
    }
    let have = std::fs::read_to_string("docs/cli.md").unwrap();
    assert!(
        have == want,
        "docs/cli.md differs from the help text:\n{want}"
    );
}
