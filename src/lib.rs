//! A restic REST backend server for small boards: restic's REST protocol v1
//! and v2 on a one-threaded hyper server, with uploads streamed to storage and
//! verified against their names.
//!
//! The folders are the layers, listed here from the top down; a module only
//! imports modules listed below it (docs/architecture.md, and the test that
//! checks it). Only what `main` needs is public.

#![deny(unsafe_code)]

// Startup and the command line: what `main` calls.
pub mod app;
pub mod cli;
pub mod commands;

// The request path: listener, connections, routing, endpoints.
mod http;

// What every request needs, built at startup; the status page.
mod state;
mod status;

// Background services, and what they share with the request path.
mod mirror;
mod scrub;
mod upload;

// Policy and accounting.
mod auth;
mod metrics;
mod quota;

// Storage, and the HTTP client it reaches object stores with.
mod client;
mod store;

// The ground: settings, restic's names, threads, the log, the clock.
pub mod config;
pub mod logging;
mod repo;
mod runtime;
#[cfg(test)]
mod testing;
mod time;
