//! The server log on stderr: info by default, debug with `--debug`, one line a
//! record (`2026-11-21T23:24:00.31342917Z [INFO] start server on ...`), the
//! format simplelog wrote before this logger replaced it; tests and operators
//! read that format.
//!
//! Each record is formatted whole and goes to a bounded queue (`writer`) that a
//! thread empties into stderr, so a slow stderr (journald under load) never
//! stalls a request.

pub(crate) mod writer;

use std::fmt;
use std::io::{self, Write};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

use writer::{FLUSH_TIMEOUT, LogWriter, Notes, QUEUE_LINES};

/// Only the server's own records: its dependencies (rustls, hyper) log
/// details an operator does not need.
const TARGET: &str = "rest_server";

/// The server log's queue, for [`health`].
static QUEUE: OnceLock<LogWriter> = OnceLock::new();

/// Installs the server log; a second call changes nothing.
pub fn init(debug: bool) {
    let level = if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    if QUEUE.get().is_some() {
        return;
    }
    let out = match LogWriter::spawn("server-log", QUEUE_LINES, io::stderr(), NOTES) {
        Ok(out) => Out::Queue(QUEUE.get_or_init(|| out).clone()),
        Err(e) => {
            // Not expected at startup; a log that can block beats none.
            eprintln!("rest-server: no log writer thread ({e}): logging to stderr directly");
            Out::Stderr
        }
    };
    // Only fails if another logger is set already, which is harmless.
    if log::set_logger(Box::leak(Box::new(Logger { level, out }))).is_ok() {
        log::set_max_level(level);
    }
}

/// Writes `line` as it is, without time or level, in order with the log's
/// other lines: for `start server on ADDR`, which restic's own REST-backend
/// test harness (and any script written for rest-server) finds with
/// `^start server on (.*)$`.
pub(crate) fn bare(line: &str) {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    match QUEUE.get() {
        Some(queue) => queue.send(bytes),
        None => {
            let _ = io::stderr().write_all(&bytes);
        }
    }
}

/// Waits, at most a second, until the lines logged so far are on stderr. For
/// the end of `main`: the writer thread does not outlive the process.
pub fn flush() {
    log::logger().flush();
}

/// How one log's output keeps up (see `logging/writer.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogHealth {
    /// "server" or "access".
    pub(crate) log: &'static str,
    /// Lines dropped because the output was too slow.
    pub(crate) dropped: u64,
    /// Writes that failed (a full disk, say).
    pub(crate) write_errors: u64,
}

/// How the server log's output is keeping up, for `/metrics`.
pub(crate) fn health() -> LogHealth {
    LogHealth {
        log: "server",
        dropped: QUEUE.get().map_or(0, LogWriter::dropped_lines),
        write_errors: QUEUE.get().map_or(0, LogWriter::write_errors),
    }
}

/// Where the server log's lines go: the queue, or stderr directly if its
/// thread could not start. One type, so the logger is compiled once.
enum Out {
    Queue(LogWriter),
    Stderr,
}

/// The server log: this crate's records at `level` and above, each formatted
/// whole into one line ([`format_record`]) before it is written.
struct Logger {
    level: LevelFilter,
    out: Out,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level && metadata.target().starts_with(TARGET)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = Vec::with_capacity(128);
        format_record(&mut line, SystemTime::now(), record.level(), record.args());
        match &self.out {
            Out::Queue(queue) => queue.send(line),
            Out::Stderr => {
                let _ = io::stderr().write_all(&line);
            }
        }
    }

    fn flush(&self) {
        match &self.out {
            Out::Queue(queue) => {
                queue.flush(FLUSH_TIMEOUT);
            }
            Out::Stderr => {
                let _ = io::stderr().flush();
            }
        }
    }
}

/// What the server log's writer says about its own trouble.
const NOTES: Notes = Notes {
    // In place, as a warning like any other line.
    dropped: |n, batch| {
        format_record(
            batch,
            SystemTime::now(),
            Level::Warn,
            &format_args!("{}", writer::dropped_text(n)),
        )
    },
    // stderr is where it would be said; the count is in `write_errors`.
    write_failed: |_| {},
};

/// `2026-11-21T23:24:00.31342917Z [WARN] message\n`, as simplelog wrote a
/// record: for every record, and for the writer's own notes.
fn format_record(out: &mut Vec<u8>, time: SystemTime, level: Level, args: &fmt::Arguments) {
    // Writing to a Vec cannot fail.
    let _ = writeln!(out, "{} [{level}] {args}", Rfc3339(time));
}

/// RFC 3339 in UTC as the `time` crate wrote it for simplelog: the fraction
/// of a second without trailing zeros, none when it is zero.
struct Rfc3339(SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (year, month, day) = crate::time::civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )?;
        let mut fraction = since.subsec_nanos();
        if fraction != 0 {
            let mut digits = 9;
            while fraction.is_multiple_of(10) {
                fraction /= 10;
                digits -= 1;
            }
            write!(f, ".{fraction:0digits$}")?;
        }
        f.write_str("Z")
    }
}

#[cfg(test)]
mod tests {
    use super::writer::tests::gated_sink;
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_times_as_simplelog_did() {
        let at = |secs, nanos| Rfc3339(UNIX_EPOCH + Duration::new(secs, nanos)).to_string();
        assert_eq!(at(1_795_303_440, 0), "2026-11-21T23:24:00Z");
        assert_eq!(
            at(1_795_303_440, 313_429_170),
            "2026-11-21T23:24:00.31342917Z"
        );
        assert_eq!(
            at(1_795_303_440, 310_822_133),
            "2026-11-21T23:24:00.310822133Z"
        );
        assert_eq!(at(1_795_303_440, 5_000_000), "2026-11-21T23:24:00.005Z");
        let mut line = Vec::new();
        format_record(
            &mut line,
            UNIX_EPOCH + Duration::from_secs(1_795_303_440),
            Level::Info,
            &format_args!("start server on 127.0.0.1:{}", 8000),
        );
        assert_eq!(
            line,
            b"2026-11-21T23:24:00Z [INFO] start server on 127.0.0.1:8000\n"
        );
    }

    fn record<'a>(level: Level, target: &'a str, args: fmt::Arguments<'a>) -> Record<'a> {
        Record::builder()
            .level(level)
            .target(target)
            .args(args)
            .build()
    }

    #[test]
    fn logs_the_crates_own_records_at_its_level_without_blocking() {
        let (sink, gate) = gated_sink();
        let out = LogWriter::spawn("test-server-log", 4, sink, NOTES).unwrap();
        let log = Logger {
            level: LevelFilter::Info,
            out: Out::Queue(out.clone()),
        };
        log.log(&record(
            Level::Info,
            "rest_server::app",
            format_args!("start"),
        ));
        gate.wait_blocked();
        // Filtered: another crate's record, and debug at info level.
        log.log(&record(Level::Info, "hyper::proto", format_args!("no")));
        log.log(&record(
            Level::Debug,
            "rest_server::connection",
            format_args!("no"),
        ));
        // The sink is blocked: four records queue, the rest are dropped, and
        // none of these calls waits.
        for i in 0..6 {
            log.log(&record(
                Level::Warn,
                "rest_server::server",
                format_args!("w{i}"),
            ));
        }
        assert_eq!(out.dropped_lines(), 2);
        gate.open();
        assert!(out.flush(Duration::from_secs(10)));
        let text = gate.text();
        let messages: Vec<&str> = text
            .lines()
            .map(|line| line.split_once(' ').unwrap().1)
            .collect();
        assert_eq!(
            messages,
            [
                "[INFO] start",
                "[WARN] w0",
                "[WARN] w1",
                "[WARN] w2",
                "[WARN] w3",
                "[WARN] 2 log lines dropped: the log output was too slow",
            ]
        );
        for line in text.lines() {
            let time = line.split_once(' ').unwrap().0;
            assert!(time.len() >= 20 && time.ends_with('Z'), "{line}");
        }
    }
}
