//! `--log`: the access log in the combined log format, as rest-server writes it
//! (`host - user [time] "METHOD uri PROTO" status bytes "referer" "agent"`).
//! Times are UTC: a static binary on a small board often has no time zone data.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, LineWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::Request;
use hyper::header::{REFERER, USER_AGENT};

use crate::config::AccessLogTarget;

/// One request, as the log line needs it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub host: String,
    /// The authenticated user, `-` in the log when there is none.
    pub user: Option<String>,
    pub time: SystemTime,
    pub request_line: String,
    pub status: u16,
    pub bytes: u64,
    pub referer: String,
    pub user_agent: String,
}

impl Entry {
    pub fn from_request<B>(req: &Request<B>, peer: &str, time: SystemTime) -> Entry {
        let header = |name| {
            req.headers()
                .get(name)
                .map(|v: &hyper::header::HeaderValue| {
                    escape(&String::from_utf8_lossy(v.as_bytes()))
                })
                .unwrap_or_default()
        };
        Entry {
            host: peer.to_string(),
            user: None,
            time,
            request_line: escape(&format!(
                "{} {} {:?}",
                req.method(),
                req.uri(),
                req.version()
            )),
            status: 0,
            bytes: 0,
            referer: header(REFERER),
            user_agent: header(USER_AGENT),
        }
    }

    pub fn format(&self) -> String {
        let mut line = String::with_capacity(160);
        let _ = write!(
            line,
            "{} - {} [{}] \"{}\" {} {} \"{}\" \"{}\"",
            self.host,
            self.user.as_deref().unwrap_or("-"),
            clf_time(self.time),
            self.request_line,
            self.status,
            self.bytes,
            self.referer,
            self.user_agent
        );
        line
    }
}

/// Keeps a log line one line and its quotes balanced, whatever a client sends.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// `21/Nov/2026:23:24:00 +0000`.
fn clf_time(time: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub struct AccessLog {
    out: RefCell<Box<dyn Write>>,
}

impl AccessLog {
    pub fn open(target: &AccessLogTarget) -> io::Result<AccessLog> {
        let out: Box<dyn Write> = match target {
            AccessLogTarget::Stdout => Box::new(LineWriter::new(io::stdout())),
            AccessLogTarget::File(path) => Box::new(LineWriter::new(open_append(path)?)),
        };
        Ok(AccessLog {
            out: RefCell::new(out),
        })
    }

    /// Writes one line. A failing log must not fail the request: the error is
    /// reported to the server log instead.
    pub fn write(&self, entry: &Entry) {
        let mut line = entry.format();
        line.push('\n');
        if let Err(e) = self.out.borrow_mut().write_all(line.as_bytes()) {
            log::error!("access log: {e}");
        }
    }
}

fn open_append(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let t = UNIX_EPOCH + Duration::from_secs(1_795_303_440);
        assert_eq!(clf_time(t), "21/Nov/2026:23:24:00 +0000");
    }

    #[test]
    fn formats_a_combined_line() {
        let req = Request::builder()
            .method("GET")
            .uri("/repo/config")
            .header(USER_AGENT, "restic/0.14.0 \"x\"")
            .body(())
            .unwrap();
        let mut entry = Entry::from_request(&req, "127.0.0.1", UNIX_EPOCH);
        entry.status = 200;
        entry.bytes = 155;
        assert_eq!(
            entry.format(),
            "127.0.0.1 - - [01/Jan/1970:00:00:00 +0000] \"GET /repo/config HTTP/1.1\" 200 155 \"\" \"restic/0.14.0 \\\"x\\\"\""
        );
    }
}
