//! The built filter imports only host functions that every proxy-wasm host
//! we ship examples for provides. Envoy implements the whole ABI 0.2.1;
//! APISIX's wasm-nginx-module links a fixed list (its
//! `src/http/ngx_http_wasm_api_def.h`) plus WASI, and refuses to load a
//! module that imports anything else.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

const PORTABLE: &[&str] = &[
    "proxy_set_effective_context",
    "proxy_get_property",
    "proxy_set_property",
    "proxy_log",
    "proxy_get_buffer_bytes",
    "proxy_set_buffer_bytes",
    "proxy_send_local_response",
    "proxy_get_current_time_nanoseconds",
    "proxy_set_tick_period_milliseconds",
    "proxy_get_header_map_pairs",
    "proxy_set_header_map_pairs",
    "proxy_get_header_map_value",
    "proxy_remove_header_map_value",
    "proxy_replace_header_map_value",
    "proxy_add_header_map_value",
    "proxy_get_shared_data",
    "proxy_set_shared_data",
    "proxy_register_shared_queue",
    "proxy_resolve_shared_queue",
    "proxy_dequeue_shared_queue",
    "proxy_enqueue_shared_queue",
    "proxy_continue_stream",
    "proxy_close_stream",
    "proxy_http_call",
    "proxy_grpc_call",
    "proxy_grpc_stream",
    "proxy_grpc_send",
    "proxy_grpc_cancel",
    "proxy_grpc_close",
    "proxy_get_status",
    "proxy_done",
    "proxy_call_foreign_function",
    "proxy_define_metric",
    "proxy_increment_metric",
    "proxy_record_metric",
    "proxy_get_metric",
];

fn leb128(bytes: &[u8], at: &mut usize) -> usize {
    let (mut value, mut shift) = (0usize, 0);
    loop {
        let b = bytes[*at];
        *at += 1;
        value |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b < 0x80 {
            return value;
        }
    }
}

fn name(bytes: &[u8], at: &mut usize) -> String {
    let len = leb128(bytes, at);
    let s = String::from_utf8(bytes[*at..*at + len].to_vec()).unwrap();
    *at += len;
    s
}

/// `(module, name)` of every function import of a wasm binary.
fn imports(wasm: &[u8]) -> Vec<(String, String)> {
    assert_eq!(&wasm[..4], b"\0asm", "not a wasm module");
    let mut at = 8;
    while at < wasm.len() {
        let id = wasm[at];
        at += 1;
        let size = leb128(wasm, &mut at);
        let end = at + size;
        if id == 2 {
            let count = leb128(wasm, &mut at);
            let mut out = Vec::new();
            for _ in 0..count {
                let module = name(wasm, &mut at);
                let field = name(wasm, &mut at);
                let kind = wasm[at];
                at += 1;
                assert_eq!(kind, 0, "only function imports expected, {module}.{field}");
                leb128(wasm, &mut at);
                out.push((module, field));
            }
            return out;
        }
        at = end;
    }
    Vec::new()
}

#[test]
fn filter_imports_only_portable_host_functions() {
    let path = std::env::var_os("NKA_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/wasm32-wasip1/release/nected_key_auth.wasm")
        });
    let wasm = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `make test`, which builds the filter first",
            path.display()
        )
    });
    let imports = imports(&wasm);
    assert!(
        imports
            .iter()
            .any(|(_, f)| f == "proxy_get_header_map_pairs"),
        "{imports:?}"
    );
    for (module, field) in &imports {
        let ok = match module.as_str() {
            "env" => PORTABLE.contains(&field.as_str()),
            "wasi_snapshot_preview1" => true,
            _ => false,
        };
        assert!(ok, "{module}.{field} is not provided by every target host");
    }
}

/// The test-only crash hook (cargo feature `test-crash`,
/// src/filter/crash.rs) is never in the release artifact: its trigger
/// header name is nowhere in the module. The test-crash build, when present
/// (`make test` builds it for tests/e2e/failure.rs), shows that the check
/// would see it.
#[test]
fn release_filter_has_no_test_crash_hook() {
    const TRIGGER: &[u8] = b"x-nka-test-crash";
    let contains = |wasm: &[u8]| wasm.windows(TRIGGER.len()).any(|w| w == TRIGGER);
    let release = std::env::var_os("NKA_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/wasm32-wasip1/release/nected_key_auth.wasm")
        });
    let wasm = std::fs::read(&release).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `make test`, which builds the filter first",
            release.display()
        )
    });
    assert!(
        !contains(&wasm),
        "{} holds the test-crash hook",
        release.display()
    );
    let crash = std::env::var_os("NKA_CRASH_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/crash/wasm32-wasip1/release/nected_key_auth.wasm")
        });
    if let Ok(wasm) = std::fs::read(&crash) {
        assert!(contains(&wasm), "{} lacks the hook", crash.display());
    }
}
