//! Replays the fuzz corpus on stable: every file under `fuzz/corpus/<target>/`
//! (found by libFuzzer, minimized) and `fuzz/seeds/<target>/` (hand-written
//! cases from the contract, and regressions) goes through the same checks
//! as the fuzz targets (`fuzz/checks.rs`). `make fuzz` grows the corpus.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../fuzz/checks.rs"]
mod checks;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Runs `check` on every corpus and seed file of `target`; fails when either
/// folder is missing or holds fewer than `min` files, and names every
/// failing file.
fn replay(target: &str, min: usize, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failures = Vec::new();
    for kind in ["corpus", "seeds"] {
        let dir = root.join(kind).join(target);
        let list = files(&dir);
        if list.len() < min {
            failures.push(format!(
                "{} holds {} files, expected at least {min}",
                dir.display(),
                list.len()
            ));
        }
        for file in list {
            let data = std::fs::read(&file).unwrap();
            if let Err(e) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failures.push(format!("{}: {why}", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn config_corpus() {
    replay("config", 5, checks::config);
}

#[test]
fn canonical_corpus() {
    replay("canonical", 20, checks::canonical);
}

#[test]
fn decide_corpus() {
    replay("decide", 10, checks::decide);
}

// ---- the checks can fail ----------------------------------------------------

fn fails(f: impl FnOnce()) -> bool {
    catch_unwind(AssertUnwindSafe(f)).is_err()
}

#[test]
fn the_model_policies_compile_and_agree_with_the_model_on_basic_requests() {
    use nected_key_auth::decide::Outcome;
    let h = |path: &str, key: Option<&[u8]>| {
        let mut hs: checks::Headers = vec![
            (b":path".to_vec(), path.as_bytes().to_vec()),
            (b":method".to_vec(), b"GET".to_vec()),
            (b":authority".to_vec(), b"api.example.com".to_vec()),
        ];
        if let Some(k) = key {
            hs.push((b"nected-api-key".to_vec(), k.to_vec()));
        }
        hs
    };
    let keys = checks::model_keys();
    let env = checks::FixedEnv {
        now: checks::CLOCKS[1],
        tls: false,
    };
    let cases: &[(&str, Option<&[u8]>, Outcome)] = &[
        ("/healthz", None, Outcome::Public),
        ("/docs/x", None, Outcome::Public),
        ("/admin", None, Outcome::DeniedMissing),
        ("/admin", Some(&keys[4].key), Outcome::Allowed),
        ("/admin", Some(&keys[0].key), Outcome::DeniedForbidden),
        ("/admin", Some(&keys[3].key), Outcome::DeniedInvalid),
        ("/secret", Some(&keys[2].key), Outcome::Allowed),
        ("/a/../admin", None, Outcome::DeniedBadRequest),
        ("/x", Some(b"wrong"), Outcome::DeniedInvalid),
    ];
    for (path, key, want) in cases {
        let (got, _) = checks::decide_one(0, &h(path, *key), &env);
        assert_eq!(got, *want, "{path}");
    }
}

#[test]
fn the_invariants_catch_a_wrong_decision() {
    use nected_key_auth::decide::{Outcome, Reply};
    let policy = &checks::model_policies()[0];
    let env = checks::FixedEnv {
        now: checks::CLOCKS[1],
        tls: false,
    };
    let keys = checks::model_keys();
    let headers: checks::Headers = vec![
        (b":path".to_vec(), b"/admin".to_vec()),
        (b":method".to_vec(), b"GET".to_vec()),
        (b":authority".to_vec(), b"api.example.com".to_vec()),
        (b"nected-api-key".to_vec(), keys[2].key.to_vec()),
        (b"x_nected_client".to_vec(), b"spoofed".to_vec()),
    ];
    let pairs = || headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice()));
    let req = policy.scan(pairs());
    let good = policy.decide(&req, &env);
    assert_eq!(good.outcome, Outcome::Allowed);
    checks::check_decision(policy, &headers, &req, &env, &good);

    // Each corruption of a real decision is caught.
    let mut bad = good.clone();
    bad.reply = Some(Reply::Unauthorized);
    assert!(fails(|| checks::check_decision(
        policy, &headers, &req, &env, &bad
    )));
    let mut bad = good.clone();
    bad.set_client = None;
    assert!(fails(|| checks::check_decision(
        policy, &headers, &req, &env, &bad
    )));
    let mut bad = good.clone();
    bad.strip_key = false;
    assert!(fails(|| checks::check_decision(
        policy, &headers, &req, &env, &bad
    )));
    // Allowed with a key whose digest is not configured.
    let mut wrong = headers.clone();
    wrong[3].1 = b"not-a-key".to_vec();
    assert!(fails(|| checks::check_decision(
        policy, &wrong, &req, &env, &good
    )));
    // A denial without a reply in enforce mode.
    let mut bad = good.clone();
    bad.outcome = Outcome::DeniedMissing;
    bad.set_client = None;
    assert!(fails(|| checks::check_decision(
        policy, &headers, &req, &env, &bad
    )));

    // The reference canonicalizer and the target catch wrong answers.
    assert!(checks::reference_canonical(b"/a/%2e%2e/b").is_err());
    assert_eq!(
        checks::reference_canonical(b"/a;x//b/?q").unwrap(),
        b"/a/b/".to_vec()
    );
    assert!(checks::reference_canonical(b"//a").is_err());
    assert!(checks::reference_canonical(b"/a%3Fb").is_err());
    assert!(checks::reference_canonical(b"/a%C0%AE").is_err());
    assert!(checks::reference_canonical(b"/caf%C3%A9").is_ok());
    assert!(fails(|| checks::check_canonical_form(b"/a/../b")));
    assert!(fails(|| checks::check_canonical_form(b"//a")));
    assert!(fails(|| checks::check_canonical_form(b"/a%3F")));
    assert!(fails(|| checks::check_canonical_form(b"/a%23")));
    assert!(fails(|| checks::check_canonical_form(b"/a%C0%AE")));
    assert!(fails(|| checks::check_canonical_form(b"/a//b")));
    assert!(fails(|| checks::check_canonical_form(b"/a%2fb")));
    assert!(fails(|| checks::check_canonical_form(b"/%61")));
}
