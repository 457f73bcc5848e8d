//! The contract's main scenario: the example config of CONTRACT.md (with
//! real digests and key windows around the current time), over HTTP/1.1 raw
//! sockets, HTTP/2 (h2c) and gRPC.

use crate::harness::*;
use std::collections::BTreeMap;

pub const K_OLD: &str = "e2e_billing_old_key_AAAAAAAAAAAA1";
pub const K_NEW: &str = "e2e_billing_new_key_BBBBBBBBBBBB2";
pub const K_EXPIRED: &str = "e2e_billing_expired_CCCCCCCCCCC3";
pub const K_FUTURE: &str = "e2e_billing_future_DDDDDDDDDDDD4";
pub const K_CRON: &str = "e2e_cron_key_EEEEEEEEEEEEEEEEEEE5";
pub const K_LEAKED: &str = "e2e_leaked_key_FFFFFFFFFFFFFFFF6";

pub fn config() -> String {
    format!(
        r#"{{
  "header": "nected-api-key",
  "default_auth": "private",
  "routes": [
    {{ "name": "health", "path": "/healthz", "auth": "none" }},
    {{ "name": "rules", "prefix": "/api/v1/rules", "methods": ["POST"], "auth": "private", "allow_clients": ["billing"] }},
    {{ "name": "workflows", "prefix": "/api/v1/workflows", "auth": "private" }},
    {{ "name": "docs", "prefix": "/docs", "hosts": ["api.example.com"], "auth": "none" }},
    {{ "name": "wild", "prefix": "/wild", "hosts": ["*.example.com"], "auth": "none" }},
    {{ "name": "reports", "prefix": "/reports", "methods": ["GET"], "auth": "none" }}
  ],
  "keys": [
    {{ "id": "billing-old", "client": "billing", "sha256": "{old}", "expires": "{in_1h}" }},
    {{ "id": "billing-new", "client": "billing", "sha256": "{new}", "not_before": "{ago_1h}" }},
    {{ "id": "billing-expired", "client": "billing", "sha256": "{expired}", "expires": "{ago_1h}" }},
    {{ "id": "billing-future", "client": "billing", "sha256": "{future}", "not_before": "{in_1h}" }},
    {{ "id": "cron", "sha256": "{cron}" }},
    {{ "id": "leaked", "sha256": "{leaked}", "revoked": true }}
  ],
  "strip_key": true,
  "forward_client": "x-nected-client",
  "allow_cors_preflight": false,
  "require_tls": false,
  "mode": "enforce",
  "log_requests": true
}}
"#,
        old = sha256_hex(K_OLD.as_bytes()),
        // Upper-case hex is accepted too.
        new = sha256_hex(K_NEW.as_bytes()).to_uppercase(),
        expired = sha256_hex(K_EXPIRED.as_bytes()),
        future = sha256_hex(K_FUTURE.as_bytes()),
        cron = sha256_hex(K_CRON.as_bytes()),
        leaked = sha256_hex(K_LEAKED.as_bytes()),
        in_1h = rfc3339_from_now(3600),
        ago_1h = rfc3339_from_now(-3600),
    )
}

const BODY_401: &str = r#"{"error":"unauthorized","message":"unauthorized access"}"#;
const BODY_403: &str = r#"{"error":"forbidden","message":"api key not allowed for this route"}"#;
const BODY_400: &str = r#"{"error":"bad_request","message":"ambiguous request"}"#;

/// Counts what each request should add to the counters.
#[derive(Default)]
struct Expect(BTreeMap<&'static str, u64>);

impl Expect {
    fn add(&mut self, outcome: &'static str) {
        *self.0.entry(outcome).or_default() += 1;
    }
}

#[test]
fn contract_example_over_http1_http2_and_grpc() {
    let config = config();
    // Everything at debug except two Envoy components that print what they
    // were given: `http` dumps raw request headers (keys included) and
    // `config` the whole listener config (digests included); see README.
    let envoy = Envoy::start(
        "contract",
        Setup::new(config.clone()).log_args(&[
            "--log-level",
            "debug",
            "--component-log-level",
            "http:info,config:info",
        ]),
    );
    let mut t = Cases::default();
    let mut want = Expect::default();
    let port = envoy.port();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");

    // -- public, private, default ------------------------------------------
    let r = envoy.send(Req::get("/healthz"));
    t.passed("public exact path passes without a key", &r);
    want.add("public");
    let r = envoy.send(Req::get("/healthz?probe=1"));
    t.passed("query is not part of the path", &r);
    want.add("public");
    let r = envoy.send(Req::get("/healthz/"));
    t.status(
        "exact path does not match a trailing slash (default private)",
        &r,
        401,
    );
    want.add("denied_missing");
    let r = envoy.send(Req::get("/healthz").key(K_CRON));
    if let Some(e) = t.passed("public route with a key passes", &r) {
        t.check(
            "key header stripped on a public route",
            !e.has("nected-api-key"),
            &e.headers,
        );
        t.check(
            "no client header on a public route",
            !e.has("x-nected-client"),
            &e.headers,
        );
    }
    want.add("public");

    let r = envoy.send(Req::get("/api/v1/workflows/run"));
    t.status("private route without key", &r, 401);
    t.check(
        "401 body byte for byte",
        r.body_str() == BODY_401,
        r.body_str(),
    );
    t.check(
        "401 content-type",
        r.header("content-type").as_deref() == Some("application/json"),
        r.header("content-type"),
    );
    t.check(
        "401 www-authenticate",
        r.header("www-authenticate").as_deref() == Some(r#"ApiKey header="nected-api-key""#),
        r.header("www-authenticate"),
    );
    want.add("denied_missing");

    let r = envoy.send(Req::get("/api/v1/workflows/run").key(K_CRON));
    if let Some(e) = t.passed("private route with a valid key", &r) {
        t.check(
            "key header stripped upstream",
            !e.has("nected-api-key"),
            &e.headers,
        );
        t.check(
            "forward_client set to the key's client (id by default)",
            e.all("x-nected-client") == ["cron"],
            e.all("x-nected-client"),
        );
        t.check(
            "upstream path unchanged",
            e.path == "/api/v1/workflows/run",
            &e.path,
        );
    }
    want.add("allowed");

    let r = envoy.send(Req::get("/somewhere/else"));
    t.status("no route matches: default_auth private", &r, 401);
    want.add("denied_missing");
    let r = envoy.send(Req::get("/somewhere/else").key(K_CRON));
    t.passed("default route with a valid key", &r);
    want.add("allowed");

    // -- prefixes, methods --------------------------------------------------
    let r = envoy.send(Req::post("/api/v1/rules").key(K_CRON));
    t.status("prefix matches itself (cron not allowed on rules)", &r, 403);
    t.check(
        "403 body byte for byte",
        r.body_str() == BODY_403,
        r.body_str(),
    );
    t.check(
        "403 content-type",
        r.header("content-type").as_deref() == Some("application/json"),
        r.header("content-type"),
    );
    t.check(
        "403 has no www-authenticate",
        r.header("www-authenticate").is_none(),
        &r.headers,
    );
    want.add("denied_forbidden");
    let r = envoy.send(Req::post("/api/v1/rules/eval").key(K_CRON));
    t.status("prefix matches below itself", &r, 403);
    want.add("denied_forbidden");
    let r = envoy.send(Req::post("/api/v1/rulesx").key(K_CRON));
    t.passed(
        "prefix never matches /api/v1/rulesx (default route instead)",
        &r,
    );
    want.add("allowed");
    let r = envoy.send(Req::get("/api/v1/rules/eval").key(K_CRON));
    t.passed("methods: GET does not match a POST route", &r);
    want.add("allowed");
    let r = envoy.send(Req::post("/api/v1/rules/eval").key(K_NEW));
    if let Some(e) = t.passed("allow_clients: billing key on the rules route", &r) {
        t.check(
            "client of the rotated key",
            e.all("x-nected-client") == ["billing"],
            &e.headers,
        );
    }
    want.add("allowed");
    let r = envoy.send(Req::new("HEAD", "/reports/daily"));
    t.check(
        "HEAD matches a GET route (public)",
        r.status == 200,
        r.status,
    );
    want.add("public");
    let r = envoy.send(Req::post("/reports/daily"));
    t.status("POST does not match a GET route (default private)", &r, 401);
    want.add("denied_missing");

    // -- method override ----------------------------------------------------
    for name in [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x_http_method_override",
    ] {
        let r = envoy.send(Req::get("/healthz").header(name, "DELETE"));
        t.status(&format!("{name} -> 400 even on a public route"), &r, 400);
        t.check(
            "400 body byte for byte",
            r.body_str() == BODY_400,
            r.body_str(),
        );
        t.check(
            "400 content-type",
            r.header("content-type").as_deref() == Some("application/json"),
            r.header("content-type"),
        );
        want.add("denied_bad_request");
    }

    // -- hosts --------------------------------------------------------------
    for host in [
        "api.example.com",
        "API.Example.COM:8443",
        "api.example.com.",
        "api.example.com.:80",
    ] {
        let r = envoy.send(Req::get("/docs/intro").host(host));
        t.passed(&format!("host {host:?} matches api.example.com"), &r);
        want.add("public");
    }
    let r = envoy.send(Req::get("/docs/intro").host("other.example.org"));
    t.status("other host: docs route does not match", &r, 401);
    want.add("denied_missing");
    let r = envoy.send(Req::get("/wild/x").host("a.b.example.com"));
    t.passed("wildcard matches labels before the suffix", &r);
    want.add("public");
    let r = envoy.send(Req::get("/wild/x").host("example.com"));
    t.status("wildcard never matches the bare domain", &r, 401);
    want.add("denied_missing");
    let r = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "host: api.example.com",
        &url("/docs/intro"),
    ]);
    t.passed("HTTP/2 :authority is the host", &r);
    want.add("public");
    let r = envoy.raw(b"GET /healthz HTTP/1.1\r\nhost: a@b\r\nconnection: close\r\n\r\n");
    t.status("host holding @ -> 400", &r, 400);
    want.add("denied_bad_request");
    let r = envoy.raw(b"GET http://api.example.com/docs/x HTTP/1.1\r\nhost: api.example.com\r\nconnection: close\r\n\r\n");
    t.passed("absolute-form target: path and authority from it", &r);
    want.add("public");

    // -- keys ---------------------------------------------------------------
    let r = envoy.send(Req::get("/api/v1/workflows/x").header("nected-api-key", ""));
    t.status("empty key value", &r, 401);
    want.add("denied_missing");
    for (case, key) in [
        ("unknown key", "e2e_unknown_key_GGGGGGGGGGGGGGWXYZ"),
        ("revoked key", K_LEAKED),
        ("expired key", K_EXPIRED),
        ("not-yet-valid key", K_FUTURE),
    ] {
        let r = envoy.send(Req::get("/api/v1/workflows/x").key(key));
        t.status(case, &r, 401);
        t.check(
            &format!("{case}: same body as missing"),
            r.body_str() == BODY_401,
            r.body_str(),
        );
        want.add("denied_invalid");
    }
    for (case, key) in [
        ("rotation: old key in overlap", K_OLD),
        ("rotation: new key in overlap", K_NEW),
    ] {
        let r = envoy.send(Req::get("/api/v1/workflows/x").key(key));
        if let Some(e) = t.passed(case, &r) {
            t.check(case, e.all("x-nected-client") == ["billing"], &e.headers);
        }
        want.add("allowed");
    }
    let r = envoy.send(Req::get("/api/v1/workflows/x").key(K_CRON).key(K_CRON));
    t.status("key header on two lines", &r, 401);
    want.add("denied_invalid");
    let r = envoy.send(Req::get("/api/v1/workflows/x").key(&format!("{K_CRON}, {K_CRON}")));
    t.status("comma-joined key values", &r, 401);
    want.add("denied_invalid");
    let r = envoy.send(Req::get("/api/v1/workflows/x").key(&"A".repeat(513)));
    t.status("key value over 512 bytes", &r, 401);
    want.add("denied_invalid");
    let r = envoy.send(Req::get("/api/v1/workflows/x").header("NECTED-API-KEY", K_CRON));
    t.passed("header name in upper case", &r);
    want.add("allowed");
    let r =
        envoy.send(Req::get("/api/v1/workflows/x").header("nected-api-key", b"\xff\xfe\x80abc"));
    t.status("non-UTF-8 key value", &r, 401);
    want.add("denied_invalid");
    let r = envoy.send(
        Req::get("/api/v1/workflows/x")
            .key(K_CRON)
            .header("x-binary", b"\xff\xfe\x80"),
    );
    if let Some(e) = t.passed("non-UTF-8 value in another header", &r) {
        t.check(
            "other header forwarded as is",
            e.all("x-binary") == ["\u{fffd}\u{fffd}\u{fffd}"]
                || e.headers
                    .iter()
                    .any(|(n, v)| n == "x-binary" && v == b"\xff\xfe\x80"),
            &e.headers,
        );
    }
    want.add("allowed");
    let r = envoy.send(Req::get("/api/v1/workflows/x").key(K_CRON));
    t.passed("the VM keeps serving after odd bytes", &r);
    want.add("allowed");
    let short = "short";
    let odd = "e2e_odd_tail_value_!!!!";
    for v in [short, odd] {
        let r = envoy.send(Req::get("/api/v1/workflows/x").key(v));
        t.status("odd key values are refused", &r, 401);
        want.add("denied_invalid");
    }

    // -- client header spoofing -------------------------------------------
    for name in ["x-nected-client", "x_nected_client"] {
        let r = envoy.send(Req::get("/healthz").header(name, "admin"));
        if let Some(e) = t.passed(&format!("spoofed {name} on a public route"), &r) {
            t.check(
                &format!("{name} removed on a public route"),
                !e.has("x-nected-client") && !e.has("x_nected_client"),
                &e.headers,
            );
        }
        want.add("public");
        let r = envoy.send(
            Req::get("/api/v1/workflows/x")
                .key(K_CRON)
                .header(name, "admin"),
        );
        if let Some(e) = t.passed(&format!("spoofed {name} on a private route"), &r) {
            t.check(
                &format!("{name} replaced by the real client"),
                e.all("x-nected-client") == ["cron"] && !e.has("x_nected_client"),
                &e.headers,
            );
        }
        want.add("allowed");
    }
    let r = envoy.send(Req::get("/healthz").header("nected_api_key", K_CRON));
    if let Some(e) = t.passed("key header spelled with _ on a public route", &r) {
        t.check(
            "its _ spelling is stripped too",
            !e.has("nected_api_key"),
            &e.headers,
        );
    }
    want.add("public");

    // -- CORS preflight (off) -----------------------------------------------
    let r = envoy.send(
        Req::new("OPTIONS", "/api/v1/workflows/x")
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST"),
    );
    t.status(
        "CORS preflight needs a key when allow_cors_preflight is off",
        &r,
        401,
    );
    want.add("denied_missing");

    // -- HTTP/2 and gRPC ----------------------------------------------------
    let h2 = |args: &[&str]| {
        let mut all = vec!["--http2-prior-knowledge"];
        all.extend_from_slice(args);
        curl(&all)
    };
    let r = h2(&[&url("/api/v1/workflows/x")]);
    t.status("HTTP/2: private without key", &r, 401);
    t.check(
        "HTTP/2: same 401 body",
        r.body_str() == BODY_401,
        r.body_str(),
    );
    want.add("denied_missing");
    let key_header = format!("nected-api-key: {K_CRON}");
    let r = h2(&["-H", &key_header, &url("/api/v1/workflows/x")]);
    if let Some(e) = t.passed("HTTP/2: private with key", &r) {
        t.check(
            "HTTP/2: key stripped, client set",
            !e.has("nected-api-key") && e.all("x-nected-client") == ["cron"],
            &e.headers,
        );
    }
    want.add("allowed");
    let r = h2(&["-X", "post", "-H", &key_header, &url("/api/v1/rules/eval")]);
    t.status("HTTP/2 lower-case method matches the POST route", &r, 403);
    want.add("denied_forbidden");
    let r = h2(&[
        "-H",
        &key_header,
        "-H",
        &key_header,
        &url("/api/v1/workflows/x"),
    ]);
    t.status("HTTP/2: key header given twice", &r, 401);
    want.add("denied_invalid");
    let grpc = |path: &str, key: Option<&str>| {
        let header = key.map(|k| format!("nected-api-key: {k}"));
        let extra: Vec<&str> = header.iter().flat_map(|h| ["-H", h.as_str()]).collect();
        grpc_curl(&url(path), &extra)
    };
    let r = grpc("/api/v1/rules/Eval", None);
    t.check(
        "gRPC without key: HTTP 200, grpc-status 16",
        r.status == 200
            && r.header("grpc-status").as_deref() == Some("16")
            && !r.reached_upstream(),
        &r,
    );
    want.add("denied_missing");
    let r = grpc("/api/v1/rules/Eval", Some(K_CRON));
    t.check(
        "gRPC with a key of another client: grpc-status 7",
        r.status == 200 && r.header("grpc-status").as_deref() == Some("7") && !r.reached_upstream(),
        &r,
    );
    want.add("denied_forbidden");

    // -- counters, logs, filter state --------------------------------------
    let counters = envoy.counters();
    for outcome in [
        "public",
        "allowed",
        "denied_missing",
        "denied_invalid",
        "denied_forbidden",
        "denied_bad_request",
        "denied_tls",
        "denied_config",
    ] {
        let expected = want.0.get(outcome).copied().unwrap_or(0);
        t.check(
            &format!("/stats counter {outcome}"),
            counters.get(outcome) == Some(&expected),
            format_args!("want {expected}, got {:?}", counters.get(outcome)),
        );
    }
    let prom = envoy.admin_get("/stats/prometheus").unwrap().body_str();
    for (outcome, n) in &want.0 {
        let line = format!("nected_key_auth_{outcome}{{}} {n}");
        t.check(
            "/stats/prometheus counter",
            prom.lines().any(|l| l == line),
            &line,
        );
    }
    let reloads = envoy
        .admin_get("/stats?filter=nected_key_auth.vm_reload$")
        .unwrap()
        .body_str();
    t.check(
        "no VM crash or reload",
        reloads.contains("vm_reload: 0"),
        &reloads,
    );

    let total: u64 = want.0.values().sum();
    let filter_log = envoy.wait_decisions(total as usize);
    let log = envoy.log();
    let fingerprint = fingerprint(&config);
    let summary = format!(
        "configured mode=enforce routes=6 keys=6 clients=3 revoked=1 expired=1 expiring_7d=1 config={fingerprint}"
    );
    t.check(
        "configure summary line with fingerprint",
        log.contains(&summary),
        &summary,
    );
    for key in [
        K_OLD,
        K_NEW,
        K_EXPIRED,
        K_FUTURE,
        K_CRON,
        K_LEAKED,
        "e2e_unknown_key_GGGGGGGGGGGGGGWXYZ",
        short,
        odd,
    ] {
        t.check(
            "debug log never holds a presented key",
            !log.contains(key),
            key,
        );
    }
    t.check(
        "log never holds a digest",
        !log.contains(&sha256_hex(K_CRON.as_bytes())),
        "cron digest",
    );
    let has = |needle: &str| filter_log.iter().any(|l| l.contains(needle));
    t.check(
        "unknown key masked to last 4",
        has("reason=unknown_key route=workflows key=****WXYZ"),
        "****WXYZ",
    );
    t.check(
        "short value masked as ****",
        filter_log
            .iter()
            .any(|l| l.contains("reason=unknown_key") && l.ends_with("key=****")),
        "key=****",
    );
    t.check(
        "a key that passed is named by its id",
        has("outcome=allowed reason=valid_key route=workflows key_id=cron client=cron"),
        "key_id=cron",
    );
    t.check(
        "revoked key named by id in logs",
        has("reason=revoked route=workflows key_id=leaked"),
        "revoked",
    );
    t.check(
        "expired key named in logs",
        has("reason=expired route=workflows key_id=billing-expired"),
        "expired",
    );
    t.check(
        "not-yet-valid key named in logs",
        has("reason=not_yet_valid route=workflows key_id=billing-future"),
        "not yet",
    );
    t.check("no panic in the log", !log.contains("panic"), "panic");

    let entries = envoy.wait_access_log(total as usize);
    let find = |state: &str| entries.iter().any(|e| e["nected_key_auth"] == state);
    t.check(
        "access log: outcome, route and key id of an allowed request",
        find("outcome=allowed route=workflows key_id=cron"),
        entries.len(),
    );
    t.check(
        "access log: forbidden request",
        find("outcome=denied_forbidden route=rules key_id=cron"),
        entries.len(),
    );
    t.check(
        "access log: default route, no key",
        find("outcome=denied_missing route=(default)"),
        entries.len(),
    );
    t.check(
        "access log: public route",
        find("outcome=public route=health"),
        entries.len(),
    );
    t.check(
        "access log: every request has the filter state",
        entries.iter().all(|e| {
            e["nected_key_auth"]
                .as_str()
                .is_some_and(|s| s.starts_with("outcome="))
        }),
        entries.len(),
    );
    t.finish();
}
