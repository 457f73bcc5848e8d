//! Test-only crash hook, compiled only with the cargo feature `test-crash`
//! (the release artifact never has it; `tests/wasm_imports.rs` checks that
//! the trigger name is absent from it).
//!
//! A request carrying `x-nka-test-crash: 1` makes the filter panic before it
//! decides anything, so the end-to-end tests (`tests/e2e/failure.rs`) can
//! show what the shipped `failure_policy` does with a VM that dies in the
//! middle of a request: 503, never 200, and a fresh VM afterwards.

use super::abi;

/// The trigger header (lower case, as the host stores it).
const TRIGGER: &[u8] = b"x-nka-test-crash";

/// Panics (on purpose) when the request carries the trigger header with the
/// value `1`; otherwise does nothing.
#[allow(clippy::panic)]
pub fn check_request() {
    if abi::request_header(TRIGGER).as_deref() == Some(b"1") {
        panic!("test-crash: trigger header present, crashing on purpose");
    }
}
