//! The rules that close what an attack pass found: header values trimmed on
//! every protocol, one decision table over HTTP/1.1, h2c, TLS HTTP/2 and
//! gRPC, `//`-led paths, encoded `?`/`#`, non-UTF-8 escapes, rewrite hints,
//! empty host labels, the key in the query, request trailers and the gRPC
//! statuses of refusals.

use crate::contract::{config, K_CRON, K_LEAKED, K_NEW};
use crate::h2::{H2Response, H2};
use crate::harness::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One request of a table, in protocol-neutral form.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: &'static str,
    pub method: &'static str,
    pub path: String,
    pub authority: String,
    /// Extra headers, names lower-case, values exactly as sent.
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

impl Row {
    pub fn get(name: &'static str, path: &str) -> Row {
        Row {
            name,
            method: "GET",
            path: path.into(),
            authority: "localhost".into(),
            headers: Vec::new(),
        }
    }

    pub fn method(mut self, method: &'static str) -> Row {
        self.method = method;
        self
    }

    pub fn host(mut self, host: &str) -> Row {
        self.authority = host.into();
        self
    }

    pub fn h(mut self, name: &'static str, value: impl AsRef<[u8]>) -> Row {
        self.headers.push((name, value.as_ref().to_vec()));
        self
    }

    pub fn key(self, value: impl AsRef<[u8]>) -> Row {
        self.h("nected-api-key", value)
    }

    /// As raw HTTP/1.1 (one request, `connection: close`).
    pub fn http1(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nhost: {}\r\n",
            self.method, self.path, self.authority
        )
        .into_bytes();
        for (n, v) in &self.headers {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        if self.method == "POST" {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        out.extend_from_slice(b"connection: close\r\n\r\n");
        out
    }

    /// Over an HTTP/2 connection; `grpc` adds the gRPC content type.
    pub fn http2(&self, conn: &mut H2, scheme: &str, grpc: bool) -> H2Response {
        let mut headers: Vec<(&str, &[u8])> = vec![
            (":method", self.method.as_bytes()),
            (":scheme", scheme.as_bytes()),
            (":authority", self.authority.as_bytes()),
            (":path", self.path.as_bytes()),
        ];
        if grpc {
            headers.push(("content-type", b"application/grpc"));
            headers.push(("te", b"trailers"));
        }
        for (n, v) in &self.headers {
            headers.push((n, v));
        }
        conn.request(&headers, None, &[])
    }
}

/// What a protocol-neutral comparison looks at: whether the upstream
/// answered, and what it saw of the path and of the headers the filter
/// reads or writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    Refused,
    Upstream {
        method: String,
        path: String,
        headers: Vec<(String, String)>,
    },
}

const WATCHED: [&str; 5] = [
    "nected-api-key",
    "nected_api_key",
    "x-nected-client",
    "x_nected_client",
    "origin",
];

pub fn view_of_echo(echo: Option<serde_json::Value>) -> View {
    let Some(v) = echo else {
        return View::Refused;
    };
    let mut headers: Vec<(String, String)> = v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_ascii_lowercase(),
                p[1].as_str().unwrap().to_owned(),
            )
        })
        .filter(|(n, _)| WATCHED.contains(&n.as_str()))
        .collect();
    headers.sort();
    View::Upstream {
        method: v["method"].as_str().unwrap().to_owned(),
        path: v["path"].as_str().unwrap().to_owned(),
        headers,
    }
}

fn view_of(r: &Response) -> View {
    view_of_echo(
        r.reached_upstream()
            .then(|| serde_json::from_slice(&r.body).unwrap()),
    )
}

fn counter_delta(
    after: &BTreeMap<String, u64>,
    before: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// Waits until the filter's counters stop moving after `n` more decisions
/// than `before` (the counters are read from another thread of Envoy).
fn settled(envoy: &Envoy, before: &BTreeMap<String, u64>, n: u64) -> BTreeMap<String, u64> {
    let total = |m: &BTreeMap<String, u64>| -> u64 {
        m.iter()
            .filter(|(k, _)| !k.contains('.'))
            .map(|(_, v)| *v)
            .sum()
    };
    let want = total(before) + n;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = envoy.counters();
        if total(&now) >= want || std::time::Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn preflight_config() -> String {
    config().replace(
        r#""allow_cors_preflight": false"#,
        r#""allow_cors_preflight": true"#,
    )
}

// ------------------------------------------------------------ trimming

/// Envoy trims spaces and tabs around HTTP/1.1 header values but passes
/// HTTP/2 values as sent; the filter trims them itself, so both protocols
/// get the same answer and the same counters.
#[test]
fn header_values_are_trimmed_alike_over_http1_and_http2() {
    let envoy = Envoy::start("trim", Setup::new(preflight_config()));
    let wf = "/api/v1/workflows/x";
    let rows: Vec<(Row, u16)> = vec![
        (Row::get("key ` K `", wf).key(format!(" {K_CRON} ")), 200),
        (
            Row::get("key `\\tK\\t`", wf).key(format!("\t{K_CRON}\t")),
            200,
        ),
        (Row::get("key ` \\tK`", wf).key(format!(" \t{K_CRON}")), 200),
        (Row::get("key of one space", wf).key(" "), 401),
        (Row::get("key of a tab", wf).key("\t"), 401),
        (
            Row::get("revoked key padded", wf).key(format!(" {K_LEAKED} ")),
            401,
        ),
        (
            Row::get("preflight of blank values", wf)
                .method("OPTIONS")
                .h("origin", " ")
                .h("access-control-request-method", " "),
            401,
        ),
        (
            Row::get("preflight with padded values", wf)
                .method("OPTIONS")
                .h("origin", " https://app.example.com\t")
                .h("access-control-request-method", "\tPOST "),
            200,
        ),
    ];
    let mut t = Cases::default();
    let mut deltas = Vec::new();
    for protocol in ["HTTP/1.1", "HTTP/2"] {
        let before = envoy.counters();
        for (row, status) in &rows {
            let (got, view) = if protocol == "HTTP/1.1" {
                let r = envoy.raw(&row.http1());
                (r.status, view_of(&r))
            } else {
                let mut conn = H2::connect(envoy.port());
                let r = row.http2(&mut conn, "http", false);
                (r.status, view_of_echo(r.echo()))
            };
            t.check(
                &format!("{protocol}: {}", row.name),
                got == *status,
                format_args!("want {status}, got {got}"),
            );
            if let View::Upstream { headers, .. } = &view {
                t.check(
                    &format!("{protocol}: {}: no key upstream", row.name),
                    !headers.iter().any(|(n, _)| n.contains("api")),
                    headers,
                );
            }
        }
        let after = settled(&envoy, &before, rows.len() as u64);
        deltas.push(counter_delta(&after, &before));
    }
    t.check(
        "the same counters over HTTP/1.1 and HTTP/2",
        deltas[0] == deltas[1],
        &deltas,
    );
    t.check(
        "a key of one space counts denied_missing, not denied_invalid",
        deltas[1].get("denied_missing") == Some(&3),
        &deltas[1],
    );
    t.finish();
}

// ------------------------------------------------------- one decision table

/// One table of requests over HTTP/1.1, h2c, TLS HTTP/2 and gRPC (h2c):
/// identical outcome counters and identical upstream views.
#[test]
fn the_same_decision_on_every_protocol() {
    let envoy = Envoy::start("protocols", Setup::new(config()).with_tls());
    let wf = "/api/v1/workflows/x";
    let rows = vec![
        Row::get("public route", "/healthz"),
        Row::get("private, no key", wf),
        Row::get("valid key", wf).key(K_CRON),
        Row::get("valid key, spaces around", wf).key(format!(" {K_CRON} ")),
        Row::get("valid key, tabs around", wf).key(format!("\t{K_CRON}\t")),
        Row::get("key of one space", wf).key(" "),
        Row::get("key repeated", wf).key(K_CRON).key(K_CRON),
        Row::get("key in other case", wf).key(K_CRON.to_uppercase()),
        Row::get("key with a comma", wf).key(format!("{K_CRON},{K_CRON}")),
        Row::get("revoked key", wf).key(K_LEAKED),
        Row::get("key of another client", "/api/v1/rules/eval")
            .method("POST")
            .key(K_CRON),
        Row::get("allowed client", "/api/v1/rules/eval")
            .method("POST")
            .key(K_NEW),
        Row::get("forged client header", wf)
            .key(K_CRON)
            .h("x-nected-client", "billing")
            .h("x_nected_client", "billing"),
        Row::get("host in upper case", "/docs/a").host("API.EXAMPLE.COM"),
        Row::get("host with a trailing dot and port", "/docs/a").host("api.example.com.:80"),
        Row::get("host with an empty label", "/docs/a").host("api..example.com"),
        Row::get("host with two trailing dots", "/docs/a").host("api.example.com.."),
        Row::get("path led by //", "//docs/a"),
        Row::get("path with %2e%2e", "/docs/%2e%2e/api/v1/workflows"),
        Row::get("path with encoded ?", "/healthz%3F"),
        Row::get("path with encoded #", "/healthz%23"),
        Row::get("path with overlong UTF-8", "/healthz%C0%AF"),
        Row::get("path with UTF-8", "/caf%C3%A9").key(K_CRON),
        Row::get("path in other case", "/HEALTHZ"),
        Row::get(
            "key in the query only",
            "/api/v1/workflows?nected-api-key=x",
        ),
        Row::get(
            "key in the query and header",
            "/api/v1/workflows?a=1&nected-api-key=x&b",
        )
        .key(K_CRON),
        Row::get("method override", "/healthz").h("x-http-method-override", "DELETE"),
        Row::get("rewrite hint", "/healthz").h("x-original-url", "/api/v1/workflows"),
        Row::get("rewrite hint, other spelling", "/healthz").h("x_rewrite_url", "/x"),
        Row::get("DELETE, private", wf).method("DELETE").key(K_CRON),
    ];
    let mut t = Cases::default();
    let mut results: Vec<(&str, BTreeMap<String, u64>, Vec<View>)> = Vec::new();
    for protocol in ["HTTP/1.1", "h2c", "TLS HTTP/2", "gRPC"] {
        let before = envoy.counters();
        let mut views = Vec::new();
        for row in &rows {
            let view = match protocol {
                "HTTP/1.1" => view_of(&envoy.raw(&row.http1())),
                "h2c" => view_of_echo(
                    row.http2(&mut H2::connect(envoy.port()), "http", false)
                        .echo(),
                ),
                "TLS HTTP/2" => {
                    let mut conn = H2::connect_tls(envoy.tls_port());
                    view_of_echo(row.http2(&mut conn, "https", false).echo())
                }
                _ => {
                    let r = row.http2(&mut H2::connect(envoy.port()), "http", true);
                    // A refusal is the gRPC form: HTTP 200, no upstream.
                    t.check(
                        &format!("gRPC: {}: HTTP 200", row.name),
                        r.status == 200,
                        r.status,
                    );
                    view_of_echo(r.echo())
                }
            };
            views.push(view);
        }
        let after = settled(&envoy, &before, rows.len() as u64);
        results.push((protocol, counter_delta(&after, &before), views));
    }
    let (_, counters, views) = &results[0];
    for (protocol, c, v) in &results[1..] {
        t.check(
            &format!("{protocol}: the counters of HTTP/1.1"),
            c == counters,
            format_args!("{c:?} vs {counters:?}"),
        );
        for ((row, got), want) in rows.iter().zip(v).zip(views) {
            t.check(
                &format!("{protocol}: {}: the upstream view of HTTP/1.1", row.name),
                got == want,
                format_args!("{got:?} vs {want:?}"),
            );
        }
    }
    // What the table shows (once, over HTTP/1.1).
    let expect_refused = [
        "private, no key",
        "key of one space",
        "key repeated",
        "key in other case",
        "key with a comma",
        "revoked key",
        "key of another client",
        "host with an empty label",
        "host with two trailing dots",
        "path led by //",
        "path with %2e%2e",
        "path with encoded ?",
        "path with encoded #",
        "path with overlong UTF-8",
        "path in other case",
        "key in the query only",
        "method override",
        "rewrite hint",
        "rewrite hint, other spelling",
    ];
    for (row, view) in rows.iter().zip(views) {
        let refused = *view == View::Refused;
        t.check(
            &format!("HTTP/1.1: {} is refused: {}", row.name, !refused),
            refused == expect_refused.contains(&row.name),
            view,
        );
    }
    let by_name = |name: &str| &views[rows.iter().position(|r| r.name == name).unwrap()];
    t.check(
        "the key in the query is removed, the other parameters kept in order",
        matches!(by_name("key in the query and header"),
            View::Upstream { path, .. } if path == "/api/v1/workflows?a=1&b"),
        by_name("key in the query and header"),
    );
    t.check(
        "a forged client header is replaced by the real client",
        matches!(by_name("forged client header"),
            View::Upstream { headers, .. } if *headers == [("x-nected-client".to_owned(), "cron".to_owned())]),
        by_name("forged client header"),
    );
    t.check(
        "valid encoded UTF-8 keeps working",
        matches!(by_name("path with UTF-8"),
            View::Upstream { path, .. } if path == "/caf%C3%A9"),
        by_name("path with UTF-8"),
    );
    eprintln!(
        "counters per protocol (each): {:?}",
        results.first().map(|r| &r.1)
    );
    t.finish();
}

// ------------------------------------------------- paths, hints, hosts

/// Each is refused with 400 over HTTP/1.1 and HTTP/2, with Envoy's default
/// HCM options and with the shipped ones, and never reaches the upstream:
/// by the filter (counted `denied_bad_request`), or by Envoy before it
/// (listed in the test's output: which rules Envoy already enforces).
#[test]
fn ambiguous_paths_hints_and_hosts_get_400() {
    let get = Row::get;
    let cases: Vec<Row> = vec![
        get("`//`-led path", "//secure.example.com/tenant/x"),
        get("`//`-led path to a public route", "//healthz"),
        get("encoded `?`", "/healthz%3F"),
        get("encoded `?`, lower case", "/healthz%3f"),
        get("encoded `#`", "/healthz%23"),
        get("encoded `?` in ;params", "/healthz;a=%3F"),
        get("overlong `%C0%AE%C0%AE`", "/%C0%AE%C0%AE/healthz"),
        get("`/admin%C0%AF`", "/admin%C0%AF"),
        get("lone continuation byte", "/healthz%A9"),
        get("truncated sequence", "/healthz%E2%82"),
        get("surrogate", "/healthz%ED%A0%80"),
        get("x-original-url", "/healthz").h("x-original-url", "/api/v1/workflows"),
        get("x-rewrite-url", "/healthz").h("x-rewrite-url", "/api/v1/workflows"),
        get("x_original_url", "/healthz").h("x_original_url", "/api/v1/workflows"),
        get("x_rewrite_url", "/healthz").h("x_rewrite_url", "/api/v1/workflows"),
        get("a rewrite hint with a valid key", "/api/v1/workflows")
            .key(K_CRON)
            .h("x-original-url", "/x"),
        get("host `a..example.com`", "/healthz").host("a..example.com"),
        get("host `host..`", "/healthz").host("host.."),
        get("host `secure.example.com..`", "/docs").host("secure.example.com.."),
        get("host `.example.com`", "/healthz").host(".example.com"),
    ];
    let mut t = Cases::default();
    let mut by_envoy = Vec::new();
    for shipped in [false, true] {
        let setup = Setup::new(config());
        let (label, setup) = if shipped {
            ("shipped HCM options", setup.shipped_hcm_options())
        } else {
            ("default HCM options", setup)
        };
        let envoy = Envoy::start("ambiguous", setup);
        for row in &cases {
            for protocol in ["HTTP/1.1", "HTTP/2"] {
                let name = format!("{label}, {protocol}: {}", row.name);
                let before = envoy.stat("wasmcustom.nected_key_auth.denied_bad_request");
                let (status, reached, body) = if protocol == "HTTP/1.1" {
                    let r = envoy.raw(&row.http1());
                    (r.status, r.reached_upstream(), r.body_str())
                } else {
                    let r = row.http2(&mut H2::connect(envoy.port()), "http", false);
                    let body = String::from_utf8_lossy(&r.body).into_owned();
                    let status = if r.reset { 400 } else { r.status };
                    (status, r.reached_upstream(), body)
                };
                // `merge_slashes` (shipped) merges a `//`-led path before
                // the filter, and the upstream gets the merged path too:
                // both judge the same path, nothing is ambiguous.
                let merged = shipped && row.path.starts_with("//");
                if merged {
                    t.check(
                        &name,
                        status == 400 || !body.contains("\"path\": \"//"),
                        format_args!("{status} {body}"),
                    );
                    continue;
                }
                t.check(
                    &name,
                    status == 400 && !reached,
                    format_args!("{status} {body}"),
                );
                if body.contains("ambiguous request") {
                    t.check(
                        &format!("{name}: counted denied_bad_request"),
                        envoy
                            .wait_stat("wasmcustom.nected_key_auth.denied_bad_request", before + 1),
                        before,
                    );
                } else {
                    by_envoy.push(format!("{name}: {status} {body:?}"));
                }
            }
        }
        // Valid encoded UTF-8 keeps working.
        for path in ["/caf%C3%A9", "/caf%c3%a9/x", "/%E2%82%AC", "/%F0%9F%98%80"] {
            let r = envoy.send(Req::get(path).key(K_CRON));
            if let Some(e) = t.passed(&format!("{label}: {path} passes"), &r) {
                t.check(
                    &format!("{label}: {path}: path as sent"),
                    e.path == path || shipped,
                    &e.path,
                );
            }
        }
    }
    eprintln!(
        "refused by Envoy before the filter:\n  {}",
        by_envoy.join("\n  ")
    );
    t.finish();
}

// ------------------------------------------------------- key in the URL

#[test]
fn a_query_parameter_named_like_the_key_header_is_removed() {
    let envoy = Envoy::start("query", Setup::new(config()));
    let mut t = Cases::default();
    let cases: Vec<(&str, Req, u16, &str)> = vec![
        (
            "private route, key in header and query",
            Req::get("/api/v1/workflows/x?a=1&nected-api-key=LEAK1&NECTED-API-KEY=LEAK2&b=2")
                .key(K_CRON),
            200,
            "/api/v1/workflows/x?a=1&b=2",
        ),
        (
            "public route",
            Req::get("/healthz?Nected-Api-Key=LEAK3"),
            200,
            "/healthz",
        ),
        (
            "percent-encoded name",
            Req::get("/healthz?z=9&nected%2Dapi%2Dkey=LEAK4"),
            200,
            "/healthz?z=9",
        ),
        (
            "other parameters untouched, in order",
            Req::get("/healthz?b=2&a=1&nected-api-keys=3&x=nected-api-key"),
            200,
            "/healthz?b=2&a=1&nected-api-keys=3&x=nected-api-key",
        ),
        (
            "a key is never accepted from the query",
            Req::get(format!("/api/v1/workflows?nected-api-key={K_CRON}")),
            401,
            "/api/v1/workflows",
        ),
        (
            "refused for another reason",
            Req::get("/healthz%3F?nected-api-key=LEAK5"),
            400,
            "/healthz%3F",
        ),
    ];
    for (name, req, status, path) in &cases {
        let r = envoy.send(req.clone());
        if *status == 200 {
            if let Some(e) = t.passed(name, &r) {
                t.check(&format!("{name}: upstream path"), e.path == *path, &e.path);
            }
        } else {
            t.status(name, &r, *status);
        }
    }
    let log = envoy.wait_access_log(cases.len());
    for ((name, _, _, path), entry) in cases.iter().zip(&log) {
        t.check(
            &format!("{name}: access log path"),
            entry["path"] == *path,
            &entry["path"],
        );
    }
    let text = std::fs::read_to_string(envoy.dir.join("access.log")).unwrap();
    t.check(
        "no key in the access log",
        !text.contains("LEAK") && !text.contains(K_CRON),
        &text,
    );
    t.finish();

    // Without strip_key the query is left alone (and still never read).
    let envoy = Envoy::start(
        "query-kept",
        Setup::new(config().replace(r#""strip_key": true"#, r#""strip_key": false"#)),
    );
    let mut t = Cases::default();
    let r = envoy.send(Req::get("/healthz?nected-api-key=K&a=1"));
    if let Some(e) = t.passed("strip_key false: public", &r) {
        t.check(
            "query kept",
            e.path == "/healthz?nected-api-key=K&a=1",
            &e.path,
        );
    }
    let r = envoy.send(Req::get(format!(
        "/api/v1/workflows?nected-api-key={K_CRON}"
    )));
    t.status("strip_key false: key in the query only", &r, 401);
    t.finish();
}

// ------------------------------------------------------------- trailers

/// An HTTP/2 request's trailers reach an HTTP/2 upstream; the inner
/// listener (Lua) answers with the trailers and headers it received.
const TRAILERS_BOOTSTRAP: &str = r#"node: { id: e2e, cluster: e2e }
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
static_resources:
  listeners:
  - name: plain
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: plain
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: inner }
          http_filters:
{{FILTERS}}
  - name: inner
    address: { socket_address: { address: 127.0.0.1, port_value: {{INNER}} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inner
          codec_type: HTTP2
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 500 }
          http_filters:
          - name: envoy.filters.http.lua
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
              default_source_code:
                inline_string: |
                  function envoy_on_request(h)
                    h:body()
                    local out = {}
                    local t = h:trailers()
                    if t ~= nil then
                      for k, v in pairs(t) do table.insert(out, "trailer " .. k .. "=" .. v) end
                    end
                    for k, v in pairs(h:headers()) do table.insert(out, "header " .. k .. "=" .. v) end
                    h:respond({[":status"] = "200"}, table.concat(out, "\n"))
                  end
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: inner
    connect_timeout: 2s
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    load_assignment:
      cluster_name: inner
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: { socket_address: { address: 127.0.0.1, port_value: {{INNER}} } }
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn key_and_client_headers_are_removed_from_request_trailers() {
    let bootstrap = TRAILERS_BOOTSTRAP
        .replace("{{INNER}}", &free_port().to_string())
        .replace(
            "{{FILTERS}}",
            http_filters(10, "FAIL_RELOAD", "{{WASM}}", &config()).trim_end(),
        );
    let mut setup = Setup::new(config());
    setup.bootstrap = Some(bootstrap);
    let envoy = Envoy::start("trailers", setup);
    let mut conn = H2::connect(envoy.port());
    let headers: Vec<(&str, &[u8])> = vec![
        (":method", b"POST"),
        (":scheme", b"http"),
        (":authority", b"localhost"),
        (":path", b"/api/v1/workflows/x"),
        ("nected-api-key", K_CRON.as_bytes()),
    ];
    let trailers: Vec<(&str, &[u8])> = vec![
        ("x-nected-client", b"billing"),
        ("x_nected_client", b"billing"),
        ("nected-api-key", K_LEAKED.as_bytes()),
        ("nected_api_key", K_LEAKED.as_bytes()),
        ("x-checksum", b"abc"),
    ];
    let r = conn.request(&headers, Some(b"payload"), &trailers);
    let body = String::from_utf8_lossy(&r.body).into_owned();
    let mut t = Cases::default();
    t.check("the upstream answered", r.status == 200, &r);
    let mut seen_trailers: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("trailer "))
        .collect();
    seen_trailers.sort();
    t.check(
        "only the other trailer reaches the upstream",
        seen_trailers == ["x-checksum=abc"],
        &body,
    );
    t.check(
        "the real client header is there, once",
        body.lines()
            .filter(|l| l.starts_with("header x-nected-client="))
            .collect::<Vec<_>>()
            == ["header x-nected-client=cron"],
        &body,
    );
    t.finish();
}

// ------------------------------------------------------------------ gRPC

#[test]
fn refused_grpc_requests_get_the_grpc_status_of_their_reply() {
    let config = config().replace(r#""require_tls": false"#, r#""require_tls": true"#);
    let envoy = Envoy::start("grpc-status", Setup::new(config).with_tls());
    let grpc = |url: String, extra: &[&str]| grpc_curl(&url, extra);
    let plain = |p: &str| format!("http://127.0.0.1:{}{p}", envoy.port());
    let tls = |p: &str| format!("https://localhost:{}{p}", envoy.tls_port());
    let key = format!("nected-api-key: {K_CRON}");
    let rows: Vec<(&str, Response, &str)> = vec![
        ("400 → 3", grpc(plain("/healthz%3F"), &[]), "3"),
        (
            "400 (rewrite hint) → 3",
            grpc(plain("/healthz"), &["-H", "x-original-url: /x"]),
            "3",
        ),
        ("401 → 16", grpc(tls("/api/v1/workflows"), &[]), "16"),
        (
            "403 → 7",
            grpc(tls("/api/v1/rules/Eval"), &["-H", &key]),
            "7",
        ),
        (
            "403 https required → 7",
            grpc(plain("/api/v1/workflows"), &[]),
            "7",
        ),
    ];
    let mut t = Cases::default();
    for (name, r, status) in &rows {
        t.check(
            name,
            r.status == 200
                && r.header("grpc-status").as_deref() == Some(*status)
                && !r.reached_upstream(),
            format_args!("{} grpc-status {:?}", r.status, r.header("grpc-status")),
        );
    }
    let log = envoy.filter_log();
    t.check(
        "the configure line names the version",
        log.iter()
            .any(|l| l.contains(&format!(" version={} in ", env!("CARGO_PKG_VERSION")))),
        &log,
    );
    t.finish();
}

// ---------------------------------------------- HTTP/1.1 keep-alive client

/// An HTTP/1.1 connection kept open between requests.
pub struct KeepAlive(TcpStream);

impl KeepAlive {
    pub fn connect(port: u16) -> KeepAlive {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        KeepAlive(s)
    }

    /// GET `path` with a key; the status, or 0 if the connection is gone.
    pub fn get(&mut self, path: &str, key: &str) -> u16 {
        let req =
            format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nnected-api-key: {key}\r\n\r\n");
        if self.0.write_all(req.as_bytes()).is_err() {
            return 0;
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return head
                        .split(' ')
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                }
            }
            match self.0.read(&mut chunk) {
                Ok(0) | Err(_) => return 0,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}
