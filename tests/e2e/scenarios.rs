//! Contract scenarios as tables shared by the hosts: each row is one raw
//! HTTP/1.1 request and what the contract says must happen; Envoy runs
//! every table here, nginx + ngx_wasm_module in nginx.rs. Where a host
//! cannot express a row, or does something else for a reason outside the
//! filter, the row says so and why: nothing is skipped silently.

use crate::harness::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    Envoy,
    Nginx,
}

pub const BODY_401: &str = r#"{"error":"unauthorized","message":"unauthorized access"}"#;
pub const BODY_403: &str =
    r#"{"error":"forbidden","message":"api key not allowed for this route"}"#;
pub const BODY_400: &str = r#"{"error":"bad_request","message":"ambiguous request"}"#;

#[derive(Debug, Clone)]
pub enum Want {
    /// The filter's local reply: this status, the contract's body and
    /// headers, and the request never reached the upstream.
    Reply(u16),
    /// A reply of the host itself (not the filter's), before the filter:
    /// this status, and not upstream.
    HostReply(u16),
    /// The request reached the upstream, which saw this.
    Upstream(Seen),
    /// Sent as gRPC over h2c (curl), not as `req`: the gRPC form of the
    /// reply, HTTP 200 with this `grpc-status`, and not upstream.
    Grpc {
        status: &'static str,
        path: &'static str,
        key: Option<&'static str>,
    },
}

/// What the upstream must (not) have received.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// `x-nected-client` values the upstream received.
    pub client: Vec<&'static str>,
    /// Header names that must not reach the upstream.
    pub absent: Vec<&'static str>,
    /// The request target the upstream received.
    pub path: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub req: Req,
    pub want: Want,
    /// Per host: what it does instead (`None`: it cannot express the row)
    /// and why.
    pub except: Vec<(Host, Option<Want>, &'static str)>,
}

impl Scenario {
    pub fn reply(name: impl Into<String>, req: Req, status: u16) -> Scenario {
        Scenario {
            name: name.into(),
            req,
            want: Want::Reply(status),
            except: Vec::new(),
        }
    }

    /// Passes; neither the key header nor a client header (any spelling)
    /// reaches the upstream unless `client` says which client was set.
    pub fn pass(name: impl Into<String>, req: Req) -> Scenario {
        Scenario {
            name: name.into(),
            req,
            want: Want::Upstream(Seen {
                client: Vec::new(),
                absent: vec!["nected-api-key", "nected_api_key", "x_nected_client"],
                path: None,
            }),
            except: Vec::new(),
        }
    }

    fn seen(mut self, f: impl FnOnce(&mut Seen)) -> Scenario {
        if let Want::Upstream(s) = &mut self.want {
            f(s);
        }
        self
    }

    pub fn client(self, client: &'static str) -> Scenario {
        self.seen(|s| s.client = vec![client])
    }

    pub fn path(self, path: impl Into<String>) -> Scenario {
        let path = path.into();
        self.seen(|s| s.path = Some(path))
    }

    pub fn on(mut self, host: Host, want: Option<Want>, why: &'static str) -> Scenario {
        self.except.push((host, want, why));
        self
    }

    /// What `host` must do, or why it cannot express this row.
    pub fn want_on(&self, host: Host) -> Result<&Want, &'static str> {
        match self.except.iter().find(|(h, _, _)| *h == host) {
            Some((_, Some(w), _)) => Ok(w),
            Some((_, None, why)) => Err(why),
            None => Ok(&self.want),
        }
    }
}

/// The outcome counter a row adds to on this host (`None`: not counted by
/// the filter, or not expressible).
pub fn outcome(s: &Scenario, host: Host) -> Option<&'static str> {
    match s.want_on(host).ok()? {
        Want::Reply(401) => Some(if s.name.contains("[missing]") {
            "denied_missing"
        } else {
            "denied_invalid"
        }),
        Want::Reply(403) => Some("denied_forbidden"),
        Want::Reply(400) => Some("denied_bad_request"),
        Want::Reply(_) | Want::HostReply(_) => None,
        Want::Grpc { status, .. } => match *status {
            "16" => Some("denied_missing"),
            "7" => Some("denied_forbidden"),
            _ => None,
        },
        Want::Upstream(_) => None,
    }
}

/// Runs a table against a host; `send` delivers a raw request. Returns the
/// rows the host cannot express, with the reason.
pub fn run(
    host: Host,
    table: &[Scenario],
    port: u16,
    send: &dyn Fn(&Req) -> Response,
    t: &mut Cases,
) -> Vec<String> {
    let mut not_expressed = Vec::new();
    for s in table {
        let want = match s.want_on(host) {
            Ok(w) => w,
            Err(why) => {
                not_expressed.push(format!("{}: {why}", s.name));
                continue;
            }
        };
        let name = format!("{host:?}: {}", s.name);
        if let Want::Grpc { status, path, key } = want {
            let header = key.map(|k| format!("nected-api-key: {k}"));
            let extra: Vec<&str> = header.iter().flat_map(|h| ["-H", h.as_str()]).collect();
            let r = grpc_curl(&format!("http://127.0.0.1:{port}{path}"), &extra);
            t.check(
                &name,
                r.status == 200
                    && r.header("grpc-status").as_deref() == Some(status)
                    && !r.reached_upstream(),
                &r,
            );
            continue;
        }
        let r = send(&s.req);
        match want {
            Want::Reply(status) => {
                t.status(&name, &r, *status);
                let body = match status {
                    401 => BODY_401,
                    403 => BODY_403,
                    400 => BODY_400,
                    _ => "",
                };
                // ngx_wasm_module appends a line feed to local reply bodies.
                let got = r.body_str();
                let got = match host {
                    Host::Nginx => got.strip_suffix('\n').unwrap_or(&got).to_owned(),
                    Host::Envoy => got,
                };
                t.check(&format!("{name}: body byte for byte"), got == body, &got);
                t.check(
                    &format!("{name}: content-type"),
                    r.header("content-type").as_deref() == Some("application/json"),
                    r.header("content-type"),
                );
                let www = r.header("www-authenticate");
                t.check(
                    &format!("{name}: www-authenticate only on 401"),
                    if *status == 401 {
                        www.as_deref() == Some(r#"ApiKey header="nected-api-key""#)
                    } else {
                        www.is_none()
                    },
                    www,
                );
            }
            Want::HostReply(status) => {
                t.check(
                    &name,
                    r.status == *status
                        && !r.reached_upstream()
                        && r.header("content-type").as_deref() != Some("application/json"),
                    format_args!(
                        "want {status} from the host, got {} {}",
                        r.status,
                        r.body_str()
                    ),
                );
            }
            Want::Grpc { .. } => {}
            Want::Upstream(seen) => {
                if let Some(e) = t.passed(&name, &r) {
                    for h in &seen.absent {
                        if seen.client.is_empty() || *h != "x-nected-client" {
                            t.check(&format!("{name}: no {h} upstream"), !e.has(h), &e.headers);
                        }
                    }
                    t.check(
                        &format!("{name}: x-nected-client upstream"),
                        e.all("x-nected-client") == seen.client,
                        e.all("x-nected-client"),
                    );
                    if let Some(p) = &seen.path {
                        t.check(&format!("{name}: upstream path"), e.path == *p, &e.path);
                    }
                }
            }
        }
    }
    not_expressed
}

// ------------------------------------------------------------------ tables

use crate::contract::{K_CRON, K_EXPIRED, K_FUTURE, K_LEAKED, K_NEW, K_OLD};

const NO_GRPC: &str = "ngx_wasm_module ignores the grpc_status of a local reply (read from source) and the shipped nginx.conf serves HTTP/1.1 only: a gRPC client gets the plain HTTP reply";

/// Rows against `contract::config()`: routing, methods, hosts, every key
/// state, rotation, duplicates, strip_key, forward_client and spoofing,
/// non-UTF-8 values, method overrides and rewrite hints.
pub fn contract_rows() -> Vec<Scenario> {
    use Scenario as S;
    let get = |p: &str| Req::get(p);
    let wf = || get("/api/v1/workflows/x");
    let nginx_400 = Some(Want::HostReply(400));
    let mut rows = vec![
        // -- routes: public, private, default
        S::pass("public exact path passes without a key", get("/healthz")),
        S::pass("the query is not part of the path", get("/healthz?probe=1")),
        S::reply(
            "[missing] an exact path does not match a trailing slash",
            get("/healthz/"),
            401,
        ),
        S::pass(
            "a public route with a key: key stripped",
            get("/healthz").key(K_CRON),
        ),
        S::reply(
            "[missing] private route without a key",
            get("/api/v1/workflows/run"),
            401,
        ),
        S::pass(
            "private route with a valid key: key stripped, client set",
            get("/api/v1/workflows/run").key(K_CRON),
        )
        .client("cron")
        .path("/api/v1/workflows/run"),
        S::reply(
            "[missing] no route: default_auth private",
            get("/somewhere/else"),
            401,
        ),
        S::pass("no route, valid key", get("/somewhere/else").key(K_CRON)).client("cron"),
        // -- prefixes, methods, allow_clients
        S::reply(
            "a prefix matches itself (client not allowed: 403)",
            Req::post("/api/v1/rules").key(K_CRON),
            403,
        ),
        S::reply(
            "a prefix matches below itself",
            Req::post("/api/v1/rules/eval").key(K_CRON),
            403,
        ),
        S::pass(
            "a prefix never matches /api/v1/rulesx",
            Req::post("/api/v1/rulesx").key(K_CRON),
        )
        .client("cron"),
        S::pass(
            "methods: GET does not match a POST route",
            get("/api/v1/rules/eval").key(K_CRON),
        )
        .client("cron"),
        S::pass(
            "allow_clients: a billing key on the rules route",
            Req::post("/api/v1/rules/eval").key(K_NEW),
        )
        .client("billing"),
        S::reply(
            "[missing] POST does not match a GET route",
            Req::post("/reports/daily"),
            401,
        ),
        // -- hosts
        S::pass("host matches", get("/docs/intro").host("api.example.com")),
        S::pass(
            "host in another case, with a port",
            get("/docs/intro").host("API.Example.COM:8443"),
        ),
        S::pass(
            "host with a trailing dot",
            get("/docs/intro").host("api.example.com."),
        ),
        S::reply(
            "[missing] another host: the docs route does not match",
            get("/docs/intro").host("other.example.org"),
            401,
        ),
        S::pass(
            "a wildcard matches labels before the suffix",
            get("/wild/x").host("a.b.example.com"),
        ),
        S::reply(
            "[missing] a wildcard never matches the bare domain",
            get("/wild/x").host("example.com"),
            401,
        ),
        S::reply("a host holding @", get("/healthz").host("a@b"), 400),
        S::reply(
            "a host with an empty label",
            get("/healthz").host("a..example.com"),
            400,
        )
        .on(
            Host::Nginx,
            nginx_400.clone(),
            "nginx refuses an invalid Host (400) before any filter",
        ),
        S::reply("a host `host..`", get("/healthz").host("host.."), 400).on(
            Host::Nginx,
            nginx_400.clone(),
            "nginx refuses an invalid Host (400) before any filter",
        ),
        // -- keys
        S::reply(
            "[missing] an empty key value",
            wf().header("nected-api-key", ""),
            401,
        ),
        S::reply(
            "an unknown key",
            wf().key("e2e_unknown_key_GGGGGGGGGGGGGGWXYZ"),
            401,
        ),
        S::reply("a revoked key", wf().key(K_LEAKED), 401),
        S::reply("an expired key", wf().key(K_EXPIRED), 401),
        S::reply("a not-yet-valid key", wf().key(K_FUTURE), 401),
        S::pass("rotation: the old key in the overlap", wf().key(K_OLD)).client("billing"),
        S::pass("rotation: the new key in the overlap", wf().key(K_NEW)).client("billing"),
        S::reply(
            "the key header on two lines",
            wf().key(K_CRON).key(K_CRON),
            401,
        ),
        S::reply(
            "comma-joined key values",
            wf().key(&format!("{K_CRON}, {K_CRON}")),
            401,
        ),
        S::reply(
            "a key value over 512 bytes",
            wf().key(&"A".repeat(513)),
            401,
        ),
        S::pass(
            "the header name in upper case",
            wf().header("NECTED-API-KEY", K_CRON),
        )
        .client("cron"),
        S::reply(
            "a non-UTF-8 key value",
            wf().header("nected-api-key", b"\xff\xfe\x80abc"),
            401,
        ),
        S::pass(
            "a non-UTF-8 value in another header",
            wf().key(K_CRON).header("x-binary", b"\xff\xfe\x80"),
        )
        .client("cron"),
        S::reply("a short odd value", wf().key("short"), 401),
        // -- spoofed client headers, `_` spellings
        S::pass(
            "spoofed x-nected-client on a public route is removed",
            get("/healthz").header("x-nected-client", "admin"),
        ),
        S::pass(
            "spoofed x-nected-client on a private route is replaced",
            wf().key(K_CRON).header("x-nected-client", "admin"),
        )
        .client("cron"),
        S::pass(
            "spoofed x_nected_client on a public route is removed",
            get("/healthz").header("x_nected_client", "admin"),
        ),
        S::pass(
            "spoofed x_nected_client on a private route is removed",
            wf().key(K_CRON).header("x_nected_client", "admin"),
        )
        .client("cron"),
        S::pass(
            "the key header spelled with _ is stripped",
            get("/healthz").header("nected_api_key", K_CRON),
        ),
        // -- CORS preflight (off)
        S::reply(
            "[missing] a CORS preflight needs a key when allow_cors_preflight is off",
            Req::new("OPTIONS", "/api/v1/workflows/x")
                .header("origin", "https://app.example.com")
                .header("access-control-request-method", "POST"),
            401,
        ),
        // -- gRPC form of the replies
        S {
            name: "gRPC without a key: HTTP 200, grpc-status 16".into(),
            req: Req::post("/api/v1/rules/Eval"),
            want: Want::Grpc {
                status: "16",
                path: "/api/v1/rules/Eval",
                key: None,
            },
            except: Vec::new(),
        }
        .on(Host::Nginx, None, NO_GRPC),
        S {
            name: "gRPC with a key of another client: grpc-status 7".into(),
            req: Req::post("/api/v1/rules/Eval"),
            want: Want::Grpc {
                status: "7",
                path: "/api/v1/rules/Eval",
                key: Some(K_CRON),
            },
            except: Vec::new(),
        }
        .on(Host::Nginx, None, NO_GRPC),
        // -- method overrides, rewrite hints
        S::reply(
            "x-http-method-override on a public route",
            get("/healthz").header("x-http-method-override", "DELETE"),
            400,
        ),
        S::reply(
            "x-http-method",
            get("/healthz").header("x-http-method", "DELETE"),
            400,
        ),
        S::reply(
            "x-method-override",
            get("/healthz").header("x-method-override", "DELETE"),
            400,
        ),
        S::reply(
            "x_http_method_override",
            get("/healthz").header("x_http_method_override", "DELETE"),
            400,
        ),
        S::reply(
            "x-original-url",
            get("/healthz").header("x-original-url", "/api/v1/workflows"),
            400,
        ),
        S::reply(
            "x-rewrite-url",
            get("/healthz").header("x-rewrite-url", "/api/v1/workflows"),
            400,
        ),
        S::reply(
            "x_original_url",
            get("/healthz").header("x_original_url", "/api/v1/workflows"),
            400,
        ),
        S::reply(
            "a rewrite hint with a valid key",
            wf().key(K_CRON).header("x-original-url", "/x"),
            400,
        ),
        // -- the key in the query (strip_key)
        S::pass(
            "a query parameter named like the key header is removed",
            get("/api/v1/workflows/x?a=1&nected-api-key=LEAK1&NECTED-API-KEY=LEAK2&b=2")
                .key(K_CRON),
        )
        .client("cron")
        .path("/api/v1/workflows/x?a=1&b=2"),
        S::pass(
            "the key query parameter on a public route",
            get("/healthz?Nected-Api-Key=LEAK3"),
        )
        .path("/healthz"),
        S::pass(
            "other query parameters untouched, in order",
            get("/healthz?b=2&a=1&nected-api-keys=3&x=nected-api-key"),
        )
        .path("/healthz?b=2&a=1&nected-api-keys=3&x=nected-api-key"),
        S::reply(
            "[missing] a key is never accepted from the query",
            get(&format!("/api/v1/workflows?nected-api-key={K_CRON}")),
            401,
        ),
        // -- ambiguous paths (hardening)
        S::reply("a `//`-led path", get("//healthz"), 400),
        S::reply("encoded `?`", get("/healthz%3F"), 400),
        S::reply("encoded `#`", get("/healthz%23"), 400),
        S::reply("overlong `%C0%AE%C0%AE`", get("/%C0%AE%C0%AE/healthz"), 400),
        S::reply("a lone continuation byte", get("/healthz%A9"), 400),
        S::pass("valid encoded UTF-8 passes", get("/caf%C3%A9").key(K_CRON)).client("cron"),
    ];
    // nginx hands the filter its decoded URI (`:path` is `$uri`), and the
    // shipped conf forwards that URI: an encoded `?` or `#` is then part
    // of a path both judge alike, a `//`-led path is merged.
    let decoded = "nginx decodes and normalises the URI before the filter, which judges (and the upstream gets) that";
    for row in &mut rows {
        let nginx = match row.name.as_str() {
            "a `//`-led path" => Seen {
                path: Some("/healthz".into()),
                ..Seen::default()
            },
            "encoded `?`" | "encoded `#`" => Seen::default(),
            _ => continue,
        };
        *row = row
            .clone()
            .on(Host::Nginx, Some(Want::Upstream(nginx)), decoded);
    }
    rows
}

/// Path tricks against `paths::config()` (default `none`, private
/// `/admin`): any request that slips past `/admin` reaches the upstream,
/// so a miss is a bypass.
pub fn path_rows() -> Vec<Scenario> {
    crate::paths::TRICKS
        .iter()
        .map(|&(target, status)| {
            let name = format!("GET {target}");
            let row = if status == 200 {
                Scenario::pass(name, Req::get(target))
            } else {
                let prefix = if status == 401 { "[missing] " } else { "" };
                Scenario::reply(format!("{prefix}{name}"), Req::get(target), status)
            };
            // nginx resolves these before the filter: its own 400 for dot
            // segments spelled `%2e` and invalid escapes; merged slashes,
            // resolved dot segments and a decoded `%2F` leave `/admin`,
            // which the filter refuses as the private route it is.
            let by_nginx = [
                "/%2e%2e/admin", "/%2E%2E/admin", "/.%2e/admin", "/adm%ZZin", "/admin%",
                "/admin%4", "/admin%00",
            ];
            let normalised = [
                "//admin", "///admin//users", "/files/../admin", "/admin/../admin",
                "/./admin", "/admin/.", "/files%2F..%2Fadmin", "/files%2f..%2fadmin",
                "/admin%2Fx",
            ];
            if by_nginx.contains(&target) {
                row.on(Host::Nginx, Some(Want::HostReply(400)), "nginx refuses it (400) before any filter")
            } else if normalised.contains(&target) {
                row.on(
                    Host::Nginx,
                    Some(Want::Reply(401)),
                    "nginx normalises it to a path under /admin first; the filter refuses that (no key)",
                )
            } else {
                row
            }
        })
        .collect()
}

#[test]
fn shared_tables_on_envoy() {
    let mut t = Cases::default();
    let mut not_expressed = Vec::new();
    for (label, config, table) in [
        ("contract", crate::contract::config(), contract_rows()),
        ("paths", crate::paths::config(), path_rows()),
    ] {
        let envoy = Envoy::start(&format!("shared-{label}"), Setup::new(config));
        let send = |r: &Req| envoy.send(r.clone());
        not_expressed.extend(run(Host::Envoy, &table, envoy.port(), &send, &mut t));
        let expected: usize = table
            .iter()
            .filter(|s| outcome(s, Host::Envoy).is_some())
            .count();
        let counters = envoy.counters();
        let denied: u64 = counters
            .iter()
            .filter(|(k, _)| k.starts_with("denied_"))
            .map(|(_, v)| v)
            .sum();
        t.check(
            &format!("{label}: every refusal counted"),
            denied == expected as u64,
            format_args!("want {expected}, got {counters:?}"),
        );
    }
    t.check(
        "Envoy expresses every row",
        not_expressed.is_empty(),
        &not_expressed,
    );
    t.finish();
}
