//! Invariant checks shared by the fuzz targets (`fuzz/fuzz_targets/*.rs`,
//! nightly + libFuzzer) and the stable corpus replay
//! (`tests/fuzz_corpus.rs`, part of `cargo test`). Each entry point takes
//! one raw input and panics when an invariant of the contract breaks:
//!
//! - [`config`]: bytes as a plugin configuration;
//! - [`canonical`]: bytes as a `:path`, against an independent reference
//!   canonicalizer written from the contract's step 1;
//! - [`decide`]: a flags byte and header lines, decided by a fixed policy
//!   and compared with an independent model of "Deciding a request".
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use nected_key_auth::config::{self, fold_eq};
use nected_key_auth::decide::{Decision, Env, Outcome, Reason, Reply, Request};
use nected_key_auth::path::{self, PathError};
use nected_key_auth::policy::{Auth, Mode, PathMatch, Policy};
use nected_key_auth::{host, wire};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::sync::OnceLock;

// ---- shared helpers --------------------------------------------------------

/// A host with a fixed clock and TLS flag.
#[derive(Debug, Clone, Copy)]
pub struct FixedEnv {
    pub now: Option<i128>,
    pub tls: bool,
}

impl Env for FixedEnv {
    fn now(&self) -> Option<i128> {
        self.now
    }
    fn is_tls(&self) -> bool {
        self.tls
    }
}

pub type Headers = Vec<(Vec<u8>, Vec<u8>)>;

fn show(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(b))
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// A header value as the contract uses it: without leading and trailing
/// spaces and tabs (written independently of `decide::trim`).
pub fn model_trim(v: &[u8]) -> &[u8] {
    let mut v = v;
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn sha_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The proxy-wasm header-map serialization, for arbitrary bytes.
pub fn serialize(headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = (headers.len() as u32).to_le_bytes().to_vec();
    for (n, v) in headers {
        out.extend_from_slice(&(n.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (n, v) in headers {
        out.extend_from_slice(n);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

// ---- canonical path ---------------------------------------------------------

/// Step 1 of the contract, written independently of `src/path.rs`: every
/// segment is decoded into `(byte, was_escaped)` tokens first, every
/// problem is collected, then the canonical form is assembled. On error,
/// returns every reason that applies (the filter reports the first it meets).
pub fn reference_canonical(raw: &[u8]) -> Result<Vec<u8>, Vec<PathError>> {
    let end = raw
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(raw.len());
    let path = &raw[..end];
    if path.first() != Some(&b'/') {
        return Err(vec![PathError::NotOriginForm]);
    }
    let mut problems = Vec::new();
    if path.starts_with(b"//") {
        problems.push(PathError::DoubleSlash);
    }
    // Every byte of the path, escapes decoded, `;params` included.
    let mut decoded = Vec::new();
    let mut names: Vec<Vec<u8>> = Vec::new();
    for segment in path[1..].split(|&b| b == b'/') {
        let mut tokens: Vec<(u8, bool)> = Vec::new();
        let mut i = 0;
        while i < segment.len() {
            let b = segment[i];
            let hi = segment.get(i + 1).copied().and_then(hex_digit);
            let lo = segment.get(i + 2).copied().and_then(hex_digit);
            match (b, hi, lo) {
                (b'%', Some(h), Some(l)) => {
                    tokens.push((h * 16 + l, true));
                    i += 3;
                }
                (b'%', _, _) => {
                    problems.push(PathError::BadEscape);
                    i += 1;
                }
                _ => {
                    tokens.push((b, false));
                    i += 1;
                }
            }
        }
        for &(v, escaped) in &tokens {
            if escaped && (v == b'/' || v == b'\\') {
                problems.push(PathError::EncodedSlash);
            }
            if escaped && v == b';' {
                problems.push(PathError::EncodedSemicolon);
            }
            if escaped && (v == b'?' || v == b'#') {
                problems.push(PathError::EncodedDelimiter);
            }
            decoded.push(v);
            if !escaped && v == b'\\' {
                problems.push(PathError::Backslash);
            }
            if is_control(v) || (!escaped && v == b' ') {
                problems.push(PathError::Control);
            }
        }
        // The segment's name ends at the first raw ';' (its params).
        let mut name = Vec::new();
        for &(v, escaped) in tokens.iter().take_while(|&&(v, e)| e || v != b';') {
            if escaped && !is_unreserved(v) {
                name.extend_from_slice(format!("%{v:02X}").as_bytes());
            } else {
                name.push(v);
            }
        }
        if name == b"." || name == b".." {
            problems.push(PathError::DotSegment);
        }
        names.push(name);
        decoded.push(b'/');
    }
    if std::str::from_utf8(&decoded).is_err() {
        problems.push(PathError::NotUtf8);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let trailing = names.last().is_some_and(Vec::is_empty);
    let kept: Vec<&[u8]> = names
        .iter()
        .filter(|n| !n.is_empty())
        .map(Vec::as_slice)
        .collect();
    let mut out = b"/".to_vec();
    out.extend_from_slice(&kept.join(&b'/'));
    if trailing && !kept.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

/// The route-comparison form, independently: every `%XX` but `%25` decoded.
pub fn reference_match_key(canonical: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < canonical.len() {
        let hi = canonical.get(i + 1).copied().and_then(hex_digit);
        let lo = canonical.get(i + 2).copied().and_then(hex_digit);
        match (canonical[i], hi, lo) {
            (b'%', Some(h), Some(l)) if (h, l) != (2, 5) => {
                out.push(h * 16 + l);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// What every canonical path looks like: starts with `/` (never `//`),
/// holds no `?`, `#`, `;`, `\\`, space or control character, raw or
/// encoded, and is UTF-8 once decoded.
pub fn check_canonical_form(c: &[u8]) {
    let s = show(c);
    assert_eq!(c.first(), Some(&b'/'), "canonical {s} starts with /");
    assert!(!c.starts_with(b"//"), "canonical {s} starts with //");
    assert!(
        std::str::from_utf8(&reference_match_key(c)).is_ok(),
        "canonical {s} is not UTF-8 once decoded"
    );
    for (i, &b) in c.iter().enumerate() {
        assert!(
            !matches!(b, b'?' | b'#' | b';' | b'\\' | b' ') && !is_control(b),
            "canonical {s} holds byte {b:#04x}"
        );
        if b == b'%' {
            let (h, l) = (c.get(i + 1).copied(), c.get(i + 2).copied());
            let upper =
                |x: Option<u8>| x.is_some_and(|x| x.is_ascii_digit() || (b'A'..=b'F').contains(&x));
            assert!(
                upper(h) && upper(l),
                "canonical {s}: escape not upper-case hex"
            );
            let v = hex_digit(h.unwrap_or(0)).unwrap_or(0) * 16
                + hex_digit(l.unwrap_or(0)).unwrap_or(0);
            assert!(
                !is_unreserved(v)
                    && !matches!(v, b'/' | b'\\' | b';' | b'?' | b'#')
                    && !is_control(v),
                "canonical {s}: escape %{v:02X} should have been decoded or refused"
            );
        }
    }
    let segments: Vec<&[u8]> = c[1..].split(|&b| b == b'/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        assert!(
            *seg != b"." && *seg != b"..",
            "canonical {s} has a dot segment"
        );
        assert!(
            !seg.is_empty() || i == last,
            "canonical {s} has an empty segment"
        );
    }
}

/// The `canonical` fuzz target: never panics, agrees with the reference,
/// output is well-formed and a fixed point; `match_key` likewise.
pub fn canonical(data: &[u8]) {
    let got = path::canonical(data);
    let want = reference_canonical(data);
    match (&got, &want) {
        (Ok(c), Ok(w)) => assert_eq!(
            c.as_ref(),
            w.as_slice(),
            "canonical of {} is {}, reference says {}",
            show(data),
            show(c),
            show(w)
        ),
        (Err(e), Err(reasons)) => assert!(
            reasons.contains(e),
            "{} refused as {e:?}, reference reasons {reasons:?}",
            show(data)
        ),
        (Ok(c), Err(reasons)) => panic!(
            "{} accepted as {}, reference refuses it: {reasons:?}",
            show(data),
            show(c)
        ),
        (Err(e), Ok(w)) => panic!(
            "{} refused as {e:?}, reference accepts it as {}",
            show(data),
            show(w)
        ),
    }
    // Never panics on anything, canonical or not.
    let _ = path::match_key(data);
    let Ok(c) = got else { return };
    check_canonical_form(&c);
    let again = path::canonical(&c);
    assert_eq!(
        again.as_deref(),
        Ok(c.as_ref()),
        "canonical is not idempotent on {}",
        show(&c)
    );
    if !c.contains(&b'%') {
        assert!(
            matches!(again, Ok(Cow::Borrowed(_))),
            "a plain canonical path {} should be borrowed",
            show(&c)
        );
    }
    let key = path::match_key(&c);
    assert_eq!(
        key.as_ref(),
        reference_match_key(&c).as_slice(),
        "match_key of {}",
        show(&c)
    );
    assert!(key.len() <= c.len());
    for (i, &b) in key.iter().enumerate() {
        if b == b'%' {
            assert_eq!(
                key.get(i + 1..i + 3),
                Some(&b"25"[..]),
                "match_key {} decoded twice or kept an escape",
                show(&key)
            );
        }
    }
}

// ---- the fixed policy of the `decide` target ---------------------------------

const NS: i128 = 1_000_000_000;

/// `(RFC 3339, Unix ns)`; checked against `config::parse_instant`.
const T_NB: (&str, i128) = ("2026-11-20T00:00:00Z", 1_795_132_800 * NS);
const T_EX: (&str, i128) = ("2026-12-01T00:00:00Z", 1_796_083_200 * NS);

/// The clocks a decide input can choose (flags bits 1–2).
pub const CLOCKS: [Option<i128>; 4] = [
    None,
    Some(1_795_564_800 * NS), // 2026-11-25: inside every window
    Some(1_768_435_200 * NS), // 2026-01-15: before not_before
    Some(1_811_808_000 * NS), // 2027-06-01: after expires
];

pub struct ModelKey {
    pub id: &'static str,
    pub client: &'static str,
    pub key: Cow<'static, [u8]>,
    pub revoked: bool,
    pub not_before: Option<(&'static str, i128)>,
    pub expires: Option<(&'static str, i128)>,
}

pub fn model_keys() -> Vec<ModelKey> {
    let k = |id, client, key: &'static str| ModelKey {
        id,
        client,
        key: Cow::Borrowed(key.as_bytes()),
        revoked: false,
        not_before: None,
        expires: None,
    };
    vec![
        ModelKey {
            expires: Some(T_EX),
            ..k(
                "billing-old",
                "billing",
                "nk_billing_old_0123456789abcdefOLD1",
            )
        },
        ModelKey {
            not_before: Some(T_NB),
            ..k(
                "billing-new",
                "billing",
                "nk_billing_new_0123456789abcdefNEW2",
            )
        },
        k("cron", "cron", "nk_cron_0123456789abcdefghijkCRON"),
        ModelKey {
            revoked: true,
            ..k("leaked", "leaked", "nk_leaked_0123456789abcdefLEAK")
        },
        k("ops", "ops", "nk_ops_0123456789abcdefghijklmOPS"),
        ModelKey {
            not_before: Some(T_NB),
            expires: Some(T_EX),
            ..k("window", "window", "nk_window_0123456789abcdefWNDW")
        },
        ModelKey {
            key: Cow::Owned(format!("{}END5", "L".repeat(508)).into_bytes()),
            ..k("long512", "long", "")
        },
        k("short", "short", "k"),
    ]
}

pub struct ModelRoute {
    pub name: &'static str,
    /// `"path"` or `"prefix"`, as configured.
    pub kind: &'static str,
    pub path: &'static str,
    /// The configured path with its escapes decoded, written out by hand.
    pub decoded: &'static [u8],
    pub methods: &'static [&'static str],
    pub hosts: &'static [&'static str],
    pub private: bool,
    pub allow_clients: &'static [&'static str],
}

pub const MODEL_ROUTES: &[ModelRoute] = &[
    route(
        "health",
        "path",
        "/healthz",
        b"/healthz",
        &[],
        &[],
        false,
        &[],
    ),
    route(
        "rules",
        "prefix",
        "/api/v1/rules",
        b"/api/v1/rules",
        &["POST"],
        &[],
        true,
        &["billing"],
    ),
    route(
        "workflows",
        "prefix",
        "/api/v1/workflows",
        b"/api/v1/workflows",
        &[],
        &[],
        true,
        &[],
    ),
    route(
        "docs",
        "prefix",
        "/docs",
        b"/docs",
        &[],
        &["api.example.com"],
        false,
        &[],
    ),
    route(
        "wild",
        "prefix",
        "/wild",
        b"/wild",
        &[],
        &["*.example.com"],
        false,
        &[],
    ),
    route(
        "reads",
        "prefix",
        "/reads",
        b"/reads",
        &["GET"],
        &[],
        false,
        &[],
    ),
    route(
        "admin",
        "prefix",
        "/admin",
        b"/admin",
        &[],
        &[],
        true,
        &["ops", "cron"],
    ),
    route("escaped", "path", "/a%3Ab", b"/a:b", &[], &[], false, &[]),
    route(
        "cafe",
        "path",
        "/caf%C3%A9",
        b"/caf\xc3\xa9",
        &[],
        &[],
        false,
        &[],
    ),
    route(
        "secret",
        "path",
        "/secret",
        b"/secret",
        &["GET", "DELETE"],
        &[],
        true,
        &[],
    ),
    route("v6", "prefix", "/v6", b"/v6", &[], &["[::1]"], false, &[]),
    route(
        "public-host",
        "prefix",
        "/",
        b"/",
        &["GET"],
        &["public.example.org"],
        false,
        &[],
    ),
];

#[allow(clippy::too_many_arguments)]
const fn route(
    name: &'static str,
    kind: &'static str,
    path: &'static str,
    decoded: &'static [u8],
    methods: &'static [&'static str],
    hosts: &'static [&'static str],
    private: bool,
    allow_clients: &'static [&'static str],
) -> ModelRoute {
    ModelRoute {
        name,
        kind,
        path,
        decoded,
        methods,
        hosts,
        private,
        allow_clients,
    }
}

fn json_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(","))
}

/// Policy variant bits (the decide input's flags >> 3).
pub const V_REPORT: usize = 1;
pub const V_DEFAULT_NONE: usize = 2;
pub const V_REQUIRE_TLS: usize = 4;
pub const V_CORS: usize = 8;
pub const V_NO_STRIP: usize = 16;

/// The configuration of policy variant `v` (0..32).
pub fn model_config(v: usize) -> String {
    let mut routes = Vec::new();
    for r in MODEL_ROUTES {
        let mut m = format!(r#"{{"name":{:?},{:?}:{:?}"#, r.name, r.kind, r.path);
        if !r.methods.is_empty() {
            m += &format!(r#","methods":{}"#, json_list(r.methods));
        }
        if !r.hosts.is_empty() {
            m += &format!(r#","hosts":{}"#, json_list(r.hosts));
        }
        m += if r.private {
            r#","auth":"private""#
        } else {
            r#","auth":"none""#
        };
        if !r.allow_clients.is_empty() {
            m += &format!(r#","allow_clients":{}"#, json_list(r.allow_clients));
        }
        routes.push(m + "}");
    }
    let mut keys = Vec::new();
    for (i, k) in model_keys().iter().enumerate() {
        let mut digest = sha_hex(&k.key);
        if i % 2 == 1 {
            digest = digest.to_uppercase(); // any case
        }
        let mut m = format!(
            r#"{{"id":{:?},"client":{:?},"sha256":"{digest}""#,
            k.id, k.client
        );
        if k.revoked {
            m += r#","revoked":true"#;
        }
        if let Some((s, _)) = k.not_before {
            m += &format!(r#","not_before":"{s}""#);
        }
        if let Some((s, _)) = k.expires {
            m += &format!(r#","expires":"{s}""#);
        }
        keys.push(m + "}");
    }
    let flag = |bit: usize| v & bit != 0;
    format!(
        r#"{{"header":"nected-api-key","forward_client":"x-nected-client",
  "default_auth":"{}","mode":"{}","require_tls":{},"allow_cors_preflight":{},"strip_key":{},
  "routes":[{}],
  "keys":[{}]}}"#,
        if flag(V_DEFAULT_NONE) {
            "none"
        } else {
            "private"
        },
        if flag(V_REPORT) { "report" } else { "enforce" },
        flag(V_REQUIRE_TLS),
        flag(V_CORS),
        !flag(V_NO_STRIP),
        routes.join(",\n  "),
        keys.join(",\n  "),
    )
}

/// The 32 compiled variants, built once.
pub fn model_policies() -> &'static [Policy] {
    static POLICIES: OnceLock<Vec<Policy>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        for (s, ns) in [T_NB, T_EX] {
            assert_eq!(config::parse_instant(s), Some(ns), "{s}");
        }
        (0..32)
            .map(|v| match config::compile(model_config(v).as_bytes()) {
                Ok(p) => p,
                Err(e) => panic!("model config {v} rejected: {e:?}"),
            })
            .collect()
    })
}

// ---- decide input format -----------------------------------------------------

/// A decoded `decide` input.
#[derive(Debug, Clone)]
pub struct DecideInput {
    /// Bit 0: TLS; bits 1–2: clock ([`CLOCKS`]); bits 3–7: policy variant.
    pub flags: u8,
    pub headers: Headers,
}

impl DecideInput {
    pub fn variant(&self) -> usize {
        usize::from(self.flags >> 3)
    }
    pub fn env(&self) -> FixedEnv {
        FixedEnv {
            now: CLOCKS[usize::from(self.flags >> 1) & 3],
            tls: self.flags & 1 != 0,
        }
    }
}

/// Input bytes: one flags byte, then header lines separated by `\n`; a
/// line is `name:value` split at the first `:` after the first byte (so
/// `:path:/x` is the pseudo-header `:path`), one space after the `:` is
/// dropped. A value starting `@K<digit>` has that replaced by the
/// plaintext of model key `<digit>` (so the fuzzer can present real keys).
pub fn parse_decide_input(data: &[u8]) -> Option<DecideInput> {
    let (&flags, rest) = data.split_first()?;
    let keys = model_keys();
    let mut headers = Vec::new();
    for line in rest.split(|&b| b == b'\n') {
        let split = line.iter().skip(1).position(|&b| b == b':').map(|i| i + 1);
        let (name, value) = match split {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        let value = match value {
            [b'@', b'K', d, tail @ ..] if d.is_ascii_digit() => {
                match keys.get(usize::from(d - b'0')) {
                    Some(k) => [&k.key[..], tail].concat(),
                    None => value.to_vec(),
                }
            }
            _ => value.to_vec(),
        };
        headers.push((name.to_vec(), value));
    }
    Some(DecideInput { flags, headers })
}

// ---- invariants of any decision -------------------------------------------

fn pairs(headers: &[(Vec<u8>, Vec<u8>)]) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice()))
}

fn expected_reply(outcome: Outcome) -> Option<Reply> {
    match outcome {
        Outcome::Public | Outcome::Allowed => None,
        Outcome::DeniedMissing | Outcome::DeniedInvalid => Some(Reply::Unauthorized),
        Outcome::DeniedForbidden => Some(Reply::Forbidden),
        Outcome::DeniedTls => Some(Reply::HttpsRequired),
        Outcome::DeniedBadRequest => Some(Reply::BadRequest),
        Outcome::DeniedConfig => Some(Reply::Unavailable),
    }
}

/// The mask a presented key may appear as in logs (contract, "Logs").
pub fn reference_mask(v: &[u8]) -> String {
    let tail = &v[v.len().saturating_sub(4)..];
    let shown = v.len() >= 16
        && tail
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if shown {
        format!("****{}", String::from_utf8_lossy(tail))
    } else {
        "****".to_owned()
    }
}

/// Invariants that hold for every policy, request and host.
pub fn check_decision(
    policy: &Policy,
    headers: &[(Vec<u8>, Vec<u8>)],
    req: &Request<'_>,
    env: &FixedEnv,
    d: &Decision<'_, '_>,
) {
    let ctx = || {
        format!(
            "{:?} -> {:?}/{:?}",
            headers_text(headers),
            d.outcome,
            d.reason
        )
    };
    assert_eq!(d.mode, policy.mode, "{}", ctx());
    // A reply is present iff the outcome is a denial in enforce mode, and
    // it is the one the contract gives that outcome.
    let want = expected_reply(d.outcome).filter(|_| policy.mode == Mode::Enforce);
    assert_eq!(d.reply, want, "{}", ctx());

    let key_name = policy.header.as_bytes();
    let key_lines: Vec<&[u8]> = headers
        .iter()
        .filter(|(n, _)| !n.starts_with(b":") && n.eq_ignore_ascii_case(key_name))
        .map(|(_, v)| model_trim(v))
        .collect();
    match d.outcome {
        Outcome::Allowed => {
            // It presented, once, a key whose SHA-256 is in the config; the
            // key is valid now and allowed on the route.
            assert_eq!(key_lines.len(), 1, "{}", ctx());
            let value = key_lines[0];
            assert!(
                !value.is_empty() && value.len() <= config::MAX_KEY_LEN && !value.contains(&b','),
                "{}",
                ctx()
            );
            let digest: [u8; 32] = Sha256::digest(value).into();
            let (_, _, index) = policy
                .by_digest
                .iter()
                .find(|(_, dg, _)| *dg == digest)
                .unwrap_or_else(|| panic!("allowed a key not in the config: {}", ctx()));
            let key = &policy.keys[*index as usize];
            assert!(std::ptr::eq(d.key.unwrap(), key), "{}", ctx());
            assert!(!key.revoked, "{}", ctx());
            if key.not_before.is_some() || key.expires.is_some() {
                let now = env.now.unwrap_or_else(|| panic!("no clock: {}", ctx()));
                assert!(key.not_before.is_none_or(|nb| nb <= now), "{}", ctx());
                assert!(key.expires.is_none_or(|ex| now < ex), "{}", ctx());
            }
            match d.route {
                Some(r) => {
                    assert_eq!(r.auth, Auth::Private, "{}", ctx());
                    assert!(
                        r.allow_clients
                            .as_ref()
                            .is_none_or(|a| a.contains(&key.client)),
                        "{}",
                        ctx()
                    );
                }
                None => assert_eq!(policy.default_auth, Auth::Private, "{}", ctx()),
            }
            assert!(!policy.require_tls || env.tls, "{}", ctx());
            let client = policy.client_name(key);
            assert_eq!(d.client, Some(client), "{}", ctx());
            assert_eq!(
                d.set_client,
                policy.forward_client.as_deref().map(|h| (h, client)),
                "{}",
                ctx()
            );
            assert_eq!(d.presented, Some(value), "{}", ctx());
        }
        Outcome::Public => {
            assert!(d.key.is_none() && d.presented.is_none(), "{}", ctx());
            if d.reason == Reason::CorsPreflight {
                assert!(policy.allow_cors_preflight, "{}", ctx());
            } else {
                assert_eq!(
                    d.route.map_or(policy.default_auth, |r| r.auth),
                    Auth::None,
                    "{}",
                    ctx()
                );
            }
        }
        Outcome::DeniedMissing => assert!(
            key_lines.is_empty() || (key_lines.len() == 1 && key_lines[0].is_empty()),
            "{}",
            ctx()
        ),
        Outcome::DeniedInvalid | Outcome::DeniedForbidden => {
            assert!(!key_lines.is_empty(), "{}", ctx());
        }
        Outcome::DeniedTls => assert!(policy.require_tls && !env.tls, "{}", ctx()),
        Outcome::DeniedBadRequest => assert!(d.route.is_none(), "{}", ctx()),
        Outcome::DeniedConfig => panic!("denied_config with a policy: {}", ctx()),
    }
    if d.outcome != Outcome::Allowed {
        assert!(d.set_client.is_none(), "{}", ctx());
    }
    if matches!(
        d.outcome,
        Outcome::DeniedMissing
            | Outcome::DeniedInvalid
            | Outcome::DeniedForbidden
            | Outcome::DeniedTls
    ) {
        assert_eq!(
            d.route.map_or(policy.default_auth, |r| r.auth),
            Auth::Private,
            "{}",
            ctx()
        );
    }

    // A forwarded request: client-sent client headers (both spellings) are
    // removed, unless the configured name is about to be set; the key header
    // (both spellings) is removed when stripping; nothing else is removed.
    if d.reply.is_none() {
        assert_eq!(
            d.strip_key,
            policy.strip_key || d.reason == Reason::CorsPreflight,
            "{}",
            ctx()
        );
        let removals: Vec<&[u8]> = d.removals(req, policy).collect();
        let removed = |n: &[u8]| removals.iter().any(|r| r.eq_ignore_ascii_case(n));
        for (n, _) in headers {
            if n.starts_with(b":") {
                continue;
            }
            if let Some(fc) = policy.forward_client.as_deref() {
                if fold_eq(n, fc.as_bytes()) {
                    let replaced = d.set_client.is_some() && n.eq_ignore_ascii_case(fc.as_bytes());
                    assert!(
                        removed(n) || replaced,
                        "client header {} kept: {}",
                        show(n),
                        ctx()
                    );
                }
            }
            if d.strip_key && fold_eq(n, key_name) {
                assert!(removed(n), "key header {} kept: {}", show(n), ctx());
            }
        }
        for r in &removals {
            let fc = policy.forward_client.as_deref().unwrap_or("");
            assert!(
                fold_eq(r, key_name) || (!fc.is_empty() && fold_eq(r, fc.as_bytes())),
                "removes {}: {}",
                show(r),
                ctx()
            );
        }
    }

    // The log line shows a presented key only masked.
    let line = d.log_line().to_string();
    if let Some(key) = d.key {
        assert!(line.contains(&format!(" key_id={} ", key.id)), "{line}");
    } else if let Some(v) = d.presented {
        let mut tail = format!(" key={}", reference_mask(v));
        if policy.mode == Mode::Report {
            tail += " mode=report";
        }
        assert!(
            line.ends_with(&tail),
            "log line {line:?} for key {}",
            show(v)
        );
    } else {
        assert!(!line.contains(" key="), "{line}");
    }
}

fn headers_text(headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
    headers
        .iter()
        .map(|(n, v)| {
            format!(
                "{}: {}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            )
        })
        .collect()
}

// ---- the model of "Deciding a request" -----------------------------------------

/// What the contract says the fixed policy `v` decides: the outcome and
/// the name of the matched route (`None`: the default, or before routing).
pub fn model_decide(
    v: usize,
    headers: &[(Vec<u8>, Vec<u8>)],
    env: &FixedEnv,
) -> (Outcome, Option<&'static str>) {
    let flag = |bit: usize| v & bit != 0;
    let bad = (Outcome::DeniedBadRequest, None);
    let plain = |n: &[u8]| !n.starts_with(b":");
    let last_pseudo = |name: &[u8]| {
        headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    };
    let any_plain = |name: &[u8]| {
        headers
            .iter()
            .any(|(n, v)| plain(n) && n.eq_ignore_ascii_case(name) && !model_trim(v).is_empty())
    };

    // 1. Canonical path.
    let Some(raw_path) = last_pseudo(b":path") else {
        return bad;
    };
    let Ok(canonical) = reference_canonical(raw_path) else {
        return bad;
    };
    // 2. Method overrides, method, host.
    let overrides = [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ];
    let override_sent = headers
        .iter()
        .any(|(n, _)| plain(n) && overrides.iter().any(|o| fold_eq(n, o.as_bytes())));
    if override_sent {
        return bad;
    }
    let hint_sent = headers
        .iter()
        .any(|(n, _)| plain(n) && (fold_eq(n, b"x-original-url") || fold_eq(n, b"x-rewrite-url")));
    if hint_sent {
        return bad;
    }
    let method = match last_pseudo(b":method").map(model_trim) {
        Some(m) if !m.is_empty() => m,
        _ => return bad,
    };
    let authority = last_pseudo(b":authority").map(model_trim).or_else(|| {
        headers
            .iter()
            .find(|(n, _)| plain(n) && n.eq_ignore_ascii_case(b"host"))
            .map(|(_, v)| model_trim(v))
    });
    let Some(host) = host::normalize(authority.unwrap_or_default()) else {
        return bad;
    };
    let host = host.to_ascii_lowercase();
    if flag(V_CORS)
        && method == b"OPTIONS"
        && any_plain(b"origin")
        && any_plain(b"access-control-request-method")
    {
        return (Outcome::Public, None);
    }

    // 3. Route.
    let path = reference_match_key(&canonical);
    let upper = method.to_ascii_uppercase();
    let route = MODEL_ROUTES.iter().find(|r| {
        let path_ok = match (r.kind, r.decoded) {
            (_, b"/") => true,
            ("path", p) => path == p,
            (_, p) => path == p || (path.starts_with(p) && path.get(p.len()) == Some(&b'/')),
        };
        let method_ok = r.methods.is_empty()
            || r.methods
                .iter()
                .any(|m| m.as_bytes() == upper || (*m == "GET" && upper == b"HEAD"));
        let host_ok = r.hosts.is_empty()
            || r.hosts.iter().any(|h| match h.strip_prefix('*') {
                Some(suffix) => {
                    host.len() > suffix.len() && host.ends_with(suffix.as_bytes()) && {
                        let labels = &host[..host.len() - suffix.len()];
                        !labels.starts_with(b".") && !labels.ends_with(b".")
                    }
                }
                None => host == h.as_bytes(),
            });
        path_ok && method_ok && host_ok
    });
    let name = route.map(|r| r.name);
    let private = route.map_or(!flag(V_DEFAULT_NONE), |r| r.private);
    // 4. Public.
    if !private {
        return (Outcome::Public, name);
    }
    // 5. Private.
    if flag(V_REQUIRE_TLS) && !env.tls {
        return (Outcome::DeniedTls, name);
    }
    let lines: Vec<&[u8]> = headers
        .iter()
        .filter(|(n, _)| plain(n) && n.eq_ignore_ascii_case(b"nected-api-key"))
        .map(|(_, v)| model_trim(v))
        .collect();
    let value = match lines.as_slice() {
        [] | [b""] => return (Outcome::DeniedMissing, name),
        [v] => *v,
        _ => return (Outcome::DeniedInvalid, name),
    };
    if value.contains(&b',') || value.len() > 512 {
        return (Outcome::DeniedInvalid, name);
    }
    let keys = model_keys();
    let Some(key) = keys.iter().find(|k| *k.key == *value) else {
        return (Outcome::DeniedInvalid, name);
    };
    let valid = !key.revoked
        && match env.now {
            Some(now) => {
                key.not_before.is_none_or(|(_, nb)| nb <= now)
                    && key.expires.is_none_or(|(_, ex)| now < ex)
            }
            None => key.not_before.is_none() && key.expires.is_none(),
        };
    if !valid {
        return (Outcome::DeniedInvalid, name);
    }
    let allowed =
        route.is_none_or(|r| r.allow_clients.is_empty() || r.allow_clients.contains(&key.client));
    if !allowed {
        return (Outcome::DeniedForbidden, name);
    }
    (Outcome::Allowed, name)
}

/// Everything observable about a decision but the reply, owned.
fn observable(d: &Decision<'_, '_>) -> String {
    format!(
        "{:?} {:?} route={} key={:?} client={:?} set={:?} strip={}",
        d.outcome,
        d.reason,
        d.route_name(),
        d.key.map(|k| &k.id),
        d.client,
        d.set_client,
        d.strip_key
    )
}

/// One request against policy variant `v`: the decision agrees with the
/// model and keeps every invariant. Returns the outcome.
pub fn decide_one(v: usize, headers: &[(Vec<u8>, Vec<u8>)], env: &FixedEnv) -> (Outcome, String) {
    let policy = &model_policies()[v];
    let req = policy.scan(pairs(headers));
    let d = policy.decide(&req, env);
    check_decision(policy, headers, &req, env, &d);
    let (outcome, route) = model_decide(v, headers, env);
    assert_eq!(
        (d.outcome, d.route.map(|r| &*r.name)),
        (outcome, route),
        "variant {v}, env {env:?}, request {:?}: filter vs model",
        headers_text(headers)
    );
    (d.outcome, observable(&d))
}

/// The `decide` target.
pub fn decide(data: &[u8]) {
    let Some(input) = parse_decide_input(data) else {
        return;
    };
    let v = input.variant();
    let env = input.env();
    let headers = &input.headers;
    let (outcome, seen) = decide_one(v, headers, &env);

    // Report mode decides, counts and logs exactly as enforce.
    let (_, other) = decide_one(v ^ V_REPORT, headers, &env);
    assert_eq!(
        seen,
        other,
        "report vs enforce on {:?}",
        headers_text(headers)
    );

    // default_auth none only ever makes more requests public.
    let (o_none, o_private) = if v & V_DEFAULT_NONE != 0 {
        (outcome, decide_one(v ^ V_DEFAULT_NONE, headers, &env).0)
    } else {
        (decide_one(v ^ V_DEFAULT_NONE, headers, &env).0, outcome)
    };
    assert!(
        o_none == o_private || o_none == Outcome::Public,
        "default none {o_none:?} vs private {o_private:?} on {:?}",
        headers_text(headers)
    );

    // The proxy-wasm map round-trips and decides the same.
    let map = serialize(headers);
    let back: Headers = wire::pairs(&map)
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect();
    assert_eq!(&back, headers, "wire round trip");

    // The raw bytes after the flags as a (usually malformed) header map:
    // parsing stops cleanly, and whatever parsed is decided soundly.
    let raw: Headers = wire::pairs(&data[1..])
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect();
    if !raw.is_empty() {
        decide_one(v, &raw, &env);
    }
}

// ---- config --------------------------------------------------------------------

/// Longest run of ASCII alphanumerics an error line may share with the
/// configuration: field names (at most 24 letters) may be quoted, values
/// never.
const ECHO_RUN: usize = 25;

fn alnum_runs(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|b| !b.is_ascii_alphanumeric())
        .filter(|r| r.len() >= ECHO_RUN)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The `config` target: compile never panics; errors name a JSON path and
/// never echo the configuration; a compiled policy is consistent, its
/// `nected-key check` summary and shadowing analysis run, and a few
/// requests against it keep every decision invariant.
pub fn config(data: &[u8]) {
    let policy = match config::compile(data) {
        Ok(p) => p,
        Err(errors) => {
            assert!(!errors.is_empty(), "rejected without an error");
            for e in &errors {
                let line = e.to_string();
                assert!(line.starts_with('$'), "error without a JSON path: {line}");
                for run in alnum_runs(line.as_bytes()) {
                    assert!(
                        !contains(data, run),
                        "error {line:?} echoes the configuration"
                    );
                }
            }
            return;
        }
    };
    check_policy(&policy, data);
}

fn check_policy(p: &Policy, data: &[u8]) {
    // Fingerprint: first 12 hex characters of the SHA-256 of the canonical
    // form (RFC 8785), which itself compiles to the same fingerprint.
    let node = nected_key_auth::json::Node::parse(data).unwrap();
    let canonical = nected_key_auth::canonical::to_vec(&node).unwrap();
    assert_eq!(p.fingerprint, sha_hex(&canonical)[..12]);
    assert_eq!(
        config::compile(&canonical).unwrap().fingerprint,
        p.fingerprint
    );
    // Keys, digests and clients are consistent.
    assert_eq!(p.by_digest.len(), p.keys.len());
    assert!(
        p.by_digest.windows(2).all(|w| w[0].1 < w[1].1),
        "digest table sorted, unique"
    );
    for (head, digest, index) in p.by_digest.iter() {
        assert_eq!(*head, nected_key_auth::policy::prefix64(digest));
        assert!((*index as usize) < p.keys.len());
    }
    for k in p.keys.iter() {
        assert!((k.client as usize) < p.clients.len());
        if let (Some(nb), Some(ex)) = (k.not_before, k.expires) {
            assert!(nb < ex, "expires <= not_before accepted");
        }
    }
    for r in p.routes.iter() {
        match &r.matcher {
            PathMatch::Exact(m) | PathMatch::Prefix(m) => {
                assert_eq!(m.first(), Some(&b'/'));
                assert!(m.len() == 1 || m.last() != Some(&b'/'));
            }
            PathMatch::Everything => {}
        }
        for c in r.allow_clients.iter().flat_map(|a| a.iter()) {
            assert!((*c as usize) < p.clients.len());
        }
        assert!(r.methods.iter().all(|m| !m.is_empty()));
    }
    // `nected-key check`'s summary and shadowing analysis.
    for now in CLOCKS.iter().flatten() {
        let s = p.summary(*now);
        assert_eq!(
            (s.routes, s.keys, s.clients),
            (p.routes.len(), p.keys.len(), p.clients.len())
        );
        assert!(s.revoked + s.expired + s.not_yet_valid <= s.keys);
        assert!(s.expiring_7d <= s.keys);
    }
    let shadowed = p.shadowed_routes();
    for &(i, j) in &shadowed {
        assert!(j < i && i < p.routes.len(), "shadowed ({i}, {j})");
    }

    // A few requests, one aimed at each route (at most 16).
    let env = FixedEnv {
        now: CLOCKS[1],
        tls: false,
    };
    let h = |path: &[u8], method: &[u8], host: &[u8], key: Option<&[u8]>| {
        let mut hs: Headers = vec![
            (b":path".to_vec(), path.to_vec()),
            (b":method".to_vec(), method.to_vec()),
            (b":authority".to_vec(), host.to_vec()),
            (b"x-nected-client".to_vec(), b"spoofed".to_vec()),
        ];
        if let Some(k) = key {
            hs.push((p.header.as_bytes().to_vec(), k.to_vec()));
        }
        hs
    };
    let mut requests = vec![
        h(b"/", b"GET", b"example.com", None),
        h(b"/x", b"OPTIONS", b"example.com", Some(b"k")),
    ];
    for (i, r) in p.routes.iter().enumerate().take(16) {
        let path: &[u8] = match &r.matcher {
            PathMatch::Exact(m) | PathMatch::Prefix(m) => m,
            PathMatch::Everything => b"/anything",
        };
        let method = r.methods.first().map_or(&b"GET"[..], |m| m);
        let host = match r.hosts.first() {
            Some(host::HostPattern::Exact(e)) => e.to_vec(),
            Some(host::HostPattern::Suffix(s)) => [&b"x"[..], s].concat(),
            None => b"example.com".to_vec(),
        };
        for key in [None, Some(&b"nk_some_key_value_0123456789"[..])] {
            let hs = h(path, method, &host, key);
            requests.push(hs.clone());
            let req = p.scan(pairs(&hs));
            let d = p.decide(&req, &env);
            check_decision(p, &hs, &req, &env, &d);
            // A request aimed at a shadowed route never lands on it.
            if shadowed.iter().any(|&(s, _)| s == i) {
                assert!(
                    d.route.is_none_or(|got| !std::ptr::eq(got, r)),
                    "shadowed route {i} matched"
                );
            }
        }
    }
    for hs in &requests[..2] {
        let req = p.scan(pairs(hs));
        let d = p.decide(&req, &env);
        check_decision(p, hs, &req, &env, &d);
    }
}
