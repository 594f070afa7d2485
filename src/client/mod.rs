//! The HTTP client the server reaches other servers with: S3 stores, and
//! `rest-server health` asking the running server.

mod http;
mod resolve;

pub(crate) use http::*;
