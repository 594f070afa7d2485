//! A restic REST backend server for small boards: restic's REST protocol v1
//! and v2 on a one-threaded hyper server, with uploads streamed to storage and
//! verified against their names.
//!
//! Only what `main` needs is public; see docs/architecture.md for
//! the module map.

#![deny(unsafe_code)]

mod access;
mod access_log;
mod api;
pub mod app;
mod auth;
mod body;
pub mod certgen;
pub mod cli;
pub mod command_error;
pub mod config;
mod connection;
mod error;
#[cfg(test)]
mod inprocess;
mod io_pool;
mod length_guard;
mod listener;
pub mod logging;
pub mod mdns;
mod metrics;
pub mod mirror;
pub mod ntp;
mod origin;
mod pool;
mod priority;
pub mod probe;
mod quota;
mod range;
mod rate;
mod reload;
mod request;
mod route;
mod scrub;
mod server;
mod status;
mod store;
mod systemd;
#[cfg(test)]
mod testing;
mod tls;
mod upload;
mod usage;
pub mod users;
