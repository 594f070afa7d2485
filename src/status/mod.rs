//! What the server says about itself: the status page a browser sees at `/`
//! and the Prometheus metrics at `/metrics`.

pub(crate) mod metrics;
mod page;

pub(crate) use page::{hostname, page, wanted};
