//! Host unit tests of the decision function, one table row per rule of the
//! contract (`CONTRACT.md`, "Deciding a request" and "Logs and metrics").

use super::*;
use crate::config::compile;
use crate::policy::Policy;
use sha2::{Digest, Sha256};
use std::cell::Cell;

// ---- fixtures -------------------------------------------------------------

fn sha_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const NS: i128 = 1_000_000_000;
/// 2026-11-20T00:00:00Z: `billing-new` and `window` become valid.
const T_NB: i128 = 1_795_132_800 * NS;
/// 2026-11-25T00:00:00Z: the default "now", inside the rotation overlap.
const T_NOW: i128 = 1_795_564_800 * NS;
/// 2026-12-01T00:00:00Z: `billing-old` and `window` expire.
const T_EX: i128 = 1_796_083_200 * NS;

const K_OLD: &str = "nk_billing_old_0123456789abcdefOLD1";
const K_NEW: &str = "nk_billing_new_0123456789abcdefNEW2";
const K_CRON: &str = "nk_cron_0123456789abcdefghijkCRON";
const K_LEAKED: &str = "nk_leaked_0123456789abcdefLEAK";
const K_FUTURE: &str = "nk_future_0123456789abcdefFUTR";
const K_PAST: &str = "nk_past_0123456789abcdefPAST";
const K_UPPER: &str = "nk_upper_digest_0123456789UPPR";
const K_WINDOW: &str = "nk_window_0123456789abcdefWNDW";
const K_UNKNOWN: &str = "nk_unknown_0123456789abcdefWXYZ";

/// A configured key of exactly 512 bytes.
fn k512() -> String {
    format!("{}END5", "L".repeat(508))
}

/// The main test policy; `extra` is spliced in as leading top-level members
/// (e.g. `"mode":"report",`).
fn main_json(extra: &str) -> String {
    format!(
        r#"{{{extra}
        "routes": [
          {{"name":"health","path":"/healthz","auth":"none"}},
          {{"name":"rules","prefix":"/api/v1/rules","methods":["POST"],"auth":"private","allow_clients":["billing"]}},
          {{"name":"workflows","prefix":"/api/v1/workflows","auth":"private"}},
          {{"name":"docs","prefix":"/docs","hosts":["api.example.com"],"auth":"none"}},
          {{"name":"wild","prefix":"/wild","hosts":["*.example.com"],"auth":"none"}},
          {{"name":"reads","prefix":"/reads","methods":["GET"],"auth":"none"}},
          {{"name":"submit","prefix":"/submit","methods":["POST"],"auth":"none"}},
          {{"name":"escaped","path":"/a%3Ab","auth":"none"}},
          {{"name":"v6","prefix":"/v6","hosts":["[::1]"],"auth":"none"}},
          {{"name":"first","prefix":"/first","auth":"none"}},
          {{"name":"shadowed","prefix":"/first/x","auth":"private"}},
          {{"name":"ordered-x","prefix":"/ordered/x","auth":"none"}},
          {{"name":"ordered","prefix":"/ordered","auth":"private"}}
        ],
        "keys": [
          {{"id":"billing-old","client":"billing","sha256":"{old}","expires":"2026-12-01T00:00:00Z"}},
          {{"id":"billing-new","client":"billing","sha256":"{new}","not_before":"2026-11-20T00:00:00Z"}},
          {{"id":"cron","sha256":"{cron}"}},
          {{"id":"leaked","sha256":"{leaked}","revoked":true}},
          {{"id":"future","sha256":"{future}","not_before":"2027-01-01T00:00:00Z"}},
          {{"id":"past","sha256":"{past}","expires":"2026-01-01T00:00:00Z"}},
          {{"id":"upper","sha256":"{upper}"}},
          {{"id":"long512","sha256":"{long}"}},
          {{"id":"window","sha256":"{window}","not_before":"2026-11-20T00:00:00Z","expires":"2026-12-01T00:00:00Z"}}
        ]}}"#,
        old = sha_hex(K_OLD.as_bytes()),
        new = sha_hex(K_NEW.as_bytes()),
        cron = sha_hex(K_CRON.as_bytes()),
        leaked = sha_hex(K_LEAKED.as_bytes()),
        future = sha_hex(K_FUTURE.as_bytes()),
        past = sha_hex(K_PAST.as_bytes()),
        upper = sha_hex(K_UPPER.as_bytes()).to_uppercase(),
        long = sha_hex(k512().as_bytes()),
        window = sha_hex(K_WINDOW.as_bytes()),
    )
}

fn policy(json: &str) -> Policy {
    match compile(json.as_bytes()) {
        Ok(p) => p,
        Err(e) => panic!(
            "test config rejected: {}",
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

fn main_policy(extra: &str) -> Policy {
    policy(&main_json(extra))
}

/// A fake host: a fixed clock and TLS flag, counting what was asked.
struct FakeEnv {
    now: Option<i128>,
    tls: bool,
    now_calls: Cell<u32>,
    tls_calls: Cell<u32>,
    /// Digests another live configuration revokes.
    revoked_elsewhere: Vec<[u8; 32]>,
    revoked_calls: Cell<u32>,
}

impl FakeEnv {
    fn at(now: Option<i128>) -> FakeEnv {
        FakeEnv {
            now,
            tls: false,
            now_calls: Cell::new(0),
            tls_calls: Cell::new(0),
            revoked_elsewhere: Vec::new(),
            revoked_calls: Cell::new(0),
        }
    }

    fn revoked_elsewhere(mut self, keys: &[&str]) -> FakeEnv {
        self.revoked_elsewhere = keys
            .iter()
            .map(|k| Sha256::digest(k.as_bytes()).into())
            .collect();
        self
    }

    fn tls(mut self, tls: bool) -> FakeEnv {
        self.tls = tls;
        self
    }
}

impl Env for FakeEnv {
    fn now(&self) -> Option<i128> {
        self.now_calls.set(self.now_calls.get() + 1);
        self.now
    }

    fn is_tls(&self) -> bool {
        self.tls_calls.set(self.tls_calls.get() + 1);
        self.tls
    }

    fn revoked_elsewhere(&self, digest: &[u8; 32]) -> bool {
        self.revoked_calls.set(self.revoked_calls.get() + 1);
        self.revoked_elsewhere.contains(digest)
    }
}

/// Request headers as Envoy gives them: pseudo-headers included as pairs.
#[derive(Clone, Debug)]
struct Req(Vec<(Vec<u8>, Vec<u8>)>);

impl Req {
    fn new(method: &str, path: impl AsRef<[u8]>) -> Req {
        Req(Vec::new())
            .h(":method", method)
            .h(":path", path)
            .h(":authority", "api.example.com")
            .h(":scheme", "https")
            .h("user-agent", "curl/8")
            .h("accept", "*/*")
    }

    fn get(path: impl AsRef<[u8]>) -> Req {
        Req::new("GET", path)
    }

    fn post(path: impl AsRef<[u8]>) -> Req {
        Req::new("POST", path)
    }

    /// Adds a header line.
    fn h(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Req {
        self.0
            .push((name.as_ref().to_vec(), value.as_ref().to_vec()));
        self
    }

    /// Removes every line of a header.
    fn without(mut self, name: &str) -> Req {
        self.0.retain(|(n, _)| n != name.as_bytes());
        self
    }

    /// Replaces every line of a header by one.
    fn set(self, name: &str, value: impl AsRef<[u8]>) -> Req {
        self.without(name).h(name, value)
    }

    fn key(self, value: impl AsRef<[u8]>) -> Req {
        self.h("nected-api-key", value)
    }

    fn host(self, authority: &str) -> Req {
        self.set(":authority", authority)
    }
}

/// Everything observable about one decision, owned.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    outcome: Outcome,
    reason: &'static str,
    route: String,
    reply: Option<Reply>,
    key_id: Option<String>,
    client: Option<String>,
    removals: Vec<String>,
    set_client: Option<(String, String)>,
    log: String,
    now_calls: u32,
    tls_calls: u32,
}

fn run(p: &Policy, r: &Req, env: &FakeEnv) -> Seen {
    let req = p.scan(r.0.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
    let d = p.decide(&req, env);
    let mut removals: Vec<String> = d
        .removals(&req, p)
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    removals.sort();
    let seen = Seen {
        outcome: d.outcome,
        reason: d.reason.as_str(),
        route: d.route_name().to_owned(),
        reply: d.reply,
        key_id: d.key.map(|k| k.id.to_string()),
        client: d.client.map(str::to_owned),
        removals,
        set_client: d.set_client.map(|(h, c)| (h.to_owned(), c.to_owned())),
        log: d.log_line().to_string(),
        now_calls: env.now_calls.get(),
        tls_calls: env.tls_calls.get(),
    };
    check_invariants(p, r, &d, &seen);
    seen
}

/// What must hold for every decision, whatever the request.
fn check_invariants(p: &Policy, r: &Req, d: &Decision, s: &Seen) {
    let want_reply = match (p.mode, s.outcome) {
        (Mode::Report, _) | (_, Outcome::Public | Outcome::Allowed) => None,
        (_, Outcome::DeniedMissing | Outcome::DeniedInvalid) => Some(Reply::Unauthorized),
        (_, Outcome::DeniedForbidden) => Some(Reply::Forbidden),
        (_, Outcome::DeniedTls) => Some(Reply::HttpsRequired),
        (_, Outcome::DeniedBadRequest) => Some(Reply::BadRequest),
        (_, Outcome::DeniedConfig) => Some(Reply::Unavailable),
    };
    assert_eq!(s.reply, want_reply, "reply for {s:?}");
    // `forward_client` is only set for a key that passed.
    if s.outcome == Outcome::Allowed {
        let want = p
            .forward_client
            .as_deref()
            .map(|h| (h.to_owned(), s.client.clone().unwrap_or_default()));
        assert_eq!(s.set_client, want, "{s:?}");
        assert!(s.key_id.is_some(), "{s:?}");
        assert_eq!(d.reason, Reason::ValidKey);
    } else {
        assert_eq!(s.set_client, None, "{s:?}");
    }
    // The log line: outcome first, never the presented key.
    assert!(
        s.log.starts_with(&format!(
            "outcome={} reason={} ",
            s.outcome.as_str(),
            s.reason
        )),
        "{}",
        s.log
    );
    for (name, value) in &r.0 {
        if crate::config::fold_eq(name, p.header.as_bytes()) && value.len() >= 8 {
            assert!(
                !s.log
                    .as_bytes()
                    .windows(value.len())
                    .any(|w| w == &value[..]),
                "log {:?} holds the presented key",
                s.log
            );
        }
    }
    // The glue looks for a key in the query only when `path_end` does not
    // say there is no query: it never skips a query it would strip.
    let path = r.0.iter().rev().find(|(n, _)| n == b":path");
    if let Some((_, path)) = path.filter(|(_, v)| d.path_end == Some(v.len())) {
        assert_eq!(
            crate::path::without_query_param(path, p.header.as_bytes()),
            None,
            "{s:?}"
        );
    }
    if let Some(end) = d.path_end {
        let raw = path.map(|(_, v)| &v[..]).unwrap_or_default();
        assert!(
            end == raw.len() || matches!(raw.get(end), Some(b'?' | b'#')),
            "path_end {end} in {raw:?}"
        );
    }
    // The host is asked only what it must be asked.
    assert!(s.now_calls <= 1 && s.tls_calls <= 1, "{s:?}");
    if s.tls_calls > 0 {
        assert!(p.require_tls, "is_tls asked without require_tls: {s:?}");
    }
    if matches!(s.outcome, Outcome::Public | Outcome::DeniedBadRequest) {
        assert_eq!((s.now_calls, s.tls_calls), (0, 0), "{s:?}");
    }
    let bounded = d.key.is_some_and(|k| k.has_time_bounds());
    let unbounded_live = d.key.is_none_or(|k| !k.has_time_bounds() && !k.revoked);
    if bounded {
        assert_eq!(
            s.now_calls, 1,
            "clock not read for a time-bounded key: {s:?}"
        );
    }
    if unbounded_live {
        assert_eq!(
            s.now_calls, 0,
            "clock read without a time-bounded key: {s:?}"
        );
    }
}

fn env_now() -> FakeEnv {
    FakeEnv::at(Some(T_NOW))
}

fn go(p: &Policy, r: &Req) -> Seen {
    run(p, r, &env_now())
}

/// `(case, request, outcome, reason, route)`
type Row = (&'static str, Req, Outcome, &'static str, &'static str);

fn check_rows(p: &Policy, env: &dyn Fn() -> FakeEnv, rows: &[Row]) {
    let mut failures = Vec::new();
    for (name, req, outcome, reason, route) in rows {
        let s = run(p, req, &env());
        if (s.outcome, s.reason, s.route.as_str()) != (*outcome, *reason, *route) {
            failures.push(format!(
                "{name}: want {outcome:?}/{reason}/{route}, got {:?}/{}/{} ({})",
                s.outcome, s.reason, s.route, s.log
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

use Outcome::{
    Allowed, DeniedBadRequest, DeniedForbidden, DeniedInvalid, DeniedMissing, DeniedTls, Public,
};

// ---- 1-3: path, method, host, route -----------------------------------------

#[test]
fn routes_public_private_and_default() {
    let p = main_policy("");
    let rows: Vec<Row> = vec![
        (
            "`path`: equal to the canonical path",
            Req::get("/healthz"),
            Public,
            "public_route",
            "health",
        ),
        (
            "`path`: the query is dropped",
            Req::get("/healthz?probe=1&x=/../y"),
            Public,
            "public_route",
            "health",
        ),
        (
            "`path`: the fragment is dropped",
            Req::get("/healthz#top"),
            Public,
            "public_route",
            "health",
        ),
        (
            "`path`: repeated `/` merged",
            Req::get("/;x//healthz"),
            Public,
            "public_route",
            "health",
        ),
        (
            "`path`: a `//`-led path is refused (an authority to URL parsers)",
            Req::get("//healthz"),
            DeniedBadRequest,
            "path_double_slash",
            "(default)",
        ),
        (
            "`path`: `;params` dropped",
            Req::get("/healthz;jsessionid=1"),
            Public,
            "public_route",
            "health",
        ),
        (
            "`path`: unreserved characters decoded",
            Req::get("/%68ealth%7A"),
            Public,
            "public_route",
            "health",
        ),
        (
            "`path`: `/healthz/` is not `/healthz`",
            Req::get("/healthz/"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
        (
            "`path`: `/healthzx` is not `/healthz`",
            Req::get("/healthzx"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
        (
            "`path`: `/healthz/x` is not `/healthz`",
            Req::get("/healthz/x"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
        (
            "`path`: matching is case-sensitive",
            Req::get("/HEALTHZ"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
        (
            "`path`: reserved escapes kept (`%3A`)",
            Req::get("/a%3Ab"),
            Public,
            "public_route",
            "escaped",
        ),
        (
            "`path`: reserved escapes kept, hex upper-cased (`%3a`)",
            Req::get("/a%3ab"),
            Public,
            "public_route",
            "escaped",
        ),
        (
            "`path`: a raw `:` matches the route written `%3A` (one resource, two spellings)",
            Req::get("/a:b"),
            Public,
            "public_route",
            "escaped",
        ),
        (
            "`prefix`: the prefix itself",
            Req::post("/api/v1/rules"),
            DeniedMissing,
            "no_key",
            "rules",
        ),
        (
            "`prefix`: below it",
            Req::post("/api/v1/rules/r-1/run"),
            DeniedMissing,
            "no_key",
            "rules",
        ),
        (
            "`prefix`: with a trailing `/`",
            Req::post("/api/v1/rules/"),
            DeniedMissing,
            "no_key",
            "rules",
        ),
        (
            "`prefix`: whole segments, never `/api/v1/rulesx`",
            Req::post("/api/v1/rulesx"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
        (
            "`prefix`: whole segments, never `/api/v1/rules.json`",
            Req::post("/api/v1/rules.json"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
        (
            "`prefix`: after canonicalisation (`%72`)",
            Req::post("/api/v1/%72ules"),
            DeniedMissing,
            "no_key",
            "rules",
        ),
        (
            "`prefix`: after canonicalisation (`//`, `;x`)",
            Req::post("/api//v1;x/rules"),
            DeniedMissing,
            "no_key",
            "rules",
        ),
        (
            "`prefix`: case-sensitive",
            Req::post("/API/v1/rules"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
        (
            "`methods`: a method not listed falls through",
            Req::get("/api/v1/rules"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
        (
            "`methods`: compared upper-cased (`post`)",
            Req::new("post", "/api/v1/rules"),
            DeniedMissing,
            "no_key",
            "rules",
        ),
        (
            "`methods`: compared upper-cased (`Post`)",
            Req::new("Post", "/api/v1/rules"),
            DeniedMissing,
            "no_key",
            "rules",
        ),
        (
            "`methods`: GET",
            Req::get("/reads/x"),
            Public,
            "public_route",
            "reads",
        ),
        (
            "`methods`: a listed GET also matches HEAD",
            Req::new("HEAD", "/reads/x"),
            Public,
            "public_route",
            "reads",
        ),
        (
            "`methods`: a listed GET also matches `head`",
            Req::new("head", "/reads/x"),
            Public,
            "public_route",
            "reads",
        ),
        (
            "`methods`: GET does not match POST",
            Req::post("/reads/x"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
        (
            "`methods`: GET does not match OPTIONS",
            Req::new("OPTIONS", "/reads/x"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
        (
            "`methods`: a listed POST does not match HEAD",
            Req::new("HEAD", "/submit"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
        (
            "`methods`: a listed POST matches `post`",
            Req::new("post", "/submit"),
            Public,
            "public_route",
            "submit",
        ),
        (
            "`hosts`: exact name",
            Req::get("/docs/a"),
            Public,
            "public_route",
            "docs",
        ),
        (
            "`hosts`: compared lower-case",
            Req::get("/docs/a").host("API.Example.COM"),
            Public,
            "public_route",
            "docs",
        ),
        (
            "`hosts`: port removed",
            Req::get("/docs/a").host("api.example.com:8443"),
            Public,
            "public_route",
            "docs",
        ),
        (
            "`hosts`: one trailing dot dropped",
            Req::get("/docs/a").host("api.example.com."),
            Public,
            "public_route",
            "docs",
        ),
        (
            "`hosts`: trailing dot and port",
            Req::get("/docs/a").host("api.example.com.:443"),
            Public,
            "public_route",
            "docs",
        ),
        (
            "`hosts`: two trailing dots are an empty label",
            Req::get("/docs/a").host("api.example.com.."),
            DeniedBadRequest,
            "bad_host",
            "(default)",
        ),
        (
            "`hosts`: another host falls through",
            Req::get("/docs/a").host("www.example.com"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
        (
            "`hosts`: not a suffix match",
            Req::get("/docs/a").host("xapi.example.com"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
        (
            "`hosts`: `host` where there is no `:authority`",
            Req::get("/docs/a")
                .without(":authority")
                .h("host", "api.example.com"),
            Public,
            "public_route",
            "docs",
        ),
        (
            "`hosts`: `Host` in any case",
            Req::get("/docs/a")
                .without(":authority")
                .h("Host", "API.example.com:80"),
            Public,
            "public_route",
            "docs",
        ),
        (
            "`hosts`: `:authority` wins over `host`",
            Req::get("/docs/a")
                .host("www.example.com")
                .h("host", "api.example.com"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
        (
            "`hosts`: `:authority` wins over `host` (other way)",
            Req::get("/docs/a").h("host", "www.example.com"),
            Public,
            "public_route",
            "docs",
        ),
        (
            "`*.example.com`: one label",
            Req::get("/wild").host("a.example.com"),
            Public,
            "public_route",
            "wild",
        ),
        (
            "`*.example.com`: more labels",
            Req::get("/wild").host("a.b.example.com"),
            Public,
            "public_route",
            "wild",
        ),
        (
            "`*.example.com`: any case, with a port",
            Req::get("/wild").host("A.EXAMPLE.com:80"),
            Public,
            "public_route",
            "wild",
        ),
        (
            "`*.example.com`: never `example.com` itself",
            Req::get("/wild").host("example.com"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
        (
            "`*.example.com`: not `badexample.com`",
            Req::get("/wild").host("badexample.com"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
        (
            "`*.example.com`: not `example.com.evil`",
            Req::get("/wild").host("a.example.com.evil"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
        (
            "`[v6]:port` aware",
            Req::get("/v6").host("[::1]:10000"),
            Public,
            "public_route",
            "v6",
        ),
        (
            "`[v6]` without port",
            Req::get("/v6").host("[::1]"),
            Public,
            "public_route",
            "v6",
        ),
        (
            "first match wins (public before private)",
            Req::get("/first/x/y"),
            Public,
            "public_route",
            "first",
        ),
        (
            "first match wins (private after a more specific public)",
            Req::get("/ordered/y"),
            DeniedMissing,
            "no_key",
            "ordered",
        ),
        (
            "first match wins (the more specific public first)",
            Req::get("/ordered/x"),
            Public,
            "public_route",
            "ordered-x",
        ),
        (
            "`default_auth` private for a request that matches no route",
            Req::get("/nothing"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
        (
            "`default_auth` private for `/`",
            Req::get("/"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
    ];
    check_rows(&p, &env_now, &rows);
}

#[test]
fn prefix_slash_matches_everything_and_default_none() {
    let all = policy(r#"{"routes":[{"name":"all","prefix":"/","auth":"none"}]}"#);
    let rows: Vec<Row> = vec![
        (
            "`prefix: /` matches `/`",
            Req::get("/"),
            Public,
            "public_route",
            "all",
        ),
        (
            "`prefix: /` matches any path",
            Req::post("/a/b/c?d"),
            Public,
            "public_route",
            "all",
        ),
        (
            "`prefix: /` matches `/;x//`",
            Req::get("/;x//"),
            Public,
            "public_route",
            "all",
        ),
        (
            "`prefix: /` still refuses path tricks",
            Req::get("/a/../b"),
            DeniedBadRequest,
            "path_dot_segment",
            "(default)",
        ),
    ];
    check_rows(&all, &env_now, &rows);

    let none = policy(&main_json(r#""default_auth":"none","#));
    let rows: Vec<Row> = vec![
        (
            "`default_auth: none`: unmatched requests pass",
            Req::get("/anything"),
            Public,
            "public_route",
            "(default)",
        ),
        (
            "`default_auth: none`: private routes still need a key",
            Req::get("/api/v1/workflows"),
            DeniedMissing,
            "no_key",
            "workflows",
        ),
        (
            "`default_auth: none`: a route's method mismatch falls to the default",
            Req::get("/api/v1/rules"),
            Public,
            "public_route",
            "(default)",
        ),
    ];
    check_rows(&none, &env_now, &rows);
}

#[test]
fn ambiguous_requests_get_400_before_any_route_or_key() {
    let overrides = [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x_http_method_override",
        "x_http_method",
        "x_method_override",
        "X-HTTP-Method-Override",
        "X-Http-Method",
        "X-Method-Override",
        "x-http_method-override",
    ];
    let mut rows: Vec<(String, Req, &'static str)> = Vec::new();
    for name in [
        "x-original-url",
        "x-rewrite-url",
        "x_original_url",
        "x_rewrite_url",
        "X-Original-URL",
        "X-Rewrite_Url",
    ] {
        rows.push((
            format!("rewrite hint `{name}` on a public route"),
            Req::get("/healthz").h(name, "/api/v1/workflows"),
            "rewrite_hint_header",
        ));
        rows.push((
            format!("rewrite hint `{name}`, empty, with a valid key"),
            Req::post("/api/v1/workflows").key(K_CRON).h(name, ""),
            "rewrite_hint_header",
        ));
    }
    for name in overrides {
        rows.push((
            format!("method override header `{name}` on a public route"),
            Req::get("/healthz").h(name, "DELETE"),
            "method_override_header",
        ));
        rows.push((
            format!("method override header `{name}` with a valid key"),
            Req::post("/api/v1/workflows").key(K_CRON).h(name, "GET"),
            "method_override_header",
        ));
    }
    rows.push((
        "method override header with an empty value".into(),
        Req::get("/healthz").h("x-http-method-override", ""),
        "method_override_header",
    ));
    let paths: &[(&str, &[u8], &str)] = &[
        ("no `:path`", b"", "path_not_origin_form"),
        ("`:path` empty", b"", "path_not_origin_form"),
        ("`*`", b"*", "path_not_origin_form"),
        (
            "authority form (CONNECT)",
            b"api.example.com:443",
            "path_not_origin_form",
        ),
        (
            "absolute form",
            b"http://api.example.com/healthz",
            "path_not_origin_form",
        ),
        ("a query only", b"?/healthz", "path_not_origin_form"),
        ("a `.` segment", b"/./healthz", "path_dot_segment"),
        (
            "a `.` segment at the end",
            b"/healthz/.",
            "path_dot_segment",
        ),
        (
            "a `..` segment",
            b"/docs/../api/v1/workflows",
            "path_dot_segment",
        ),
        (
            "a `..` segment at the end",
            b"/api/v1/workflows/..",
            "path_dot_segment",
        ),
        ("`..;x`", b"/docs/..;x/api/v1/workflows", "path_dot_segment"),
        ("`..;`", b"/docs/..;/api", "path_dot_segment"),
        ("`.;x`", b"/.;x/healthz", "path_dot_segment"),
        ("`%2e%2e`", b"/docs/%2e%2e/api", "path_dot_segment"),
        ("`%2E%2E`", b"/docs/%2E%2E/api", "path_dot_segment"),
        ("`.%2e`", b"/docs/.%2e/api", "path_dot_segment"),
        ("`%2e`", b"/docs/%2e/api", "path_dot_segment"),
        ("`%2e%2e;x`", b"/docs/%2e%2e;x/api", "path_dot_segment"),
        (
            "an encoded `/` (`%2F`)",
            b"/docs%2F..%2Fapi",
            "path_encoded_slash",
        ),
        (
            "an encoded `/` (`%2f`)",
            b"/docs%2fapi",
            "path_encoded_slash",
        ),
        (
            "an encoded `\\` (`%5C`)",
            b"/docs%5C..%5Capi",
            "path_encoded_slash",
        ),
        (
            "an encoded `\\` (`%5c`)",
            b"/docs%5capi",
            "path_encoded_slash",
        ),
        (
            "an encoded `/` in params",
            b"/docs;a%2fb/x",
            "path_encoded_slash",
        ),
        ("a raw `\\`", b"/docs\\..\\api", "path_backslash"),
        (
            "a raw control character (NUL)",
            b"/healthz\0",
            "path_control_character",
        ),
        (
            "a raw control character (0x01)",
            b"/healthz\x01",
            "path_control_character",
        ),
        (
            "a raw control character (tab)",
            b"/health\tz",
            "path_control_character",
        ),
        (
            "a raw control character (CR LF)",
            b"/healthz\r\nx-injected: 1",
            "path_control_character",
        ),
        (
            "a raw control character (DEL)",
            b"/healthz\x7f",
            "path_control_character",
        ),
        ("a raw space", b"/health z", "path_control_character"),
        (
            "an encoded control character (`%00`)",
            b"/healthz%00",
            "path_control_character",
        ),
        (
            "an encoded control character (`%1F`)",
            b"/healthz%1F",
            "path_control_character",
        ),
        (
            "an encoded control character (`%1f`)",
            b"/healthz%1f",
            "path_control_character",
        ),
        (
            "an encoded control character (`%0a`)",
            b"/healthz%0a",
            "path_control_character",
        ),
        (
            "an encoded control character (`%7F`)",
            b"/healthz%7F",
            "path_control_character",
        ),
        (
            "an encoded control character in params",
            b"/healthz;x%00",
            "path_control_character",
        ),
        (
            "invalid percent-encoding (`%zz`)",
            b"/health%zz",
            "path_bad_escape",
        ),
        (
            "invalid percent-encoding (`%` at the end)",
            b"/healthz%",
            "path_bad_escape",
        ),
        (
            "invalid percent-encoding (`%4`)",
            b"/healthz%4",
            "path_bad_escape",
        ),
        (
            "invalid percent-encoding (`%g0`)",
            b"/healthz%g0",
            "path_bad_escape",
        ),
        (
            "invalid percent-encoding in params",
            b"/healthz;%zz",
            "path_bad_escape",
        ),
    ];
    for (i, (name, path, reason)) in paths.iter().enumerate() {
        let req = if i == 0 {
            Req::get("/").without(":path")
        } else {
            Req::get(path)
        };
        rows.push((format!("path: {name}"), req, reason));
    }
    let hosts: &[(&str, Option<&str>, Option<&str>)] = &[
        ("an empty `:authority`", Some(""), None),
        (
            "an empty `:authority` (even with `host`)",
            Some(""),
            Some("api.example.com"),
        ),
        ("no host at all", None, None),
        ("an empty `host`", None, Some("")),
        ("a port only", Some(":443"), None),
        ("a `.` only", Some("."), None),
        ("a `,`", Some("api.example.com,evil.example.com"), None),
        (
            "a `,` in `host`",
            None,
            Some("api.example.com,evil.example.com"),
        ),
        ("an `@`", Some("user@api.example.com"), None),
        ("a space", Some("api.example.com evil"), None),
        ("a tab inside", Some("api.example.com\tevil"), None),
        ("an empty label", Some("api..example.com"), None),
        ("two trailing dots", Some("api.example.com.."), None),
        ("a leading dot", Some(".api.example.com"), None),
        ("a non-numeric port", Some("api.example.com:8x"), None),
        ("two ports", Some("api.example.com:1:2"), None),
        ("an unbracketed IPv6 address", Some("::1"), None),
        ("an unclosed `[`", Some("[::1"), None),
    ];
    for (name, authority, host) in hosts {
        let mut req = Req::get("/healthz").without(":authority");
        if let Some(a) = authority {
            req = req.h(":authority", a);
        }
        if let Some(h) = host {
            req = req.h("host", h);
        }
        rows.push((format!("host: {name}"), req, "bad_host"));
    }
    rows.push((
        "no `:method`".into(),
        Req::get("/healthz").without(":method"),
        "no_method",
    ));
    rows.push((
        "an empty `:method`".into(),
        Req::new("", "/healthz"),
        "no_method",
    ));

    // On the main policy, with a public default, and with a valid key: the
    // answer is always 400, whatever the route and the key.
    let none = policy(r#"{"default_auth":"none"}"#);
    let main = main_policy("");
    let tls = main_policy(r#""require_tls":true,"allow_cors_preflight":true,"#);
    let mut failures = Vec::new();
    for (name, req, reason) in &rows {
        for (label, p, r) in [
            ("default none", &none, req.clone()),
            ("main", &main, req.clone()),
            ("main, valid key", &main, req.clone().key(K_CRON)),
            ("require_tls", &tls, req.clone()),
        ] {
            let s = go(p, &r);
            if (s.outcome, s.reason, s.route.as_str(), s.reply)
                != (
                    DeniedBadRequest,
                    *reason,
                    "(default)",
                    Some(Reply::BadRequest),
                )
            {
                failures.push(format!("{name} [{label}]: got {}", s.log));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn ordinary_headers_near_the_override_names_are_not_overrides() {
    let p = main_policy("");
    for name in [
        "x-http-method-overrides",
        "x-method",
        "x-http-methods",
        "method-override",
    ] {
        let s = go(&p, &Req::get("/healthz").h(name, "DELETE"));
        assert_eq!(s.outcome, Public, "{name}");
    }
}

// ---- 5: the key -------------------------------------------------------------

#[test]
fn presented_keys() {
    let p = main_policy("");
    let at = || Req::get("/api/v1/workflows/run");
    let too_long = format!("{}x", k512());
    let unknown512 = "y".repeat(512);
    type KeyRow = (
        &'static str,
        Req,
        Outcome,
        &'static str,
        Option<&'static str>,
    );
    let rows: Vec<KeyRow> = vec![
        ("no header", at(), DeniedMissing, "no_key", None),
        (
            "the `_` spelling is not the key header",
            at().h("nected_api_key", K_CRON),
            DeniedMissing,
            "no_key",
            None,
        ),
        (
            "an empty value",
            at().key(""),
            DeniedMissing,
            "empty_key",
            None,
        ),
        (
            "the header given more than once (same key twice)",
            at().key(K_CRON).key(K_CRON),
            DeniedInvalid,
            "repeated_key_header",
            None,
        ),
        (
            "the header given more than once (second empty)",
            at().key(K_CRON).key(""),
            DeniedInvalid,
            "repeated_key_header",
            None,
        ),
        (
            "the header given more than once (names in other case)",
            at().key(K_CRON).h("Nected-Api-Key", K_CRON),
            DeniedInvalid,
            "repeated_key_header",
            None,
        ),
        (
            "the header given three times",
            at().key(K_CRON).key(K_CRON).key(K_CRON),
            DeniedInvalid,
            "repeated_key_header",
            None,
        ),
        (
            "a value holding `,` (two keys)",
            at().key(format!("{K_CRON},{K_CRON}")),
            DeniedInvalid,
            "comma_in_key",
            None,
        ),
        (
            "a value holding `,` (`, ` list)",
            at().key(format!("{K_CRON}, {K_OLD}")),
            DeniedInvalid,
            "comma_in_key",
            None,
        ),
        (
            "a value that is `,`",
            at().key(","),
            DeniedInvalid,
            "comma_in_key",
            None,
        ),
        (
            "a value of 513 bytes",
            at().key(&too_long),
            DeniedInvalid,
            "key_too_long",
            None,
        ),
        (
            "a value of 100 000 bytes",
            at().key("z".repeat(100_000)),
            DeniedInvalid,
            "key_too_long",
            None,
        ),
        (
            "a value of 512 bytes is looked up (unknown)",
            at().key(&unknown512),
            DeniedInvalid,
            "unknown_key",
            None,
        ),
        (
            "a value of 512 bytes is looked up (configured)",
            at().key(k512()),
            Allowed,
            "valid_key",
            Some("long512"),
        ),
        (
            "SHA-256 not among the keys",
            at().key(K_UNKNOWN),
            DeniedInvalid,
            "unknown_key",
            None,
        ),
        (
            "the digest itself is not the key",
            at().key(sha_hex(K_CRON.as_bytes())),
            DeniedInvalid,
            "unknown_key",
            None,
        ),
        (
            "exact bytes: a space inside",
            at().key(format!("{K_CRON} x")),
            DeniedInvalid,
            "unknown_key",
            None,
        ),
        (
            "exact bytes: a prefix of a key",
            at().key(&K_CRON[..K_CRON.len() - 1]),
            DeniedInvalid,
            "unknown_key",
            None,
        ),
        (
            "exact bytes: other case",
            at().key(K_CRON.to_uppercase()),
            DeniedInvalid,
            "unknown_key",
            None,
        ),
        (
            "exact bytes: `Bearer ` scheme",
            at().key(format!("Bearer {K_CRON}")),
            DeniedInvalid,
            "unknown_key",
            None,
        ),
        (
            "a non-UTF-8 value",
            at().key([0xff, 0xfe, 0x80, b'a', 0xc3]),
            DeniedInvalid,
            "unknown_key",
            None,
        ),
        (
            "a non-UTF-8 value of 600 bytes",
            at().key([0xff; 600]),
            DeniedInvalid,
            "key_too_long",
            None,
        ),
        (
            "NUL bytes",
            at().key(b"\0\0\0\0nk"),
            DeniedInvalid,
            "unknown_key",
            None,
        ),
        (
            "the key revoked",
            at().key(K_LEAKED),
            DeniedInvalid,
            "revoked",
            Some("leaked"),
        ),
        (
            "the key not yet valid",
            at().key(K_FUTURE),
            DeniedInvalid,
            "not_yet_valid",
            Some("future"),
        ),
        (
            "the key expired",
            at().key(K_PAST),
            DeniedInvalid,
            "expired",
            Some("past"),
        ),
        (
            "a valid key without time bounds",
            at().key(K_CRON),
            Allowed,
            "valid_key",
            Some("cron"),
        ),
        (
            "a valid key whose digest was configured in upper case",
            at().key(K_UPPER),
            Allowed,
            "valid_key",
            Some("upper"),
        ),
        (
            "the header matched case-insensitively",
            at().h("Nected-API-Key", K_CRON),
            Allowed,
            "valid_key",
            Some("cron"),
        ),
        (
            "a valid key next to an `_` spelling of the header",
            at().key(K_CRON).h("nected_api_key", K_UNKNOWN),
            Allowed,
            "valid_key",
            Some("cron"),
        ),
        (
            "a valid key with non-UTF-8 bytes in other headers",
            at().key(K_CRON)
                .h("x-junk", [0xff, 0x00, 0xfe])
                .h([0xc3, 0x28], "v"),
            Allowed,
            "valid_key",
            Some("cron"),
        ),
    ];
    let mut failures = Vec::new();
    for (name, req, outcome, reason, key) in &rows {
        let s = go(&p, req);
        if (s.outcome, s.reason, s.route.as_str(), s.key_id.as_deref())
            != (*outcome, *reason, "workflows", *key)
        {
            failures.push(format!(
                "{name}: want {outcome:?}/{reason}/{key:?}, got {}",
                s.log
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn key_validity_is_the_half_open_interval() {
    let p = main_policy("");
    type TimeRow = (
        &'static str,
        &'static str,
        Option<i128>,
        Outcome,
        &'static str,
    );
    let rows: Vec<TimeRow> = vec![
        (
            "before `expires`",
            K_OLD,
            Some(T_EX - 1),
            Allowed,
            "valid_key",
        ),
        (
            "`now == expires` is expired",
            K_OLD,
            Some(T_EX),
            DeniedInvalid,
            "expired",
        ),
        (
            "after `expires`",
            K_OLD,
            Some(T_EX + 1),
            DeniedInvalid,
            "expired",
        ),
        (
            "before `not_before`",
            K_NEW,
            Some(T_NB - 1),
            DeniedInvalid,
            "not_yet_valid",
        ),
        (
            "`now == not_before` is valid",
            K_NEW,
            Some(T_NB),
            Allowed,
            "valid_key",
        ),
        (
            "long after `not_before`",
            K_NEW,
            Some(T_EX * 2),
            Allowed,
            "valid_key",
        ),
        (
            "both bounds: before",
            K_WINDOW,
            Some(T_NB - 1),
            DeniedInvalid,
            "not_yet_valid",
        ),
        (
            "both bounds: at `not_before`",
            K_WINDOW,
            Some(T_NB),
            Allowed,
            "valid_key",
        ),
        (
            "both bounds: just before `expires`",
            K_WINDOW,
            Some(T_EX - 1),
            Allowed,
            "valid_key",
        ),
        (
            "both bounds: at `expires`",
            K_WINDOW,
            Some(T_EX),
            DeniedInvalid,
            "expired",
        ),
        (
            "a clock before 1970",
            K_WINDOW,
            Some(-1),
            DeniedInvalid,
            "not_yet_valid",
        ),
        (
            "clock unavailable: `expires` only",
            K_OLD,
            None,
            DeniedInvalid,
            "expired",
        ),
        (
            "clock unavailable: `not_before` only",
            K_NEW,
            None,
            DeniedInvalid,
            "not_yet_valid",
        ),
        (
            "clock unavailable: both bounds",
            K_WINDOW,
            None,
            DeniedInvalid,
            "not_yet_valid",
        ),
        (
            "clock unavailable: no bounds",
            K_CRON,
            None,
            Allowed,
            "valid_key",
        ),
        (
            "clock unavailable: revoked",
            K_LEAKED,
            None,
            DeniedInvalid,
            "revoked",
        ),
    ];
    let mut failures = Vec::new();
    for (name, key, now, outcome, reason) in &rows {
        let env = FakeEnv::at(*now);
        let s = run(&p, &Req::get("/api/v1/workflows").key(key), &env);
        if (s.outcome, s.reason) != (*outcome, *reason) {
            failures.push(format!("{name}: want {outcome:?}/{reason}, got {}", s.log));
        }
        if *key != K_CRON && *key != K_LEAKED && s.now_calls != 1 {
            failures.push(format!("{name}: clock asked {} times", s.now_calls));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_clock_is_asked_only_for_time_bounded_keys() {
    let p = main_policy("");
    let cases: &[(&str, Req, u32)] = &[
        ("public route", Req::get("/healthz").key(K_OLD), 0),
        ("no key", Req::get("/api/v1/workflows"), 0),
        ("empty key", Req::get("/api/v1/workflows").key(""), 0),
        (
            "unknown key",
            Req::get("/api/v1/workflows").key(K_UNKNOWN),
            0,
        ),
        (
            "too long",
            Req::get("/api/v1/workflows").key("a".repeat(600)),
            0,
        ),
        (
            "unbounded key",
            Req::get("/api/v1/workflows").key(K_CRON),
            0,
        ),
        ("`expires`", Req::get("/api/v1/workflows").key(K_OLD), 1),
        ("`not_before`", Req::get("/api/v1/workflows").key(K_NEW), 1),
        ("both", Req::get("/api/v1/workflows").key(K_WINDOW), 1),
        ("bad request", Req::get("/a/../b").key(K_OLD), 0),
    ];
    for (name, req, calls) in cases {
        let s = go(&p, req);
        assert_eq!(s.now_calls, *calls, "{name}: {}", s.log);
        assert_eq!(s.tls_calls, 0, "{name}: is_tls asked without require_tls");
    }
}

#[test]
fn the_clock_is_not_asked_for_a_revoked_key_without_bounds() {
    let p = main_policy("");
    let s = go(&p, &Req::get("/api/v1/workflows").key(K_LEAKED));
    assert_eq!((s.outcome, s.reason), (DeniedInvalid, "revoked"));
    assert_eq!(s.now_calls, 0);
}

#[test]
fn rotation_two_keys_of_one_client_both_valid_in_the_overlap() {
    let p = main_policy("");
    let on = |key: &str, now: i128| {
        run(
            &p,
            &Req::post("/api/v1/rules/x").key(key),
            &FakeEnv::at(Some(now)),
        )
    };
    for key in [K_OLD, K_NEW] {
        let s = on(key, T_NOW);
        assert_eq!(s.outcome, Allowed, "{}", s.log);
        assert_eq!(s.client.as_deref(), Some("billing"));
        assert_eq!(
            s.set_client,
            Some(("x-nected-client".to_owned(), "billing".to_owned()))
        );
    }
    assert_eq!(on(K_OLD, T_NOW).key_id.as_deref(), Some("billing-old"));
    assert_eq!(on(K_NEW, T_NOW).key_id.as_deref(), Some("billing-new"));
    // Before the overlap only the old key works; after it only the new one.
    assert_eq!(on(K_OLD, T_NB - 1).outcome, Allowed);
    assert_eq!(on(K_NEW, T_NB - 1).outcome, DeniedInvalid);
    assert_eq!(on(K_OLD, T_EX).outcome, DeniedInvalid);
    assert_eq!(on(K_NEW, T_EX).outcome, Allowed);
}

#[test]
fn allow_clients_gives_403_to_a_valid_key_of_another_client() {
    let p = main_policy("");
    let rules = || Req::post("/api/v1/rules/r1");
    type ClientRow = (&'static str, Req, Outcome, &'static str);
    let rows: Vec<ClientRow> = vec![
        (
            "a client in `allow_clients`",
            rules().key(K_OLD),
            Allowed,
            "valid_key",
        ),
        (
            "a client in `allow_clients` (rotated key)",
            rules().key(K_NEW),
            Allowed,
            "valid_key",
        ),
        (
            "a valid key of another client",
            rules().key(K_CRON),
            DeniedForbidden,
            "client_not_allowed",
        ),
        (
            "a revoked key is 401, not 403",
            rules().key(K_LEAKED),
            DeniedInvalid,
            "revoked",
        ),
        (
            "an expired key is 401, not 403",
            rules().key(K_PAST),
            DeniedInvalid,
            "expired",
        ),
        (
            "an unknown key is 401",
            rules().key(K_UNKNOWN),
            DeniedInvalid,
            "unknown_key",
        ),
        ("no key is 401", rules(), DeniedMissing, "no_key"),
    ];
    for (name, req, outcome, reason) in &rows {
        let s = go(&p, req);
        assert_eq!(
            (s.outcome, s.reason, s.route.as_str()),
            (*outcome, *reason, "rules"),
            "{name}: {}",
            s.log
        );
    }
    let s = go(&p, &rules().key(K_CRON));
    assert_eq!(s.reply, Some(Reply::Forbidden));
    assert_eq!(s.key_id.as_deref(), Some("cron"));
    assert_eq!(s.set_client, None);
    // Routes without `allow_clients`, and the default, allow every client.
    for path in ["/api/v1/workflows", "/unrouted"] {
        for key in [K_CRON, K_OLD, K_UPPER] {
            assert_eq!(go(&p, &Req::post(path).key(key)).outcome, Allowed, "{path}");
        }
    }
}

// ---- require_tls ----------------------------------------------------------

#[test]
fn require_tls_is_checked_on_private_routes_before_any_key() {
    let p = main_policy(r#""require_tls":true,"#);
    type TlsRow = (&'static str, Req, bool, Outcome, &'static str, u32);
    let rows: Vec<TlsRow> = vec![
        (
            "private, plain, no key",
            Req::get("/api/v1/workflows"),
            false,
            DeniedTls,
            "not_tls",
            1,
        ),
        (
            "private, plain, empty key",
            Req::get("/api/v1/workflows").key(""),
            false,
            DeniedTls,
            "not_tls",
            1,
        ),
        (
            "private, plain, two key lines",
            Req::get("/api/v1/workflows").key("a").key("b"),
            false,
            DeniedTls,
            "not_tls",
            1,
        ),
        (
            "private, plain, unknown key",
            Req::get("/api/v1/workflows").key(K_UNKNOWN),
            false,
            DeniedTls,
            "not_tls",
            1,
        ),
        (
            "private, plain, valid key",
            Req::get("/api/v1/workflows").key(K_CRON),
            false,
            DeniedTls,
            "not_tls",
            1,
        ),
        (
            "private, plain, key of another client",
            Req::post("/api/v1/rules").key(K_CRON),
            false,
            DeniedTls,
            "not_tls",
            1,
        ),
        (
            "default private, plain",
            Req::get("/unrouted"),
            false,
            DeniedTls,
            "not_tls",
            1,
        ),
        (
            "private, TLS, no key",
            Req::get("/api/v1/workflows"),
            true,
            DeniedMissing,
            "no_key",
            1,
        ),
        (
            "private, TLS, valid key",
            Req::get("/api/v1/workflows").key(K_CRON),
            true,
            Allowed,
            "valid_key",
            1,
        ),
        (
            "private, TLS, key of another client",
            Req::post("/api/v1/rules").key(K_CRON),
            true,
            DeniedForbidden,
            "client_not_allowed",
            1,
        ),
        (
            "public, plain",
            Req::get("/healthz"),
            false,
            Public,
            "public_route",
            0,
        ),
        (
            "public, plain, with a key",
            Req::get("/healthz").key(K_CRON),
            false,
            Public,
            "public_route",
            0,
        ),
        (
            "ambiguous path, plain",
            Req::get("/api/v1/workflows/../x"),
            false,
            DeniedBadRequest,
            "path_dot_segment",
            0,
        ),
    ];
    for (name, req, tls, outcome, reason, calls) in &rows {
        let env = env_now().tls(*tls);
        let s = run(&p, req, &env);
        assert_eq!(
            (s.outcome, s.reason, s.tls_calls),
            (*outcome, *reason, *calls),
            "{name}: {}",
            s.log
        );
        if *outcome == DeniedTls {
            assert_eq!(s.reply, Some(Reply::HttpsRequired), "{name}");
            assert_eq!(s.key_id, None, "{name}: no key looked up");
            assert_eq!(s.now_calls, 0, "{name}");
        }
    }
    // Without require_tls the host is never asked.
    let plain = main_policy("");
    let s = go(&plain, &Req::get("/api/v1/workflows").key(K_CRON));
    assert_eq!((s.outcome, s.tls_calls), (Allowed, 0));
}

// ---- CORS preflight -------------------------------------------------------

#[test]
fn cors_preflight() {
    let on = main_policy(r#""allow_cors_preflight":true,"strip_key":false,"require_tls":true,"#);
    let off = main_policy("");
    let pre = |path: &str| {
        Req::new("OPTIONS", path)
            .h("origin", "https://app.example.com")
            .h("access-control-request-method", "POST")
    };
    let rows: Vec<Row> = vec![
        (
            "a preflight passes without a key",
            pre("/api/v1/workflows"),
            Public,
            "cors_preflight",
            "(default)",
        ),
        (
            "`options` (not exactly `OPTIONS`) is not a preflight",
            Req::new("options", "/api/v1/rules")
                .h("origin", "o")
                .h("access-control-request-method", "POST"),
            DeniedTls,
            "not_tls",
            "(default)",
        ),
        (
            "an empty `origin` does not make a preflight",
            Req::new("OPTIONS", "/api/v1/rules")
                .h("origin", "")
                .h("access-control-request-method", "POST"),
            DeniedTls,
            "not_tls",
            "(default)",
        ),
        (
            "an empty `access-control-request-method` does not make a preflight",
            Req::new("OPTIONS", "/api/v1/rules")
                .h("origin", "o")
                .h("access-control-request-method", ""),
            DeniedTls,
            "not_tls",
            "(default)",
        ),
        (
            "a preflight, header names in any case",
            Req::new("OPTIONS", "/api/v1/rules")
                .h("Origin", "o")
                .h("Access-Control-Request-Method", "POST"),
            Public,
            "cors_preflight",
            "(default)",
        ),
        (
            "a preflight on a public route",
            pre("/healthz"),
            Public,
            "cors_preflight",
            "(default)",
        ),
        (
            "OPTIONS without `Origin` is not a preflight",
            Req::new("OPTIONS", "/api/v1/workflows").h("access-control-request-method", "POST"),
            DeniedTls,
            "not_tls",
            "workflows",
        ),
        (
            "OPTIONS without `Access-Control-Request-Method` is not a preflight",
            Req::new("OPTIONS", "/api/v1/workflows").h("origin", "o"),
            DeniedTls,
            "not_tls",
            "workflows",
        ),
        (
            "GET with both headers is not a preflight",
            Req::get("/api/v1/workflows")
                .h("origin", "o")
                .h("access-control-request-method", "GET"),
            DeniedTls,
            "not_tls",
            "workflows",
        ),
        (
            "a preflight is judged after step 1 (path)",
            pre("/api/v1/workflows/../admin"),
            DeniedBadRequest,
            "path_dot_segment",
            "(default)",
        ),
        (
            "a preflight is judged after step 2 (override)",
            pre("/api/v1/workflows").h("x-http-method-override", "DELETE"),
            DeniedBadRequest,
            "method_override_header",
            "(default)",
        ),
        (
            "a preflight is judged after step 2 (host)",
            pre("/api/v1/workflows").host("a@b"),
            DeniedBadRequest,
            "bad_host",
            "(default)",
        ),
    ];
    check_rows(&on, &env_now, &rows);

    // Key and client headers are removed, even with strip_key false.
    let s = go(
        &on,
        &pre("/api/v1/workflows")
            .key(K_CRON)
            .h("nected_api_key", "k")
            .h("x-nected-client", "admin")
            .h("x_nected_client", "admin"),
    );
    assert_eq!(s.outcome, Public);
    assert_eq!(
        s.removals,
        [
            "nected-api-key",
            "nected_api_key",
            "x-nected-client",
            "x_nected_client"
        ]
    );
    assert_eq!(s.set_client, None);
    assert_eq!(s.key_id, None, "no key is checked");
    assert_eq!((s.tls_calls, s.now_calls), (0, 0));

    // Off by default: a preflight needs a key like any request.
    let rows: Vec<Row> = vec![
        (
            "`allow_cors_preflight: false`",
            pre("/api/v1/workflows"),
            DeniedMissing,
            "no_key",
            "workflows",
        ),
        (
            "`allow_cors_preflight: false`, with a key",
            pre("/api/v1/workflows").key(K_CRON),
            Allowed,
            "valid_key",
            "workflows",
        ),
        (
            "`allow_cors_preflight: false`, public route",
            pre("/healthz"),
            Public,
            "public_route",
            "health",
        ),
    ];
    check_rows(&off, &env_now, &rows);
}

// ---- report mode ----------------------------------------------------------

#[test]
fn report_mode_decides_like_enforce_but_lets_everything_through() {
    let enforce = main_policy(r#""require_tls":true,"#);
    let report = main_policy(r#""require_tls":true,"mode":"report","#);
    let requests: Vec<(Req, bool)> = vec![
        (Req::get("/healthz").key(K_CRON), false),
        (Req::get("/api/v1/workflows"), true),
        (Req::get("/api/v1/workflows").key(""), true),
        (Req::get("/api/v1/workflows").key(K_CRON).key(K_CRON), true),
        (Req::get("/api/v1/workflows").key("a,b"), true),
        (Req::get("/api/v1/workflows").key("a".repeat(513)), true),
        (Req::get("/api/v1/workflows").key(K_UNKNOWN), true),
        (Req::get("/api/v1/workflows").key(K_LEAKED), true),
        (Req::get("/api/v1/workflows").key(K_PAST), true),
        (Req::get("/api/v1/workflows").key(K_FUTURE), true),
        (Req::get("/api/v1/workflows").key(K_CRON), true),
        (Req::get("/api/v1/workflows").key(K_CRON), false),
        (Req::post("/api/v1/rules").key(K_CRON), true),
        (Req::post("/api/v1/rules").key(K_OLD), true),
        (Req::get("/a/../b").key(K_CRON), true),
        (
            Req::get("/healthz").h("x-http-method-override", "PUT"),
            true,
        ),
        (Req::get("/healthz").host(""), true),
    ];
    let mut outcomes = Vec::new();
    for (req, tls) in &requests {
        let e = run(&enforce, req, &env_now().tls(*tls));
        let r = run(&report, req, &env_now().tls(*tls));
        assert_eq!(
            (
                e.outcome,
                e.reason,
                &e.route,
                &e.key_id,
                &e.client,
                e.now_calls,
                e.tls_calls
            ),
            (
                r.outcome,
                r.reason,
                &r.route,
                &r.key_id,
                &r.client,
                r.now_calls,
                r.tls_calls
            ),
            "{req:?}"
        );
        assert_eq!(r.reply, None, "report mode never replies: {}", r.log);
        assert!(r.log.ends_with(" mode=report"), "{}", r.log);
        assert!(!e.log.contains("mode="), "{}", e.log);
        if r.outcome == Allowed {
            assert_eq!(r.set_client, e.set_client);
        } else {
            assert_eq!(
                r.set_client, None,
                "forward_client only for a key that passed"
            );
        }
        outcomes.push(r.outcome);
    }
    for o in [
        Public,
        Allowed,
        DeniedMissing,
        DeniedInvalid,
        DeniedForbidden,
        DeniedBadRequest,
        DeniedTls,
    ] {
        assert!(outcomes.contains(&o), "no request covered {o:?}");
    }

    // A request let through in report mode still loses spoofed client
    // headers, and the key header when strip_key.
    let s = go(
        &report,
        &Req::post("/api/v1/rules")
            .key(K_CRON)
            .h("x-nected-client", "billing")
            .h("x_nected_client", "billing"),
    );
    assert_eq!(s.outcome, DeniedTls);
    assert_eq!(
        s.removals,
        ["nected-api-key", "x-nected-client", "x_nected_client"]
    );
    let s = run(
        &report,
        &Req::post("/api/v1/rules")
            .key(K_CRON)
            .h("x-nected-client", "billing"),
        &env_now().tls(true),
    );
    assert_eq!((s.outcome, s.reply), (DeniedForbidden, None));
    assert_eq!(s.removals, ["nected-api-key", "x-nected-client"]);
    assert_eq!(s.set_client, None);
}

// ---- header edits ---------------------------------------------------------

#[test]
fn header_edits() {
    let main = main_policy("");
    let keep = main_policy(r#""strip_key":false,"#);
    let off = main_policy(r#""forward_client":"","#);
    let custom = main_policy(r#""header":"x-api-key","forward_client":"x-client","#);
    type EditRow<'a> = (
        &'static str,
        &'a Policy,
        Req,
        Outcome,
        &'static [&'static str],
        Option<(&'static str, &'static str)>,
    );
    let public = || Req::get("/healthz");
    let private = || Req::get("/api/v1/workflows");
    let rows: Vec<EditRow> = vec![
        (
            "public: nothing to edit",
            &main,
            public(),
            Public,
            &[],
            None,
        ),
        (
            "public: the key header removed when strip_key",
            &main,
            public().key(K_CRON),
            Public,
            &["nected-api-key"],
            None,
        ),
        (
            "public: the key header kept without strip_key",
            &keep,
            public().key(K_CRON),
            Public,
            &[],
            None,
        ),
        (
            "public: the `_` spelling of the key header removed when strip_key",
            &main,
            public().h("nected_api_key", K_CRON),
            Public,
            &["nected_api_key"],
            None,
        ),
        (
            "public: the `_` spelling kept without strip_key",
            &keep,
            public().h("Nected_Api_Key", K_CRON),
            Public,
            &[],
            None,
        ),
        (
            "public: key header given twice, removed by name once",
            &main,
            public().key("a").key("b"),
            Public,
            &["nected-api-key"],
            None,
        ),
        (
            "public: a client-sent `x-nected-client` removed",
            &main,
            public().h("x-nected-client", "billing"),
            Public,
            &["x-nected-client"],
            None,
        ),
        (
            "public: a client-sent `X-Nected-Client` removed",
            &main,
            public().h("X-Nected-Client", "billing"),
            Public,
            &["x-nected-client"],
            None,
        ),
        (
            "public: a client-sent `x_nected_client` removed",
            &main,
            public().h("x_nected_client", "billing"),
            Public,
            &["x_nected_client"],
            None,
        ),
        (
            "public: a client-sent `X_NECTED_CLIENT` removed",
            &main,
            public().h("X_NECTED_CLIENT", "billing"),
            Public,
            &["X_NECTED_CLIENT"],
            None,
        ),
        (
            "public: a client-sent `x-nected_client` removed",
            &main,
            public().h("x-nected_client", "billing"),
            Public,
            &["x-nected_client"],
            None,
        ),
        (
            "public: client spoofs removed even without strip_key",
            &keep,
            public().h("x-nected-client", "a").h("x_nected_client", "b"),
            Public,
            &["x-nected-client", "x_nected_client"],
            None,
        ),
        (
            "private, allowed: key removed, forward_client set",
            &main,
            private().key(K_CRON),
            Allowed,
            &["nected-api-key"],
            Some(("x-nected-client", "cron")),
        ),
        (
            "private, allowed: a spoofed client header is replaced, its `_` spelling removed",
            &main,
            private()
                .key(K_CRON)
                .h("x-nected-client", "billing")
                .h("x_nected_client", "billing"),
            Allowed,
            &["nected-api-key", "x_nected_client"],
            Some(("x-nected-client", "cron")),
        ),
        (
            "private, allowed: the `_` key spelling removed too",
            &main,
            private().key(K_CRON).h("nected_api_key", "other"),
            Allowed,
            &["nected-api-key", "nected_api_key"],
            Some(("x-nected-client", "cron")),
        ),
        (
            "private, allowed: key kept without strip_key",
            &keep,
            private().key(K_CRON).h("x_nected_client", "x"),
            Allowed,
            &["x_nected_client"],
            Some(("x-nected-client", "cron")),
        ),
        (
            "private, allowed: forward_client set to the key's client",
            &main,
            private().key(K_NEW),
            Allowed,
            &["nected-api-key"],
            Some(("x-nected-client", "billing")),
        ),
        (
            "private, allowed: `forward_client: \"\"` sets nothing",
            &off,
            private().key(K_CRON),
            Allowed,
            &["nected-api-key"],
            None,
        ),
        (
            "private, allowed: `forward_client: \"\"` leaves `x-nected-client` to the client",
            &off,
            private().key(K_CRON).h("x-nected-client", "x"),
            Allowed,
            &["nected-api-key"],
            None,
        ),
        (
            "custom names: allowed",
            &custom,
            private()
                .h("x-api-key", K_CRON)
                .h("x-client", "a")
                .h("x_client", "b")
                .h("nected-api-key", "n"),
            Allowed,
            &["x-api-key", "x_client"],
            Some(("x-client", "cron")),
        ),
        (
            "custom names: public",
            &custom,
            public()
                .h("X-Api-Key", K_CRON)
                .h("x_api_key", "k")
                .h("X-Client", "a"),
            Public,
            &["x-api-key", "x-client", "x_api_key"],
            None,
        ),
        (
            "custom names: the default header is not a key, and is left alone",
            &custom,
            private().key(K_CRON),
            DeniedMissing,
            &[],
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (name, p, req, outcome, removals, set) in &rows {
        let s = go(p, req);
        let set = set.map(|(h, c)| (h.to_owned(), c.to_owned()));
        if s.outcome != *outcome || s.removals != *removals || s.set_client != set {
            failures.push(format!(
                "{name}: want {outcome:?} {removals:?} {set:?}, got {:?} {:?} {:?}",
                s.outcome, s.removals, s.set_client
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---- bytes, panics --------------------------------------------------------

#[test]
fn arbitrary_header_bytes_never_panic() {
    let policies = [
        main_policy(""),
        main_policy(
            r#""mode":"report","require_tls":true,"allow_cors_preflight":true,"strip_key":false,"#,
        ),
        main_policy(r#""header":"x-api-key","forward_client":"","default_auth":"none","#),
    ];
    let names: &[&[u8]] = &[
        b":path",
        b":method",
        b":authority",
        b":scheme",
        b":status",
        b":",
        b"host",
        b"nected-api-key",
        b"Nected-Api-Key",
        b"nected_api_key",
        b"x-api-key",
        b"x-nected-client",
        b"x_nected_client",
        b"origin",
        b"access-control-request-method",
        b"x-http-method-override",
        b"x_method_override",
        b"",
        b"\xff\xfe",
        b"\0",
    ];
    let keys = [
        K_CRON.as_bytes(),
        K_OLD.as_bytes(),
        K_LEAKED.as_bytes(),
        b"/api/v1/workflows",
        b"OPTIONS",
        b"[::1]:1",
        b"%2e%2e",
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..5_000 {
        let mut req = Req(Vec::new());
        let n = next() % 8;
        for _ in 0..n {
            let name = names[(next() % names.len() as u64) as usize].to_vec();
            let value: Vec<u8> = match next() % 4 {
                0 => keys[(next() % keys.len() as u64) as usize].to_vec(),
                1 => Vec::new(),
                _ => {
                    let len = (next() % 40) as usize;
                    let mut v = Vec::with_capacity(len + 1);
                    if next() % 2 == 0 {
                        v.push(b'/');
                    }
                    for _ in 0..len {
                        v.push((next() >> 24) as u8);
                    }
                    v
                }
            };
            req = req.h(name, value);
        }
        for p in &policies {
            let env =
                FakeEnv::at(if next() % 3 == 0 { None } else { Some(T_NOW) }).tls(next() % 2 == 0);
            let _ = run(p, &req, &env);
        }
    }
}

#[test]
fn decisions_are_the_same_with_authority_or_host() {
    // HTTP/2 gives `:authority`; a host may give HTTP/1.1 `Host` only.
    let p = main_policy("");
    let reqs = [
        Req::get("/docs/x"),
        Req::get("/docs/x").host("other.example.com"),
        Req::get("/wild").host("a.example.com"),
        Req::get("/api/v1/workflows").key(K_CRON),
        Req::get("/api/v1/workflows").host("a,b"),
        Req::get("/api/v1/workflows")
            .host("API.example.com:443")
            .key(K_UNKNOWN),
    ];
    for h2 in reqs {
        let authority =
            h2.0.iter()
                .find(|(n, _)| n == b":authority")
                .map(|(_, v)| v.clone())
                .unwrap();
        let h1 = h2.clone().without(":authority").h("host", authority);
        let (a, b) = (go(&p, &h2), go(&p, &h1));
        assert_eq!(
            (a.outcome, a.reason, &a.route, &a.key_id),
            (b.outcome, b.reason, &b.route, &b.key_id)
        );
    }
}

#[test]
fn a_header_map_of_100_entries_or_more_is_refused() {
    // ngx_wasm_module hands a filter the first 100 entries only.
    let p = main_policy("");
    let with = |n: usize| {
        let mut req = Req::get("/healthz");
        let have = req.0.len();
        for i in have..n {
            req = req.h(format!("x-filler-{i}"), "v");
        }
        assert_eq!(req.0.len(), n);
        req
    };
    let rows: Vec<Row> = vec![
        (
            "99 entries: decided as usual",
            with(99),
            Public,
            "public_route",
            "health",
        ),
        (
            "100 entries: refused",
            with(100),
            DeniedBadRequest,
            "too_many_headers",
            "(default)",
        ),
        (
            "150 entries: refused",
            with(150),
            DeniedBadRequest,
            "too_many_headers",
            "(default)",
        ),
        (
            "100 entries with a valid key: refused",
            with(99).key(K_CRON),
            DeniedBadRequest,
            "too_many_headers",
            "(default)",
        ),
    ];
    check_rows(&p, &env_now, &rows);
}

#[test]
fn host_from_host_judges_the_host_header() {
    // ngx_wasm_module: `:authority` is nginx's `server_name`, the client's
    // host is the `host` header.
    let p = main_policy(r#""host_from":"host","#);
    let rows: Vec<Row> = vec![
        (
            "`host_from: host`: `host` is judged, `:authority` ignored",
            Req::get("/docs/a")
                .host("www.example.com")
                .h("host", "api.example.com"),
            Public,
            "public_route",
            "docs",
        ),
        (
            "`host_from: host`: `:authority` alone does not match",
            Req::get("/docs/a")
                .host("api.example.com")
                .h("host", "other.example.com"),
            DeniedMissing,
            "no_key",
            "(default)",
        ),
        (
            "`host_from: host`: no `host` header is a bad request",
            Req::get("/docs/a").host("api.example.com"),
            DeniedBadRequest,
            "bad_host",
            "(default)",
        ),
        (
            "`host_from: host`: a malformed `host` is refused",
            Req::get("/docs/a").h("host", "a..example.com"),
            DeniedBadRequest,
            "bad_host",
            "(default)",
        ),
    ];
    check_rows(&p, &env_now, &rows);
    // The default reads `:authority` first.
    let p = main_policy("");
    let rows: Vec<Row> = vec![(
        "`host_from: authority` (default): `:authority` wins over `host`",
        Req::get("/docs/a")
            .host("www.example.com")
            .h("host", "api.example.com"),
        DeniedMissing,
        "no_key",
        "(default)",
    )];
    check_rows(&p, &env_now, &rows);
}

// ---- replies --------------------------------------------------------------

#[test]
fn replies_are_exactly_the_contract_table() {
    let table: &[(Reply, u32, &str)] = &[
        (
            Reply::Unauthorized,
            401,
            r#"{"error":"unauthorized","message":"unauthorized access"}"#,
        ),
        (
            Reply::Forbidden,
            403,
            r#"{"error":"forbidden","message":"api key not allowed for this route"}"#,
        ),
        (
            Reply::HttpsRequired,
            403,
            r#"{"error":"forbidden","message":"https required"}"#,
        ),
        (
            Reply::BadRequest,
            400,
            r#"{"error":"bad_request","message":"ambiguous request"}"#,
        ),
        (
            Reply::Unavailable,
            503,
            r#"{"error":"unavailable","message":"no valid configuration"}"#,
        ),
    ];
    for (reply, status, body) in table {
        assert_eq!(reply.status(), *status, "{reply:?}");
        assert_eq!(reply.body().as_bytes(), body.as_bytes(), "{reply:?}");
        let v: serde_json::Value = serde_json::from_str(reply.body()).unwrap();
        assert_eq!(v.as_object().map(|o| o.len()), Some(2));
    }
    // `www-authenticate: ApiKey header="<header>"` on 401.
    assert_eq!(
        &*main_policy("").www_authenticate,
        r#"ApiKey header="nected-api-key""#
    );
    assert_eq!(
        &*main_policy(r#""header":"x-api-key","#).www_authenticate,
        r#"ApiKey header="x-api-key""#
    );
    // The reply never tells missing, unknown, revoked and expired apart.
    let p = main_policy("");
    let replies: Vec<Option<Reply>> = [
        Req::get("/api/v1/workflows"),
        Req::get("/api/v1/workflows").key(""),
        Req::get("/api/v1/workflows").key(K_UNKNOWN),
        Req::get("/api/v1/workflows").key(K_LEAKED),
        Req::get("/api/v1/workflows").key(K_PAST),
        Req::get("/api/v1/workflows").key(K_FUTURE),
        Req::get("/api/v1/workflows").key("a,b"),
        Req::get("/api/v1/workflows").key("a").key("b"),
        Req::get("/api/v1/workflows").key("k".repeat(513)),
    ]
    .iter()
    .map(|r| go(&p, r).reply)
    .collect();
    assert!(
        replies.iter().all(|r| *r == Some(Reply::Unauthorized)),
        "{replies:?}"
    );
}

#[test]
fn without_a_policy_every_request_gets_503() {
    let d = decide_without_policy();
    assert_eq!(d.outcome, Outcome::DeniedConfig);
    assert_eq!(d.outcome.as_str(), "denied_config");
    assert_eq!(d.reply, Some(Reply::Unavailable));
    assert_eq!(d.reply.map(Reply::status), Some(503));
    assert_eq!(
        d.reply.map(Reply::body),
        Some(r#"{"error":"unavailable","message":"no valid configuration"}"#)
    );
    assert_eq!(d.set_client, None);
    assert_eq!(d.key.map(|k| &*k.id), None);
    assert_eq!(
        d.log_line().to_string(),
        "outcome=denied_config reason=no_config route=(default)"
    );
}

#[test]
fn outcome_counter_names() {
    let names: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
    assert_eq!(
        names,
        [
            "public",
            "allowed",
            "denied_missing",
            "denied_invalid",
            "denied_forbidden",
            "denied_bad_request",
            "denied_tls",
            "denied_config"
        ]
    );
    for (i, o) in Outcome::ALL.iter().enumerate() {
        assert_eq!(o.index(), i);
    }
}

// ---- logs -----------------------------------------------------------------

#[test]
fn masked_shows_the_last_4_only_for_long_plain_values() {
    let long_tail = [&[0xffu8; 20][..], b"ab_-"].concat();
    let cases: &[(&[u8], &str)] = &[
        (b"", "****"),
        (b"abc", "****"),
        (b"abcd", "****"),
        (b"abcdefghijklmno", "****"),
        (b"abcdefghijklmnop", "****mnop"),
        (b"0123456789ABCDEF_-Zz", "****_-Zz"),
        (b"0123456789abcdef.xyz", "****"),
        (b"0123456789abcdefxy.z", "****"),
        (b"0123456789abcdefxyz ", "****"),
        (b"0123456789abcdefxyz\n", "****"),
        (b"0123456789abcdefxy%z", "****"),
        (b"0123456789abcdefx\"yz", "****"),
        (b"0123456789abcdef\xff\xfe\xfd\xfc", "****"),
        (&long_tail, "****ab_-"),
        ("0123456789abcdefgé".as_bytes(), "****"),
    ];
    let mut failures = Vec::new();
    for (value, want) in cases {
        let got = Masked(value).to_string();
        if got != *want {
            failures.push(format!(
                "{:?}: want {want}, got {got}",
                String::from_utf8_lossy(value)
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn log_lines() {
    let p = main_policy("");
    let report = main_policy(r#""mode":"report","#);
    let odd_name = policy(r#"{"routes":[{"name":"a b=c key=x","prefix":"/","auth":"private"}]}"#);
    let at = || Req::get("/api/v1/workflows");
    let cases: Vec<(&str, &Policy, Req, &str)> = vec![
        ("a key that passed is named by its id", &p, at().key(K_CRON),
         "outcome=allowed reason=valid_key route=workflows key_id=cron client=cron"),
        ("a rotated key is named by its id, with its client", &p, at().key(K_OLD),
         "outcome=allowed reason=valid_key route=workflows key_id=billing-old client=billing"),
        ("a known but revoked key is named by its id", &p, at().key(K_LEAKED),
         "outcome=denied_invalid reason=revoked route=workflows key_id=leaked client=leaked"),
        ("an unknown key: `****` + last 4", &p, at().key(K_UNKNOWN),
         "outcome=denied_invalid reason=unknown_key route=workflows key=****WXYZ"),
        ("an unknown key under 16 bytes: `****`", &p, at().key("short-key-12345"),
         "outcome=denied_invalid reason=unknown_key route=workflows key=****"),
        ("an unknown key of 16 bytes: `****` + last 4", &p, at().key("short-key-123456"),
         "outcome=denied_invalid reason=unknown_key route=workflows key=****3456"),
        ("an unknown key ending in other characters: `****`", &p, at().key("0123456789abcdef+/=="),
         "outcome=denied_invalid reason=unknown_key route=workflows key=****"),
        ("a non-UTF-8 key: `****`", &p, at().key([0xffu8; 32]),
         "outcome=denied_invalid reason=unknown_key route=workflows key=****"),
        ("a key with a comma", &p, at().key(format!("{K_CRON},{K_UNKNOWN}")),
         "outcome=denied_invalid reason=comma_in_key route=workflows key=****WXYZ"),
        ("a key too long", &p, at().key(format!("{}tail", "k".repeat(600))),
         "outcome=denied_invalid reason=key_too_long route=workflows key=****tail"),
        ("an empty key", &p, at().key(""),
         "outcome=denied_missing reason=empty_key route=workflows key=****"),
        ("no key", &p, at(),
         "outcome=denied_missing reason=no_key route=workflows"),
        ("two key lines: no value logged", &p, at().key(K_UNKNOWN).key(K_CRON),
         "outcome=denied_invalid reason=repeated_key_header route=workflows"),
        ("a public route: no key logged", &p, Req::get("/healthz").key(K_UNKNOWN),
         "outcome=public reason=public_route route=health"),
        ("a key of another client", &p, Req::post("/api/v1/rules").key(K_CRON),
         "outcome=denied_forbidden reason=client_not_allowed route=rules key_id=cron client=cron"),
        ("the default route", &p, Req::get("/x"),
         "outcome=denied_missing reason=no_key route=(default)"),
        ("a bad request", &p, Req::get("/a/%2e%2e/b").key(K_UNKNOWN),
         "outcome=denied_bad_request reason=path_dot_segment route=(default)"),
        ("report mode is marked", &report, at().key(K_UNKNOWN),
         "outcome=denied_invalid reason=unknown_key route=workflows key=****WXYZ mode=report"),
        ("a route name that could blur the fields is quoted", &odd_name, at(),
         "outcome=denied_missing reason=no_key route=\"a b=c key=x\""),
    ];
    let mut failures = Vec::new();
    for (name, policy, req, want) in &cases {
        let s = go(policy, req);
        if s.log != *want {
            failures.push(format!("{name}:\n  want {want}\n  got  {}", s.log));
        }
        for secret in [K_CRON, K_OLD, K_LEAKED, K_UNKNOWN] {
            assert!(!s.log.contains(secret), "{name}: {}", s.log);
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---- hardening: trimming, revocation elsewhere, gRPC statuses ----------------

/// Every value the decision reads is used without surrounding spaces and
/// tabs (what HTTP/1.1 parsers do), so HTTP/2 requests that keep them are
/// decided and counted like their HTTP/1.1 twins.
#[test]
fn header_values_are_trimmed_of_spaces_and_tabs() {
    let p = main_policy(r#""allow_cors_preflight":true,"#);
    let pads = [" ", "\t", "  \t ", "\t \t"];
    type Twin = (&'static str, Box<dyn Fn(&str) -> Req>);
    let twins: Vec<Twin> = vec![
        (
            "a valid key",
            Box::new(|pad: &str| {
                Req::get("/api/v1/workflows/x").key(format!("{pad}{K_CRON}{pad}"))
            }),
        ),
        (
            "a valid key, left pad only",
            Box::new(|pad: &str| Req::get("/api/v1/workflows/x").key(format!("{pad}{K_CRON}"))),
        ),
        (
            "a key of another client",
            Box::new(|pad: &str| Req::post("/api/v1/rules/x").key(format!("{K_CRON}{pad}"))),
        ),
        (
            "a revoked key",
            Box::new(|pad: &str| Req::get("/api/v1/workflows").key(format!("{pad}{K_LEAKED}"))),
        ),
        (
            "an empty key",
            Box::new(|pad: &str| Req::get("/api/v1/workflows").key(pad)),
        ),
        (
            "a key with a comma",
            Box::new(|pad: &str| Req::get("/api/v1/workflows").key(format!("{pad}a,b{pad}"))),
        ),
        (
            "a host",
            Box::new(|pad: &str| Req::get("/docs/a").host(&format!("{pad}api.example.com{pad}"))),
        ),
        (
            "a `host` header",
            Box::new(|pad: &str| {
                Req::get("/docs/a")
                    .without(":authority")
                    .h("host", format!("{pad}api.example.com:443{pad}"))
            }),
        ),
        (
            "a preflight",
            Box::new(|pad: &str| {
                Req::new("OPTIONS", "/api/v1/workflows")
                    .h("origin", format!("{pad}https://app.example.com{pad}"))
                    .h("access-control-request-method", format!("{pad}POST"))
            }),
        ),
        (
            "a preflight of blank values",
            Box::new(|pad: &str| {
                Req::new("OPTIONS", "/api/v1/workflows")
                    .h("origin", pad)
                    .h("access-control-request-method", pad)
            }),
        ),
        (
            "a method",
            Box::new(|pad: &str| Req::new(&format!("{pad}POST{pad}"), "/submit")),
        ),
    ];
    let mut failures = Vec::new();
    for (name, make) in &twins {
        let plain = go(&p, &make(""));
        for pad in pads {
            let padded = go(&p, &make(pad));
            let same = (
                padded.outcome,
                padded.reason,
                &padded.route,
                padded.reply,
                &padded.key_id,
            ) == (
                plain.outcome,
                plain.reason,
                &plain.route,
                plain.reply,
                &plain.key_id,
            );
            if !same {
                failures.push(format!("{name} {pad:?}: {} vs {}", padded.log, plain.log));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    // The contract's cases, spelled out.
    let s = go(
        &p,
        &Req::get("/api/v1/workflows").key(format!(" {K_CRON} ")),
    );
    assert_eq!((s.outcome, s.reason), (Allowed, "valid_key"));
    let s = go(&p, &Req::get("/api/v1/workflows").key(" "));
    assert_eq!((s.outcome, s.reason), (DeniedMissing, "empty_key"));
    let s = go(
        &p,
        &Req::new("OPTIONS", "/api/v1/workflows")
            .h("origin", " ")
            .h("access-control-request-method", " "),
    );
    assert_eq!((s.outcome, s.reason), (DeniedMissing, "no_key"));
    // `:path` is used as sent: a padded path is refused, not trimmed.
    let s = go(&p, &Req::get("/healthz "));
    assert_eq!(
        (s.outcome, s.reason),
        (DeniedBadRequest, "path_control_character")
    );
    let s = go(&p, &Req::get(" /healthz"));
    assert_eq!(
        (s.outcome, s.reason),
        (DeniedBadRequest, "path_not_origin_form")
    );
    // Only spaces and tabs: other white space is part of the value.
    let s = go(
        &p,
        &Req::get("/api/v1/workflows").key(format!("{K_CRON}\r")),
    );
    assert_eq!((s.outcome, s.reason), (DeniedInvalid, "unknown_key"));
}

#[test]
fn trim_removes_only_leading_and_trailing_spaces_and_tabs() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"", b""),
        (b" ", b""),
        (b"\t \t", b""),
        (b"a", b"a"),
        (b" a b\t", b"a b"),
        (b"\ta\t", b"a"),
        (b"\ra\n", b"\ra\n"),
        (b"\x0ba\x0c", b"\x0ba\x0c"),
        (b" \xff ", b"\xff"),
    ];
    for (input, want) in cases {
        assert_eq!(trim(input), *want, "{input:?}");
    }
}

/// A key this configuration holds as valid is refused when another live
/// configuration of the same filter revokes it; the check is made only
/// for such a key, after everything else this configuration decides.
#[test]
fn a_key_revoked_by_another_live_configuration_is_refused() {
    let p = main_policy("");
    let rows: Vec<(&str, Req, Outcome, &str)> = vec![
        (
            "valid here, revoked elsewhere",
            Req::get("/api/v1/workflows").key(K_CRON),
            DeniedInvalid,
            "revoked",
        ),
        (
            "valid here (time-bounded), revoked elsewhere",
            Req::get("/api/v1/workflows").key(K_NEW),
            DeniedInvalid,
            "revoked",
        ),
        (
            "another client's route: 401, not 403",
            Req::post("/api/v1/rules").key(K_CRON),
            DeniedInvalid,
            "revoked",
        ),
        (
            "a key not revoked elsewhere passes",
            Req::get("/api/v1/workflows").key(K_OLD),
            Allowed,
            "valid_key",
        ),
        (
            "expired here: the reason stays expired",
            Req::get("/api/v1/workflows").key(K_PAST),
            DeniedInvalid,
            "expired",
        ),
        (
            "a public route never checks keys",
            Req::get("/healthz").key(K_CRON),
            Public,
            "public_route",
        ),
    ];
    for (name, req, outcome, reason) in rows {
        let env = env_now().revoked_elsewhere(&[K_CRON, K_NEW, K_PAST]);
        let s = run(&p, &req, &env);
        assert_eq!(
            (s.outcome, s.reason),
            (outcome, reason),
            "{name}: {}",
            s.log
        );
        // Asked only about a key this configuration holds as valid.
        let valid_here = matches!(reason, "revoked" | "valid_key");
        assert_eq!(env.revoked_calls.get(), u32::from(valid_here), "{name}");
        if outcome == DeniedInvalid {
            assert_eq!(s.reply, Some(Reply::Unauthorized), "{name}");
            assert!(s.key_id.is_some(), "the log names the refused key: {name}");
        }
    }
    // In report mode: counted as refused, let through, no client header.
    let report = main_policy(r#""mode":"report","#);
    let env = env_now().revoked_elsewhere(&[K_CRON]);
    let s = run(&report, &Req::get("/api/v1/workflows").key(K_CRON), &env);
    assert_eq!(
        (s.outcome, s.reason, s.reply),
        (DeniedInvalid, "revoked", None)
    );
    assert_eq!(s.set_client, None);
}

#[test]
fn grpc_statuses_of_the_replies() {
    let got: Vec<(u32, u32)> = [
        Reply::Unauthorized,
        Reply::Forbidden,
        Reply::HttpsRequired,
        Reply::BadRequest,
        Reply::Unavailable,
    ]
    .iter()
    .map(|r| (r.status(), r.grpc_status()))
    .collect();
    assert_eq!(got, [(401, 16), (403, 7), (403, 7), (400, 3), (503, 14)]);
}

#[test]
fn scan_finds_names_of_every_length_and_skips_the_rest() {
    // Key and client header names longer than 63 bytes share one length
    // class in the scan's filter; they are still found and told apart.
    let key_name = format!("x-{}", "k".repeat(68));
    let client_name = format!("x-{}", "c".repeat(70));
    let p = main_policy(&format!(
        r#""header":"{key_name}","forward_client":"{client_name}","#
    ));
    let env = FakeEnv::at(Some(T_NOW));
    let spoof = client_name.replace('-', "_");
    let r = Req::get("/api/v1/workflows/run")
        .h(&key_name, K_CRON)
        .h(&spoof, "admin")
        .h(format!("x-{}", "z".repeat(61)), "other");
    let s = run(&p, &r, &env);
    assert_eq!(s.outcome, Outcome::Allowed, "{s:?}");
    assert_eq!(s.key_id.as_deref(), Some("cron"));
    assert_eq!(s.removals, vec![key_name.clone(), spoof.clone()]);
    // A long name that is neither is passed over.
    let other = format!("x-{}", "k".repeat(67));
    let s = run(
        &p,
        &Req::get("/api/v1/workflows/run").h(&other, K_CRON),
        &env,
    );
    assert_eq!(s.reason, "no_key", "{s:?}");
    // Every fixed name is still seen, whatever the other names' lengths.
    for (name, reason) in [
        ("x-http-method-override", "method_override_header"),
        ("X_HTTP_METHOD", "method_override_header"),
        ("x-method-override", "method_override_header"),
        ("x-original-url", "rewrite_hint_header"),
        ("x_rewrite_url", "rewrite_hint_header"),
    ] {
        let s = run(&p, &Req::get("/api/v1/workflows/run").h(name, "GET"), &env);
        assert_eq!(s.reason, reason, "{name}");
    }
}
