//! Heap used by `config::compile`, the lever behind memory per worker: a
//! wasm VM's linear memory grows to the compile's peak and never shrinks.
//!
//!     cargo bench --bench compile_memory -- CONFIG.json [...]
//!
//! For each file: its size, the peak heap while compiling it (the JSON
//! tree, the policy being built, scratch), and the heap the compiled policy
//! keeps. Peak − kept is the most a compile that streams the JSON into the
//! policy, without a tree, could save. Measured on the host (64-bit
//! pointers), so above what the 32-bit wasm build allocates. Without a file
//! it compiles a tiny configuration (`cargo test --all-targets` runs it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use nected_key_auth::config;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = CURRENT.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only
// the sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes as MiB, or KiB below one MiB.
fn size(bytes: usize) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

fn main() {
    let files: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let inputs: Vec<(String, Vec<u8>)> = if files.is_empty() {
        let tiny = format!(
            r#"{{"routes": [{{"name": "r", "prefix": "/api", "auth": "private"}}],
                "keys": [{{"id": "k", "sha256": "{}"}}]}}"#,
            "ab".repeat(32)
        );
        vec![("a tiny configuration".into(), tiny.into_bytes())]
    } else {
        files
            .iter()
            .map(|f| (f.clone(), std::fs::read(f).expect("readable configuration")))
            .collect()
    };
    for (name, bytes) in inputs {
        let before = CURRENT.load(Relaxed);
        PEAK.store(before, Relaxed);
        let policy = config::compile(&bytes).expect("a valid configuration");
        let peak = PEAK.load(Relaxed) - before;
        let kept = CURRENT.load(Relaxed) - before;
        println!(
            "{name}: {} of JSON; compile peak {}, kept by the policy {}; \
             a streaming compile could save at most {}",
            size(bytes.len()),
            size(peak),
            size(kept),
            size(peak - kept)
        );
        drop(policy);
    }
}
