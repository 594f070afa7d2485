//! The status page a browser sees at `/`: what the server keeps in memory
//! about its repositories, disk, mirror, scrub and refused logins, rendered
//! as one HTML page (served by `http::about`).

mod page;

pub(crate) use page::{hostname, page};
