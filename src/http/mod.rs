//! The request path: a bound listener, one task per connection, each request
//! routed to one endpoint after access is decided. Nothing below this folder
//! imports it.

mod about;
pub(crate) mod access_log;
pub(crate) mod api;
pub(crate) mod body;
pub(crate) mod connection;
pub(crate) mod error;
#[cfg(test)]
mod inprocess;
pub(crate) mod length_guard;
pub(crate) mod listener;
pub(crate) mod origin;
pub(crate) mod request;
pub(crate) mod route;
pub(crate) mod server;
pub(crate) mod systemd;
pub(crate) mod tls;
