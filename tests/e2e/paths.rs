//! Path tricks over raw sockets, against a config whose default is `none`:
//! any request that slips past the private `/admin` prefix reaches the
//! upstream with a 200, so a miss is a bypass.

use crate::harness::*;

const KEY: &str = "e2e_paths_admin_key_0123456789";

pub fn config() -> String {
    format!(
        r#"{{
  "default_auth": "none",
  "log_requests": true,
  "routes": [
    {{ "name": "admin", "prefix": "/admin", "auth": "private" }},
    {{ "name": "colon", "path": "/a%3Ab", "auth": "private" }}
  ],
  "keys": [ {{ "id": "ops", "sha256": "{}" }} ]
}}"#,
        sha256_hex(KEY.as_bytes())
    )
}

/// (request target, what the filter must answer with HCM defaults).
pub const TRICKS: &[(&str, u16)] = &[
    ("/admin", 401),
    ("/admin/users", 401),
    ("/admin?x=/../", 401),
    ("/admin/", 401),
    ("//admin", 400),
    ("///admin//users", 400),
    ("/x//admin", 200),
    ("/admin;x=1", 401),
    ("/;x/admin", 401),
    ("/%61dmin", 401),
    ("/%61%64%6D%69%6E/x", 401),
    ("/a%3ab", 401),
    ("/a%3Ab", 401),
    // The same resource spelled with the raw reserved character.
    ("/a:b", 401),
    ("/files/../admin", 400),
    ("/admin/../admin", 400),
    ("/./admin", 400),
    ("/admin/.", 400),
    ("/%2e%2e/admin", 400),
    ("/%2E%2E/admin", 400),
    ("/.%2e/admin", 400),
    ("/files/..;x/admin", 400),
    ("/files/.;x/admin", 400),
    ("/files%2F..%2Fadmin", 400),
    ("/files%2f..%2fadmin", 400),
    ("/admin%2Fx", 400),
    ("/files%5C..%5Cadmin", 400),
    ("/files\\..\\admin", 400),
    ("/admin\\x", 400),
    ("/adm%ZZin", 400),
    ("/admin%", 400),
    ("/admin%4", 400),
    ("/admin%00", 400),
    ("/admin%0a", 400),
    ("/admin%0D", 400),
    ("/admin%1F", 400),
    ("/admin%7f", 400),
    // Not the private route: matching is case-sensitive and by segments.
    ("/ADMIN", 200),
    ("/adminx", 200),
    ("/public/admin", 200),
];

#[test]
fn path_tricks_with_hcm_defaults_are_refused_or_judged_canonically() {
    let envoy = Envoy::start("paths-raw", Setup::new(config()));
    let mut t = Cases::default();
    for &(target, want) in TRICKS {
        let r = envoy.send(Req::get(target));
        t.status(&format!("GET {target}"), &r, want);
        if want == 401 {
            let r = envoy.send(Req::get(target).key(KEY));
            if let Some(e) = t.passed(&format!("GET {target} with the key"), &r) {
                // With HCM defaults Envoy forwards the path as sent.
                t.check(
                    &format!("{target}: upstream sees the raw path"),
                    e.path == target,
                    &e.path,
                );
            }
        }
    }
    // Origin-form rules.
    // Envoy answers `OPTIONS *` itself (404) before any filter runs.
    let r = envoy.raw(b"OPTIONS * HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    t.check(
        "OPTIONS * never reaches the upstream",
        !r.reached_upstream() && r.status >= 400,
        r.status,
    );
    let r = envoy.raw(b"GET /admin HTTP/1.1\r\nhost: localhost\r\nx-http-method-override: GET\r\nconnection: close\r\n\r\n");
    t.status("method override on a private path", &r, 400);
    // HTTP/2 carries :path verbatim too.
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", envoy.port());
    for (target, want) in [
        ("/files/../admin", 400),
        ("//admin", 400),
        ("/%2e%2e/admin", 400),
        ("/admin%2F", 400),
    ] {
        let r = curl(&["--http2-prior-knowledge", "--path-as-is", &url(target)]);
        t.status(&format!("HTTP/2 {target}"), &r, want);
    }
    let counters = envoy.counters();
    t.check(
        "the filter, not Envoy, refused them",
        counters.get("denied_bad_request").copied().unwrap_or(0) >= 25,
        &counters,
    );
    t.finish();
}

/// Whether an upstream path falls under one of the private routes, judged
/// by the filter's own canonicalization and policy.
fn is_private(upstream_path: &str) -> bool {
    let policy = nected_key_auth::config::compile(config().as_bytes()).unwrap();
    match nected_key_auth::path::canonical(upstream_path.as_bytes()) {
        Ok(p) => policy.routes.iter().any(|r| r.matcher.matches(&p)),
        Err(_) => true,
    }
}

#[test]
fn path_tricks_with_the_shipped_hcm_options_never_bypass() {
    let envoy = Envoy::start("paths-shipped", Setup::new(config()).shipped_hcm_options());
    let mut t = Cases::default();
    for &(target, want) in TRICKS {
        let r = envoy.send(Req::get(target));
        if want == 200 {
            t.status(&format!("GET {target}"), &r, 200);
            continue;
        }
        // Envoy may normalize first (then the filter judges the result) or
        // reject the request itself; without a key, nothing under the
        // private routes reaches the upstream.
        let bypass = r.reached_upstream() && is_private(&r.echo().path);
        t.check(
            &format!("GET {target} never reaches a private path without a key"),
            !bypass && (r.reached_upstream() || r.status == 400 || r.status == 401),
            format_args!("{} {}", r.status, r.body_str()),
        );
    }
    // What the upstream sees is what the filter judged.
    for (target, upstream) in [
        ("//admin", "/admin"),
        ("/%61dmin", "/admin"),
        ("///admin//users", "/admin/users"),
    ] {
        let r = envoy.send(Req::get(target).key(KEY));
        if let Some(e) = t.passed(&format!("GET {target} with the key"), &r) {
            t.check(
                &format!("{target}: upstream path"),
                e.path == upstream,
                &e.path,
            );
        }
    }
    t.finish();
}
