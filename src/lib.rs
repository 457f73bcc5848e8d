//! nected-key-auth: API-key authentication for Nected-style Rule and
//! Workflow APIs, enforced inside a proxy-wasm gateway.
//!
//! The core (`config`, `policy`, `path`, `host`, `decide`) never touches the
//! proxy-wasm ABI and is tested on the host. The glue in `filter` (built for
//! `wasm32` only) reads headers, calls [`Policy::decide`](policy::Policy) and
//! applies the result.

pub mod canonical;
pub mod config;
pub mod decide;
pub mod host;
pub mod json;
pub mod path;
pub mod policy;
pub mod revocation;
pub mod schema;
pub mod shape;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod filter;

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
