//! Host micro-benchmarks of the core (criterion): `decide` on a small and on
//! a 10,000-key / 1,000-route policy, and compiling the large config.
//! `make bench` runs them; `cargo test --all-targets` runs each once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use nected_key_auth::config;
use nected_key_auth::decide::{Env, Outcome};
use nected_key_auth::policy::Policy;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::hint::black_box;

const KEY: &str = "bench_key_0123456789abcdefghijklmnopqrstuvwxyz";
const WRONG: &str = "bench_key_0123456789abcdefghijklmnopqrstuvwxyZ";

fn sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// 3 routes (public, private, private for one client), 2 keys.
fn small_config() -> String {
    format!(
        r#"{{ "routes": [
            {{ "name": "health", "path": "/healthz", "auth": "none" }},
            {{ "name": "rules", "prefix": "/api/v1/rules", "auth": "private", "allow_clients": ["cron"] }},
            {{ "name": "workflows", "prefix": "/api/v1/workflows", "auth": "private" }} ],
          "keys": [
            {{ "id": "bench", "client": "billing", "sha256": "{}" }},
            {{ "id": "cron", "sha256": "{}" }} ] }}"#,
        sha256(KEY),
        sha256("cron-key")
    )
}

/// The same shapes as `make bench`'s 10k/1k config (scripts/bench.py).
fn large_config() -> String {
    let clients: Vec<String> = (0..50).map(|i| format!("client-{i:02}")).collect();
    let mut routes = Vec::new();
    for i in 0..999 {
        routes.push(match i % 5 {
            0 => format!(r#"{{"name":"r{i}","path":"/svc{i}/items","auth":"private"}}"#),
            1 => format!(
                r#"{{"name":"r{i}","prefix":"/svc{i}","methods":["GET","POST"],"auth":"private"}}"#
            ),
            2 => format!(
                r#"{{"name":"r{i}","prefix":"/svc{i}/v1","hosts":["h{i}.example.com","*.svc.example.org"],"auth":"none"}}"#
            ),
            3 => format!(
                r#"{{"name":"r{i}","prefix":"/api/v1/workflows{i}","auth":"private","allow_clients":["{}"]}}"#,
                clients[i % 50]
            ),
            _ => format!(
                r#"{{"name":"r{i}","prefix":"/api/v1/workflows/run{i}","methods":["DELETE"],"auth":"private"}}"#
            ),
        });
    }
    routes.push(r#"{"name":"last","prefix":"/api/v1/workflows","auth":"private"}"#.into());
    let mut keys = Vec::new();
    for i in 0..9_999 {
        let extra = match i % 10 {
            0 => r#","revoked":true"#,
            1 => r#","expires":"2099-01-01T00:00:00Z""#,
            _ => "",
        };
        keys.push(format!(
            r#"{{"id":"k{i}","client":"{}","sha256":"{}"{extra}}}"#,
            clients[i % 50],
            sha256(&format!("filler-{i}"))
        ));
    }
    keys.insert(
        5_000,
        format!(
            r#"{{"id":"bench","client":"billing","sha256":"{}"}}"#,
            sha256(KEY)
        ),
    );
    format!(
        r#"{{"routes":[{}],"keys":[{}]}}"#,
        routes.join(","),
        keys.join(",")
    )
}

struct Clock;

impl Env for Clock {
    fn now(&self) -> Option<i128> {
        Some(1_800_000_000_000_000_000)
    }
    fn is_tls(&self) -> bool {
        false
    }
}

fn headers<'a>(path: &'a str, host: &'a str, key: Option<&'a str>) -> Vec<(&'a [u8], &'a [u8])> {
    let mut h: Vec<(&[u8], &[u8])> = vec![
        (b":authority", host.as_bytes()),
        (b":path", path.as_bytes()),
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b"user-agent", b"wrk"),
        (b"x-forwarded-proto", b"http"),
        (b"x-request-id", b"5f1c1e9a-59a4-4b9e-8f44-1f6e4b0a9d11"),
    ];
    if let Some(key) = key {
        h.push((b"nected-api-key", key.as_bytes()));
    }
    h
}

fn decide_cases(
    c: &mut Criterion,
    name: &str,
    policy: &Policy,
    cases: &[(&str, &str, &str, Option<&str>, Outcome)],
) {
    let mut group = c.benchmark_group(format!("decide/{name}"));
    for &(case, path, host, key, want) in cases {
        let h = headers(path, host, key);
        let req = policy.scan(h.iter().copied());
        assert_eq!(policy.decide(&req, &Clock).outcome, want, "{name}/{case}");
        group.bench_function(case, |b| {
            b.iter(|| {
                let req = policy.scan(black_box(&h).iter().copied());
                black_box(policy.decide(&req, &Clock).outcome)
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let small = config::compile(small_config().as_bytes()).unwrap();
    decide_cases(
        c,
        "small",
        &small,
        &[
            (
                "public",
                "/healthz",
                "api.example.com",
                None,
                Outcome::Public,
            ),
            (
                "valid_key",
                "/api/v1/workflows/run",
                "api.example.com",
                Some(KEY),
                Outcome::Allowed,
            ),
            (
                "invalid_key",
                "/api/v1/workflows/run",
                "api.example.com",
                Some(WRONG),
                Outcome::DeniedInvalid,
            ),
            (
                "forbidden",
                "/api/v1/rules/x",
                "api.example.com",
                Some(KEY),
                Outcome::DeniedForbidden,
            ),
        ],
    );
    let large_json = large_config();
    let large = config::compile(large_json.as_bytes()).unwrap();
    decide_cases(
        c,
        "10k_keys_1k_routes",
        &large,
        &[
            (
                "public",
                "/svc2/v1/x",
                "h2.example.com",
                None,
                Outcome::Public,
            ),
            (
                "valid_key",
                "/api/v1/workflows/run",
                "api.example.com",
                Some(KEY),
                Outcome::Allowed,
            ),
            (
                "invalid_key",
                "/api/v1/workflows/run",
                "api.example.com",
                Some(WRONG),
                Outcome::DeniedInvalid,
            ),
            (
                "forbidden",
                "/api/v1/workflows3/x",
                "api.example.com",
                Some(KEY),
                Outcome::DeniedForbidden,
            ),
        ],
    );
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.bench_function("10k_keys_1k_routes", |b| {
        b.iter_batched(
            || large_json.clone(),
            |json| config::compile(json.as_bytes()).map(|p| p.keys.len()),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(core, benches);
criterion_main!(core);
