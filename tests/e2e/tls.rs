//! `require_tls` on a plaintext and on a TLS listener of the same Envoy.

use crate::harness::*;

const KEY: &str = "e2e_tls_key_0123456789abcdefgh";

#[test]
fn require_tls_refuses_private_routes_over_plaintext() {
    let config = format!(
        r#"{{
  "require_tls": true,
  "routes": [ {{ "name": "health", "path": "/healthz", "auth": "none" }} ],
  "keys": [ {{ "id": "svc", "sha256": "{}" }} ]
}}"#,
        sha256_hex(KEY.as_bytes())
    );
    let envoy = Envoy::start("tls", Setup::new(config).with_tls());
    let mut t = Cases::default();
    let https = |p: &str| format!("https://localhost:{}{p}", envoy.tls_port());
    let resolve = format!("localhost:{}:127.0.0.1", envoy.tls_port());

    let r = envoy.send(Req::get("/private").key(KEY));
    t.status("plaintext, private route, valid key", &r, 403);
    t.check(
        "https required body byte for byte",
        r.body_str() == r#"{"error":"forbidden","message":"https required"}"#,
        r.body_str(),
    );
    t.check(
        "content-type",
        r.header("content-type").as_deref() == Some("application/json"),
        &r.headers,
    );
    let r = envoy.send(Req::get("/private"));
    t.status(
        "plaintext, private route, no key: TLS is checked first",
        &r,
        403,
    );
    let r = envoy.send(Req::get("/healthz"));
    t.passed("plaintext, public route", &r);

    let r = curl(&["-k", "--resolve", &resolve, &https("/private")]);
    t.status("TLS, private route, no key", &r, 401);
    let key = format!("nected-api-key: {KEY}");
    let r = curl(&[
        "-k",
        "--http1.1",
        "--resolve",
        &resolve,
        "-H",
        &key,
        &https("/private"),
    ]);
    t.passed("TLS (HTTP/1.1), valid key", &r);
    let r = curl(&[
        "-k",
        "--http2",
        "--resolve",
        &resolve,
        "-H",
        &key,
        &https("/private"),
    ]);
    t.passed("TLS (HTTP/2), valid key", &r);
    let c = envoy.counters();
    t.check("denied_tls counted", c.get("denied_tls") == Some(&2), &c);
    t.check("allowed counted", c.get("allowed") == Some(&2), &c);
    t.finish();
}
