//! Integration tests: the built `rest-server` binary, started on 127.0.0.1:0
//! (or a Unix socket) with a temp data directory, driven over real sockets.

mod util;

mod api;
mod auth;
mod board;
mod container;
mod fat;
mod image;
mod layers;
mod lifecycle;
mod metrics;
mod mirror;
mod mirror_lock;
mod mirror_random;
mod modes;
mod packages;
mod restic;
mod s3;
mod s3_faults;
mod scrub;
mod security;
mod status;
mod tls;
mod trash;
