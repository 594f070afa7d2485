//! A restic REST backend server for small boards: restic's REST protocol v1
//! and v2 on a one-threaded hyper server, with uploads streamed to storage and
//! verified against their names.
//!
//! The groups of modules below are the layers, from the top down: a module
//! imports only modules of the groups after its own, and no files import
//! each other in a circle. `tests/layers.rs` checks both against this list;
//! docs/architecture.md draws the map. Only what `main` needs is public.

#![deny(unsafe_code)]

// What `main` calls: the server's startup, and the other subcommands.
pub mod app;
pub mod commands;

// The flags, read into `config`.
pub mod cli;

// The request path: listener, connections, routing, endpoints.
mod http;

// The status page.
mod status;

// What every request needs, built at startup.
mod state;

// Background services.
mod mirror;
mod scrub;

// The upload pipeline, shared by requests and the mirror.
mod upload;

// Counters for `/metrics`.
mod metrics;

// Who may do what; byte budgets and what each repository holds.
mod auth;
mod quota;

// Storage: a data directory or a bucket.
mod store;

// The HTTP client the S3 store and `health` use.
mod client;

// Settings, the log, restic's names, our threads, the container around us.
pub mod config;
pub mod container;
pub mod logging;
mod repo;
mod runtime;

// The clock, a sort for short lists; test support.
mod small_sort;
#[cfg(test)]
mod testing;
mod time;
