//! A restic REST backend server for small boards: restic's REST protocol v1
//! and v2 on a one-threaded hyper server, with uploads streamed to disk and
//! verified against their names.

#![deny(unsafe_code)]

pub mod access_log;
pub mod app;
pub mod auth;
pub mod blocking;
pub mod body;
pub mod certgen;
pub mod cli;
pub mod command_error;
pub mod config;
pub mod connection;
pub mod error;
pub mod handlers;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod quota;
pub mod range;
pub mod route;
pub mod server;
pub mod storage;
mod systemd;
pub mod tls;
pub mod upload;
pub mod users;
