//! Header floods over HTTP/1.1 (raw sockets) and HTTP/2 (curl, h2c): many
//! headers, a large header block, a huge key value. Each request gets
//! Envoy's limit reply or the filter's 401 (or passes, when it is within
//! the limits and carries a valid key), never a 5xx; Envoy and the VM keep
//! serving, and the VM is never reloaded.

use crate::harness::*;
use std::process::Command;

const KEY: &str = "e2e_floods_key_0123456789abcdefgh";

fn config() -> String {
    format!(
        r#"{{ "routes": [ {{ "name": "api", "prefix": "/api", "auth": "private" }} ],
  "keys": [ {{ "id": "k", "client": "billing", "sha256": "{}" }} ] }}"#,
        sha256_hex(KEY.as_bytes())
    )
}

/// What a flood request must get.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    /// Over Envoy's limits: HTTP/1.1 431; HTTP/2 a reset stream (or 431).
    /// The filter never sees it.
    Limit,
    /// Within the limits, valid key: the upstream's 200.
    Pass,
    /// Within the limits: the filter's 401, counted as this outcome.
    Deny(&'static str),
}

/// A request's extra headers.
struct Flood {
    name: &'static str,
    headers: Vec<(String, String)>,
    expect: Expect,
}

fn many(n: usize, value_len: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("x-flood-{i}"), "v".repeat(value_len)))
        .collect()
}

fn key(value: String) -> Vec<(String, String)> {
    vec![("nected-api-key".into(), value)]
}

fn with_key(mut headers: Vec<(String, String)>) -> Vec<(String, String)> {
    headers.push(("nected-api-key".into(), KEY.into()));
    headers
}

/// Envoy's defaults: at most 100 request headers, a 60 KiB header block.
/// Each flood over a limit has a twin just under it.
fn floods() -> Vec<Flood> {
    use Expect::*;
    let f = |name, headers, expect| Flood {
        name,
        headers,
        expect,
    };
    vec![
        f("100 headers, valid key", with_key(many(100, 8)), Limit),
        f("100 headers, no key", many(100, 8), Limit),
        f("90 headers, valid key", with_key(many(90, 8)), Pass),
        f("90 headers, no key", many(90, 8), Deny("denied_missing")),
        f(
            "60 KiB header block, valid key",
            with_key(many(60, 1024)),
            Limit,
        ),
        f("60 KiB header block, no key", many(60, 1024), Limit),
        f(
            "50 KiB header block, valid key",
            with_key(many(50, 1024)),
            Pass,
        ),
        f(
            "50 KiB header block, no key",
            many(50, 1024),
            Deny("denied_missing"),
        ),
        f("64 KiB key", key("k".repeat(64 * 1024)), Limit),
        f(
            "32 KiB key",
            key("k".repeat(32 * 1024)),
            Deny("denied_invalid"),
        ),
        f("513-byte key", key("k".repeat(513)), Deny("denied_invalid")),
    ]
}

fn http1(envoy: &Envoy, flood: &Flood) -> Response {
    let mut req = Req::get("/api/flood");
    for (n, v) in &flood.headers {
        req = req.header(n, v);
    }
    envoy.send(req)
}

/// HTTP/2 (h2c) through curl: the status and whether the upstream answered,
/// or curl's exit code when the stream (or connection) was reset.
fn http2(envoy: &Envoy, flood: &Flood) -> Result<(u16, bool), i32> {
    let file = envoy.dir.join("flood-headers.txt");
    let lines: String = flood
        .headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\n"))
        .collect();
    std::fs::write(&file, lines).unwrap();
    let out = Command::new("curl")
        .args(["--silent", "--http2-prior-knowledge", "--max-time", "15"])
        .args(["--write-out", "\n%{http_code}"])
        .arg("-H")
        .arg(format!("@{}", file.display()))
        .arg(format!("http://127.0.0.1:{}/api/flood", envoy.port()))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    match code.trim().parse::<u16>() {
        Ok(code) if code != 0 => Ok((code, body.starts_with("{\"method\""))),
        _ => Err(out.status.code().unwrap_or(-1)),
    }
}

#[test]
fn header_floods_get_limits_or_401_never_a_5xx() {
    let envoy = Envoy::start("floods", Setup::new(config()).shipped_hcm_options());
    let mut t = Cases::default();
    let created = envoy.stat("wasm.envoy.wasm.runtime.v8.created");
    let mut want: std::collections::BTreeMap<String, u64> = Default::default();
    for flood in floods() {
        let name = flood.name;
        let h1 = http1(&envoy, &flood);
        let h2 = http2(&envoy, &flood);
        eprintln!("{name}: HTTP/1.1 {}, HTTP/2 {h2:?}", h1.status);
        match flood.expect {
            Expect::Limit => {
                t.status(&format!("{name}: HTTP/1.1 Envoy's limit"), &h1, 431);
                t.check(
                    &format!("{name}: HTTP/2 reset or 431"),
                    matches!(h2, Err(_) | Ok((431, false))),
                    h2,
                );
            }
            Expect::Pass => {
                t.passed(&format!("{name}: HTTP/1.1 passes"), &h1);
                t.check(&format!("{name}: HTTP/2 passes"), h2 == Ok((200, true)), h2);
                *want.entry("allowed".into()).or_default() += 2;
            }
            Expect::Deny(outcome) => {
                t.status(&format!("{name}: HTTP/1.1 401"), &h1, 401);
                t.check(&format!("{name}: HTTP/2 401"), h2 == Ok((401, false)), h2);
                *want.entry(outcome.into()).or_default() += 2;
            }
        }
        // Envoy and the VM keep serving.
        t.passed(
            &format!("{name}: a valid request still passes"),
            &envoy.send(Req::get("/api/after").key(KEY)),
        );
        *want.entry("allowed".into()).or_default() += 1;
    }
    // The filter saw exactly the requests within the limits.
    let counters: std::collections::BTreeMap<String, u64> = envoy
        .counters()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    t.check(
        "the filter's counters",
        counters == want,
        (&counters, &want),
    );
    t.check(
        "no 5xx",
        envoy.stat("http.plain.downstream_rq_5xx") == 0,
        envoy.stat("http.plain.downstream_rq_5xx"),
    );
    for stat in [
        "wasm.nected_key_auth.vm_reload",
        "wasm.nected_key_auth.vm_reload_success",
        "wasm.nected_key_auth.vm_reload_failure",
        "wasm.nected_key_auth.vm_reload_backoff",
    ] {
        t.check(&format!("{stat} stays 0"), envoy.stat(stat) == 0, stat);
    }
    t.check(
        "no VM was created after start-up",
        envoy.stat("wasm.envoy.wasm.runtime.v8.created") == created,
        (created, envoy.stat("wasm.envoy.wasm.runtime.v8.created")),
    );
    t.check(
        "the filter never panicked",
        !envoy.log().contains("panic"),
        "panic in the log",
    );
    eprintln!(
        "floods: filter counters {counters:?}; Envoy 4xx {}, 5xx {}, rx_reset {}",
        envoy.stat("http.plain.downstream_rq_4xx"),
        envoy.stat("http.plain.downstream_rq_5xx"),
        envoy.stat("http.plain.downstream_rq_rx_reset"),
    );
    t.finish();
}
