//! actions-client against the Actions-service emulator over real HTTP, HTTPS and a proxy.
#![allow(clippy::unwrap_used)]

mod auth;
mod endpoints;
mod faults;
mod session;
mod support;
mod transport;
