//! Canonicalization against how real servers may read a path.
//!
//! Request paths are built from an adversarial alphabet of pieces (dot
//! segments raw and encoded, `;params`, empty segments, encoded slashes and
//! backslashes, encoded unreserved characters, `%25`, query and fragment).
//! Each path is read by several reference interpretations of what an
//! upstream server does with it (RFC 3986 `remove_dot_segments` before or
//! after merging slashes, or none; `;params` kept, dropped before decoding
//! or dropped after; percent-decoding of unreserved characters only or of
//! everything, `%2F` included; `\` kept or read as `/`; the query split off
//! before decoding or after, so `%3F` and `%23` end the path; `//host/x`
//! read as an authority, as `urlsplit` does). Whenever any of
//! them lands on a private route, the filter's decision for the request
//! without a key must not be `public`: it must refuse the path (400) or
//! judge it private (401).
//!
//! Deterministic: every path of up to 3 pieces, then a fixed pseudo-random
//! sample of longer ones; the shortest counterexample is reported first.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use nected_key_auth::config::compile;
use nected_key_auth::decide::{Env, Outcome};
use nected_key_auth::policy::Policy;

const PIECES: &[&str] = &[
    "/admin", "/api", "/v1", "/rules", "/docs", "/secret", "/x", "/", "/.", "/..", ".", "..",
    "/%2e", "/%2E%2e", "/.%2e", "%2e", "/..;x", ";p=1", ";", "%2f", "%2F", "%5C", "\\", "/%61dmin",
    "/ad%6Din", "%41", "/%25", "%252e", "%3B", "%3b", "?q", "#f", "/v%31", "/ap%69", "%", "%3F",
    "%23", "%3f", "%C0%AE", "/%C0%AF", "%C3%A9",
];

// ---- reference interpretations ------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Decode {
    /// RFC 3986 normalization: only escapes of unreserved characters.
    Unreserved,
    /// Every valid escape once, `%2F`, `%5C` and `%3B` included.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Params {
    /// `;` is an ordinary character.
    Keep,
    /// `;params` dropped from each segment before decoding (Tomcat, Spring).
    DropRaw,
    /// `;params` dropped after decoding (so `%3B` starts params too).
    DropDecoded,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dots {
    /// `remove_dot_segments`, then repeated `/` merged.
    RemoveThenMerge,
    /// Repeated `/` merged, then `remove_dot_segments`.
    MergeThenRemove,
    /// The path is used as it is (no dot removal, no merging).
    Literal,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Split {
    /// The query and fragment are split off the raw target (RFC 3986).
    Raw,
    /// Split off after percent-decoding, so `%3F` and `%23` end the path.
    Decoded,
    /// `//host/path` read as an authority and a path (`urlsplit`, WHATWG).
    Authority,
}

#[derive(Debug, Clone, Copy)]
struct Interpretation {
    decode: Decode,
    params: Params,
    dots: Dots,
    backslash_is_slash: bool,
    split: Split,
}

fn interpretations() -> Vec<Interpretation> {
    let mut out = Vec::new();
    for decode in [Decode::Unreserved, Decode::All] {
        for params in [Params::Keep, Params::DropRaw, Params::DropDecoded] {
            for dots in [Dots::RemoveThenMerge, Dots::MergeThenRemove, Dots::Literal] {
                for backslash_is_slash in [false, true] {
                    out.push(Interpretation {
                        decode,
                        params,
                        dots,
                        backslash_is_slash,
                        split: Split::Raw,
                    });
                }
                // Splitting after decoding matters only when `%3F` is
                // decoded; an authority only before any other reading.
                let other = if decode == Decode::All {
                    Some(Split::Decoded)
                } else if params == Params::Keep {
                    Some(Split::Authority)
                } else {
                    None
                };
                if let Some(split) = other {
                    out.push(Interpretation {
                        decode,
                        params,
                        dots,
                        backslash_is_slash: false,
                        split,
                    });
                }
            }
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn percent_decode(path: &[u8], all: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' {
            let h = path.get(i + 1).copied().and_then(hex);
            let l = path.get(i + 2).copied().and_then(hex);
            if let (Some(h), Some(l)) = (h, l) {
                let v = h * 16 + l;
                let unreserved = v.is_ascii_alphanumeric() || b"-._~".contains(&v);
                if all || unreserved {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(path[i]);
        i += 1;
    }
    out
}

fn drop_params(path: &[u8]) -> Vec<u8> {
    let segments: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .map(|s| s.split(|&b| b == b';').next().unwrap_or_default())
        .collect();
    segments.join(&b'/')
}

fn merge_slashes(path: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    for &b in path {
        if !(b == b'/' && out.last() == Some(&b'/')) {
            out.push(b);
        }
    }
    out
}

/// RFC 3986, section 5.2.4, as written.
fn remove_dot_segments(path: &[u8]) -> Vec<u8> {
    fn pop_segment(out: &mut Vec<u8>) {
        let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
        out.truncate(cut);
    }
    let mut input = path.to_vec();
    let mut out = Vec::new();
    while !input.is_empty() {
        if input.starts_with(b"../") {
            input.drain(..3);
        } else if input.starts_with(b"./") || input.starts_with(b"/./") {
            // A: drop "./"; B: "/./" becomes "/".
            input.drain(..2);
        } else if input == b"/." {
            input = b"/".to_vec();
        } else if input.starts_with(b"/../") {
            input.drain(..3);
            pop_segment(&mut out);
        } else if input == b"/.." {
            input = b"/".to_vec();
            pop_segment(&mut out);
        } else if input == b"." || input == b".." {
            input.clear();
        } else {
            let start = usize::from(input.first() == Some(&b'/'));
            let end = input[start..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(input.len(), |i| i + start);
            out.extend(input.drain(..end));
        }
    }
    out
}

impl Interpretation {
    fn read(&self, raw: &[u8]) -> Vec<u8> {
        let end = raw
            .iter()
            .position(|&b| b == b'?' || b == b'#')
            .unwrap_or(raw.len());
        let mut p = raw[..end].to_vec();
        if self.split == Split::Authority && p.starts_with(b"//") {
            p = match p[2..].iter().position(|&b| b == b'/') {
                Some(i) => p[2 + i..].to_vec(),
                None => b"/".to_vec(),
            };
        }
        if self.params == Params::DropRaw {
            p = drop_params(&p);
        }
        p = percent_decode(&p, self.decode == Decode::All);
        if self.split == Split::Decoded {
            if let Some(i) = p.iter().position(|&b| b == b'?' || b == b'#') {
                p.truncate(i);
            }
        }
        if self.params == Params::DropDecoded {
            p = drop_params(&p);
        }
        if self.backslash_is_slash {
            p = p
                .into_iter()
                .map(|b| if b == b'\\' { b'/' } else { b })
                .collect();
        }
        match self.dots {
            Dots::RemoveThenMerge => merge_slashes(&remove_dot_segments(&p)),
            Dots::MergeThenRemove => remove_dot_segments(&merge_slashes(&p)),
            Dots::Literal => p,
        }
    }
}

// ---- the policies ----------------------------------------------------------------

fn under(path: &[u8], prefix: &[u8]) -> bool {
    path == prefix || (path.starts_with(prefix) && path.get(prefix.len()) == Some(&b'/'))
}

/// A path an upstream would serve from one of the private routes.
fn private_route(path: &[u8]) -> bool {
    under(path, b"/admin") || under(path, b"/api/v1/rules") || path == b"/secret"
}

fn public_route(path: &[u8]) -> bool {
    under(path, b"/docs")
}

fn policy(default_auth: &str) -> Policy {
    let config = format!(
        r#"{{"default_auth":"{default_auth}",
        "routes":[
          {{"name":"docs","prefix":"/docs","auth":"none"}},
          {{"name":"admin","prefix":"/admin","auth":"private"}},
          {{"name":"rules","prefix":"/api/v1/rules","auth":"private"}},
          {{"name":"secret","path":"/secret","auth":"private"}}
        ],
        "keys":[{{"id":"k","sha256":"{}"}}]}}"#,
        "ab".repeat(32)
    );
    compile(config.as_bytes()).unwrap()
}

struct NoHost;

impl Env for NoHost {
    fn now(&self) -> Option<i128> {
        None
    }
    fn is_tls(&self) -> bool {
        false
    }
}

/// The outcome of a GET without a key.
fn outcome(policy: &Policy, path: &[u8]) -> Outcome {
    let headers: [(&[u8], &[u8]); 3] = [
        (b":path", path),
        (b":method", b"GET"),
        (b":authority", b"api.example.com"),
    ];
    policy.decide(&policy.scan(headers), &NoHost).outcome
}

/// Longer paths sampled in addition to every path of up to 3 pieces.
const SAMPLES: usize = 10_000;

// ---- the generator ----------------------------------------------------------------

fn build(pieces: &[usize]) -> Vec<u8> {
    let mut p: Vec<u8> = pieces.iter().flat_map(|&i| PIECES[i].bytes()).collect();
    if p.first() != Some(&b'/') {
        p.insert(0, b'/');
    }
    p
}

/// Every path of 1 to 3 pieces, then `samples` of 4 to 7 pieces from a
/// fixed xorshift sequence.
fn paths(samples: usize) -> Vec<Vec<u8>> {
    let n = PIECES.len();
    let mut out = Vec::new();
    for a in 0..n {
        out.push(build(&[a]));
        for b in 0..n {
            out.push(build(&[a, b]));
            for c in 0..n {
                out.push(build(&[a, b, c]));
            }
        }
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..samples {
        let len = 4 + (next() % 4) as usize;
        let pieces: Vec<usize> = (0..len).map(|_| (next() % n as u64) as usize).collect();
        out.push(build(&pieces));
    }
    out.sort_by_key(Vec::len);
    out
}

fn show(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(b))
}

#[derive(Default, Debug)]
struct Counts {
    paths: usize,
    some_reading_private: usize,
    refused: usize,
    private: usize,
    public: usize,
}

/// Checks every path; `is_private(reading)` says whether a reading lands
/// where a key is needed. Returns the counterexamples (at most 20) and
/// counts (`some_reading_private` over the paths that were read).
fn check(
    policy: &Policy,
    paths: &[Vec<u8>],
    readings: &[Interpretation],
    is_private: impl Fn(&[u8]) -> bool,
) -> (Vec<String>, Counts) {
    let mut failures = Vec::new();
    let mut counts = Counts::default();
    for path in paths {
        counts.paths += 1;
        let got = outcome(policy, path);
        match got {
            Outcome::Public => counts.public += 1,
            Outcome::DeniedBadRequest => counts.refused += 1,
            Outcome::DeniedMissing => counts.private += 1,
            other => panic!("{}: unexpected {other:?}", show(path)),
        }
        // Only a public decision can be wrong; other paths are read too,
        // one in 8, for the counts that show the test is not vacuous.
        if got != Outcome::Public && counts.paths % 8 != 0 {
            continue;
        }
        let bad = readings.iter().find_map(|i| {
            let read = i.read(path);
            is_private(&read).then_some((i, read))
        });
        let Some((how, read)) = bad else { continue };
        counts.some_reading_private += 1;
        if got == Outcome::Public && failures.len() < 20 {
            failures.push(format!(
                "{} is public, but {how:?} reads it as {}",
                show(path),
                show(&read)
            ));
        }
    }
    (failures, counts)
}

fn assert_sound(name: &str, (failures, counts): (Vec<String>, Counts)) {
    eprintln!("{name}: {counts:?}");
    assert!(
        failures.is_empty(),
        "{name}: the filter lets through paths a server may read as private:\n{}",
        failures.join("\n")
    );
    // Not vacuous: every kind of outcome occurs, and many paths are private
    // under some reading.
    assert!(counts.paths > 50_000, "{name}: {counts:?}");
    assert!(counts.some_reading_private > 500, "{name}: {counts:?}");
    assert!(counts.refused > 1_000, "{name}: {counts:?}");
    assert!(counts.private > 1_000, "{name}: {counts:?}");
    assert!(counts.public > 100, "{name}: {counts:?}");
}

#[test]
fn default_none_never_lets_a_private_reading_through() {
    let paths = paths(SAMPLES);
    let result = check(&policy("none"), &paths, &interpretations(), private_route);
    assert_sound("default_auth none", result);
}

/// Readings that follow the contract's own choices: `;params` dropped and
/// repeated `/` merged (the shipped Envoy configs set `merge_slashes`, so
/// the upstream sees merged slashes).
fn normalizing(i: &Interpretation) -> bool {
    i.params != Params::Keep && i.dots != Dots::Literal
}

#[test]
fn default_private_never_lets_a_private_reading_through() {
    // With `default_auth: private` every path outside the public prefix
    // needs a key. The readings that keep `;params` or do not merge slashes
    // are left out here (see the next test for what they do).
    let paths = paths(SAMPLES);
    let readings: Vec<Interpretation> = interpretations().into_iter().filter(normalizing).collect();
    let policy = policy("private");
    let result = check(&policy, &paths, &readings, |p| !public_route(p));
    assert_sound("default_auth private", result);
    // Explicitly private routes: every reading.
    let result = check(&policy, &paths, &interpretations(), private_route);
    assert_sound("default_auth private, private routes", result);
}

#[test]
fn other_readings_differ_only_where_the_contract_chose() {
    // The documented divergences under `default_auth: private`: a server
    // that keeps `;params` reads `/docs;x/y` outside `/docs` (the filter
    // judges it as `/docs/y`), and one that does not merge slashes reads
    // `//docs` outside `/docs`. Each such path holds a raw `;` or `//`, and
    // no such reading lands on a private route (the previous test).
    let policy = policy("private");
    let others: Vec<Interpretation> = interpretations()
        .into_iter()
        .filter(|i| !normalizing(i))
        .collect();
    let mut divergent = 0;
    for path in paths(SAMPLES) {
        if outcome(&policy, &path) != Outcome::Public {
            continue;
        }
        if let Some(i) = others.iter().find(|i| !public_route(&i.read(&path))) {
            divergent += 1;
            let before_query = path.split(|&b| b == b'?' || b == b'#').next().unwrap();
            assert!(
                before_query.contains(&b';') || before_query.windows(2).any(|w| w == b"//"),
                "{} diverges under {i:?} without a ;param or //",
                show(&path)
            );
        }
    }
    assert!(divergent > 0, "the documented divergence should show up");
}

#[test]
fn the_readings_do_what_they_say() {
    let read = |decode, params, dots, backslash_is_slash, path: &str| {
        let i = Interpretation {
            decode,
            params,
            dots,
            backslash_is_slash,
            split: Split::Raw,
        };
        String::from_utf8(i.read(path.as_bytes())).unwrap()
    };
    let split = |split, path: &str| {
        let i = Interpretation {
            decode: Decode::All,
            params: Params::Keep,
            dots: Dots::RemoveThenMerge,
            backslash_is_slash: false,
            split,
        };
        String::from_utf8_lossy(&i.read(path.as_bytes())).into_owned()
    };
    assert_eq!(split(Split::Decoded, "/admin%3Fx"), "/admin");
    assert_eq!(split(Split::Decoded, "/admin%23x"), "/admin");
    assert_eq!(split(Split::Raw, "/admin%3Fx"), "/admin?x");
    assert_eq!(split(Split::Authority, "//docs/admin?q"), "/admin");
    assert_eq!(split(Split::Authority, "//docs"), "/");
    assert_eq!(split(Split::Authority, "/docs//admin"), "/docs/admin");
    use Decode::*;
    use Dots::*;
    use Params::*;
    assert_eq!(remove_dot_segments(b"/a/b/c/./../../g"), b"/a/g");
    assert_eq!(remove_dot_segments(b"/docs/.."), b"/");
    assert_eq!(remove_dot_segments(b"/.."), b"/");
    assert_eq!(remove_dot_segments(b"/docs//../admin"), b"/docs/admin");
    assert_eq!(
        read(Unreserved, Keep, RemoveThenMerge, false, "/docs//../admin"),
        "/docs/admin"
    );
    assert_eq!(
        read(Unreserved, Keep, MergeThenRemove, false, "/docs//../admin"),
        "/admin"
    );
    assert_eq!(
        read(Unreserved, Keep, Literal, false, "/docs//../admin?x"),
        "/docs//../admin"
    );
    assert_eq!(
        read(
            Unreserved,
            DropRaw,
            RemoveThenMerge,
            false,
            "/docs/..;x/admin"
        ),
        "/admin"
    );
    assert_eq!(
        read(Unreserved, Keep, RemoveThenMerge, false, "/docs/..;x/admin"),
        "/docs/..;x/admin"
    );
    assert_eq!(
        read(
            Unreserved,
            Keep,
            RemoveThenMerge,
            false,
            "/docs/%2e%2E/admin"
        ),
        "/admin"
    );
    assert_eq!(
        read(
            Unreserved,
            Keep,
            RemoveThenMerge,
            false,
            "/docs%2f..%2fadmin"
        ),
        "/docs%2f..%2fadmin"
    );
    assert_eq!(
        read(All, Keep, RemoveThenMerge, false, "/docs%2f..%2fadmin"),
        "/admin"
    );
    assert_eq!(
        read(All, DropRaw, RemoveThenMerge, false, "/admin%3Bx"),
        "/admin;x"
    );
    assert_eq!(
        read(All, DropDecoded, RemoveThenMerge, false, "/admin%3Bx"),
        "/admin"
    );
    assert_eq!(
        read(Unreserved, Keep, RemoveThenMerge, true, "/docs\\..\\admin"),
        "/admin"
    );
    assert_eq!(
        read(All, Keep, RemoveThenMerge, true, "/docs%5C..%5Cadmin"),
        "/admin"
    );
    assert_eq!(read(All, Keep, RemoveThenMerge, false, "/%2561"), "/%61");
    assert!(
        private_route(b"/admin/x") && !private_route(b"/adminx") && !private_route(b"/secret/")
    );
}
