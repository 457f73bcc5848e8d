//! Test-only crash hook, compiled only with the cargo feature `test-crash`
//! (the release artifact never has it; `tests/wasm_imports.rs` checks that
//! the trigger name is absent from it).
//!
//! A request carrying `x-nka-test-crash: 1` makes the filter panic before it
//! decides anything, so the end-to-end tests (`tests/e2e/failure.rs`) can
//! show what the shipped `failure_policy` does with a VM that dies in the
//! middle of a request: 503, never 200, and a fresh VM afterwards.

#![allow(clashing_extern_declarations)]

use std::ptr::null_mut;

/// The trigger header (lower case, as the host stores it).
const TRIGGER: &[u8] = b"x-nka-test-crash";
const OK: u32 = 0;
const MAP_REQUEST_HEADERS: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
}

/// The first value of the trigger header, read with a raw host call that
/// cannot panic itself (absent, or any host error: `None`).
fn trigger_value() -> Option<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: pointer and length of a static slice; out-pointers to locals.
    let status = unsafe {
        proxy_get_header_map_value(
            MAP_REQUEST_HEADERS,
            TRIGGER.as_ptr(),
            TRIGGER.len(),
            &mut data,
            &mut size,
        )
    };
    if status != OK || data.is_null() {
        return None;
    }
    // SAFETY: the host allocated `size` bytes through the SDK's
    // `proxy_on_memory_allocate` and hands them over to us.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// Panics (on purpose) when the request carries the trigger header with the
/// value `1`; otherwise does nothing.
#[allow(clippy::panic)]
pub fn check_request() {
    if trigger_value().as_deref() == Some(b"1") {
        panic!("test-crash: trigger header present, crashing on purpose");
    }
}
