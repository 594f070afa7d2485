//! `--log`: the access log in the combined log format, as rest-server writes it
//! (`host - user [time] "METHOD uri PROTO" status bytes "referer" "agent"`).
//! Times are UTC: a static binary on a small board often has no time zone data.
//! A writer thread behind a bounded queue writes the lines, so a log file on a
//! slow disk never stalls a request (see `logging/writer.rs`).

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::Request;
use hyper::header::{REFERER, USER_AGENT};

use crate::config::AccessLogTarget;
use crate::logging::LogHealth;
use crate::logging::writer::{FLUSH_TIMEOUT, LogWriter, Notes, QUEUE_LINES};
use crate::time::civil_from_days;

/// One request, as the log line needs it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) host: String,
    /// The authenticated user, `-` in the log when there is none.
    pub(crate) user: Option<String>,
    pub(crate) time: SystemTime,
    pub(crate) request_line: String,
    pub(crate) status: u16,
    pub(crate) bytes: u64,
    pub(crate) referer: String,
    pub(crate) user_agent: String,
}

impl Entry {
    pub(crate) fn from_request<B>(req: &Request<B>, peer: &str, time: SystemTime) -> Entry {
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

    pub(crate) fn format(&self) -> String {
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

/// Where the access log goes; lines are queued, never written on the caller's
/// thread.
pub(crate) struct AccessLog {
    out: LogWriter,
}

/// What the access log's writer says about its own trouble: in the server log,
/// so the access log keeps to the combined format that log analysers parse.
const NOTES: Notes = Notes {
    dropped: |n, _| log::warn!("access log: {}", crate::logging::writer::dropped_text(n)),
    write_failed: |e| {
        log::error!(
            "access log: {e} (further errors are counted, not logged, until a write succeeds)"
        )
    },
};

impl AccessLog {
    pub(crate) fn open(target: &AccessLogTarget) -> io::Result<AccessLog> {
        match target {
            AccessLogTarget::Stdout => AccessLog::to(io::stdout()),
            AccessLogTarget::File(path) => AccessLog::to(open_append(path)?),
        }
    }

    fn to<W: Write + Send + 'static>(sink: W) -> io::Result<AccessLog> {
        let out = LogWriter::spawn("access-log", QUEUE_LINES, sink, NOTES)?;
        Ok(AccessLog { out })
    }

    /// Queues one line and returns at once. A failing or slow log must not
    /// fail or stall the request: a line the queue has no room for is dropped
    /// and counted, and write errors are reported to the server log.
    pub(crate) fn write(&self, entry: &Entry) {
        let mut line = entry.format();
        line.push('\n');
        self.out.send(line.into_bytes());
    }

    /// How the log's output is keeping up, for `/metrics`.
    pub(crate) fn health(&self) -> LogHealth {
        LogHealth {
            log: "access",
            dropped: self.out.dropped_lines(),
            write_errors: self.out.write_errors(),
        }
    }
}

impl Drop for AccessLog {
    /// The last requests' lines reach the file before the process exits. This
    /// runs once, at shutdown, so a bounded wait on the event loop is fine.
    fn drop(&mut self) {
        self.out.flush(FLUSH_TIMEOUT);
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
    use crate::logging::writer::tests::gated_sink;
    use std::time::Duration;

    #[test]
    fn formats_dates() {
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

    #[test]
    fn a_blocked_log_does_not_block_requests() {
        let (sink, gate) = gated_sink();
        let log = AccessLog::to(sink).unwrap();
        let req = Request::builder().uri("/repo/config").body(()).unwrap();
        let entry = |status| {
            let mut entry = Entry::from_request(&req, "127.0.0.1", UNIX_EPOCH);
            entry.status = status;
            entry
        };
        log.write(&entry(200));
        gate.wait_blocked();
        let start = std::time::Instant::now();
        for status in 0..QUEUE_LINES as u16 + 5 {
            log.write(&entry(status));
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(log.health().dropped, 5);
        gate.open();
        assert!(log.out.flush(Duration::from_secs(10)));
        drop(log);
        let text = gate.text();
        assert_eq!(text.lines().count(), QUEUE_LINES + 1);
        let statuses: Vec<&str> = text
            .lines()
            .map(|line| line.rsplit(' ').nth(3).unwrap())
            .collect();
        assert_eq!(statuses[0], "200");
        assert_eq!(statuses[1], "0");
        assert_eq!(statuses[QUEUE_LINES], (QUEUE_LINES - 1).to_string());
    }

    #[test]
    fn appends_to_a_file_and_flushes_on_drop() {
        let dir = std::env::temp_dir().join(format!("access-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let _ = std::fs::remove_file(&path);
        let req = Request::builder().uri("/x").body(()).unwrap();
        for _ in 0..2 {
            let log = AccessLog::open(&AccessLogTarget::File(path.clone())).unwrap();
            log.write(&Entry::from_request(&req, "-", UNIX_EPOCH));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.starts_with("- - - [01/Jan/1970:00:00:00 +0000] \"GET /x HTTP/1.1\" 0 0"));
    }
}
