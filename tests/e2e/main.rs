//! End-to-end tests: the built filter inside the pinned Envoy, one Envoy per
//! scenario. Run with `make test` (or `make e2e`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod harness;
mod ngx;
mod scenarios;

mod configs;
mod contract;
mod ecds;
mod failure;
mod floods;
mod h2;
mod hardening;
mod modes;
mod nginx;
mod operators;
mod paths;
mod reload;
mod revocation;
mod shipped;
mod tls;
