//! A line sink that never blocks its callers: lines go over a bounded channel
//! to a thread that writes them. When the channel is full a line is dropped
//! and counted, and the writer later says how many were lost.
//!
//! Both the server log and the access log write through one of these, so a
//! slow stderr (journald under load), a slow stdout or a log file on a stalled
//! SD card costs the event loop a `try_send`, never a write.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Lines queued at most per sink, before new ones are dropped. The slots are
/// allocated up front (16 bytes each on a 32-bit board, 32 on 64-bit: 16 or
/// 32 KiB), and a full queue of access-log lines (about 200 bytes each) holds
/// about 200 KiB more: little next to what the server's buffers use, yet at
/// the few hundred requests a second a small board serves, it rides out a
/// sink that stalls for several seconds without losing a line.
pub(crate) const QUEUE_LINES: usize = 1024;

/// How long a flush at exit waits for the writer to drain its queue: long
/// enough for a healthy sink to write a full queue, short enough that a dead
/// sink (a hung NFS log file) does not hold up the process exit.
pub(crate) const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Bytes gathered into one write when lines are waiting: a slow sink gets
/// fewer, larger writes, and the batch buffer stays small.
const BATCH_BYTES: usize = 16 * 1024;

/// What a writer says about its own trouble. Plain functions, called on the
/// writer thread.
#[derive(Clone, Copy)]
pub(crate) struct Notes {
    /// `n` lines were dropped since the last note; may append a line saying
    /// so to the batch about to be written (or log it elsewhere).
    pub(crate) dropped: fn(n: u64, batch: &mut Vec<u8>),
    /// The first failed write of a run of failures; the rest of the run is
    /// only counted, so a full disk does not flood the server log.
    pub(crate) write_failed: fn(&io::Error),
}

/// The text of a dropped-lines note.
pub(crate) fn dropped_text(n: u64) -> String {
    format!("{n} log lines dropped: the log output was too slow")
}

/// One queued message: whole lines, and how many lines were dropped just
/// before them, so the writer notes a gap where it happened.
struct Queued {
    dropped_before: u64,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct State {
    /// Lines dropped because the queue was full, since the start.
    dropped: AtomicU64,
    /// Dropped lines that no queued message carries yet.
    unreported: AtomicU64,
    /// Failed writes to the sink, since the start.
    write_errors: AtomicU64,
    /// Messages accepted into the queue (lines and flush kicks).
    accepted: AtomicU64,
    /// Messages the writer has finished with, written or failed.
    done: Mutex<u64>,
    progress: Condvar,
}

/// The sending end; cheap to clone, every clone feeds the same writer thread.
/// The thread ends once every clone is dropped and the queue is written.
#[derive(Clone)]
pub(crate) struct LogWriter {
    tx: SyncSender<Queued>,
    state: Arc<State>,
}

impl LogWriter {
    /// Starts a thread named `name` that writes to `sink` what [`send`] queues,
    /// `capacity` lines at most.
    ///
    /// [`send`]: LogWriter::send
    pub(crate) fn spawn<W: Write + Send + 'static>(
        name: &str,
        capacity: usize,
        sink: W,
        notes: Notes,
    ) -> io::Result<LogWriter> {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let state = Arc::new(State::default());
        let writer_state = state.clone();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || run(&rx, sink, &writer_state, notes))?;
        Ok(LogWriter { tx, state })
    }

    /// Queues `line` (one or more whole lines, newline included) and returns
    /// at once: when the queue is full the line is dropped and counted.
    pub(crate) fn send(&self, line: Vec<u8>) {
        // A load first: the swap's read-modify-write only when lines were lost.
        let dropped_before = match self.state.unreported.load(Ordering::Relaxed) {
            0 => 0,
            _ => self.state.unreported.swap(0, Ordering::Relaxed),
        };
        let queued = Queued {
            dropped_before,
            bytes: line,
        };
        match self.tx.try_send(queued) {
            Ok(()) => {
                self.state.accepted.fetch_add(1, Ordering::SeqCst);
            }
            // Disconnected: the writer thread is gone (it does not panic, but
            // a sink's `write` might); the line is lost like a dropped one.
            Err(TrySendError::Full(queued) | TrySendError::Disconnected(queued)) => {
                self.state.dropped.fetch_add(1, Ordering::Relaxed);
                self.state
                    .unreported
                    .fetch_add(queued.dropped_before + 1, Ordering::Relaxed);
            }
        }
    }

    /// Waits at most `timeout` until everything queued so far is written,
    /// with a note for lines dropped at the end; true if it was.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        // An empty message wakes an idle writer, so that it notes drops that
        // no later line carries. If the queue is full the writer is awake
        // anyway, and notes them once it has emptied the queue.
        let kick = Queued {
            dropped_before: 0,
            bytes: Vec::new(),
        };
        if self.tx.try_send(kick).is_ok() {
            self.state.accepted.fetch_add(1, Ordering::SeqCst);
        }
        let target = self.state.accepted.load(Ordering::SeqCst);
        let deadline = Instant::now() + timeout;
        let mut done = lock(&self.state.done);
        while *done < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            done = self
                .state
                .progress
                .wait_timeout(done, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Lines dropped because the sink was too slow, since the start.
    pub(crate) fn dropped_lines(&self) -> u64 {
        self.state.dropped.load(Ordering::Relaxed)
    }

    /// Writes to the sink that failed, since the start.
    pub(crate) fn write_errors(&self) -> u64 {
        self.state.write_errors.load(Ordering::Relaxed)
    }
}

/// Never panics on a poisoned lock: the counter it guards stays valid.
fn lock(done: &Mutex<u64>) -> std::sync::MutexGuard<'_, u64> {
    done.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer thread: takes what is queued, a batch at a time, and writes it
/// as soon as it has it, so a line reaches the sink promptly and in order.
fn run<W: Write>(rx: &Receiver<Queued>, mut sink: W, state: &State, notes: Notes) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    let mut failing = false;
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        let mut messages = 0;
        while let Some(queued) = next.take() {
            if queued.dropped_before > 0 {
                (notes.dropped)(queued.dropped_before, &mut batch);
            }
            batch.extend_from_slice(&queued.bytes);
            messages += 1;
            if batch.len() >= BATCH_BYTES {
                break;
            }
            match rx.try_recv() {
                Ok(queued) => next = Some(queued),
                Err(_) => {
                    // The queue is empty: lines dropped since the last one
                    // queued (the queue was full then) are noted after it.
                    let dropped = state.unreported.swap(0, Ordering::Relaxed);
                    if dropped > 0 {
                        (notes.dropped)(dropped, &mut batch);
                    }
                }
            }
        }
        if !batch.is_empty() {
            match sink.write_all(&batch).and_then(|()| sink.flush()) {
                Ok(()) => failing = false,
                Err(e) => {
                    state.write_errors.fetch_add(1, Ordering::Relaxed);
                    if !failing {
                        failing = true;
                        (notes.write_failed)(&e);
                    }
                }
            }
        }
        batch.clear();
        // One huge line must not pin its size for the life of the process.
        batch.shrink_to(BATCH_BYTES);
        *lock(&state.done) += messages;
        state.progress.notify_all();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::mpsc::Receiver;

    /// A sink that blocks in its first write until the test opens the gate,
    /// and keeps what it is given.
    pub(crate) struct GatedSink {
        pub(crate) written: Arc<Mutex<Vec<u8>>>,
        entered: Option<SyncSender<()>>,
        gate: Option<Receiver<()>>,
        pub(crate) fail: bool,
    }

    /// The test's side of a [`GatedSink`].
    pub(crate) struct Gate {
        pub(crate) written: Arc<Mutex<Vec<u8>>>,
        entered: Receiver<()>,
        open: SyncSender<()>,
    }

    impl Gate {
        /// Waits until the writer is blocked in its first write.
        pub(crate) fn wait_blocked(&self) {
            self.entered
                .recv_timeout(Duration::from_secs(10))
                .expect("the writer reached the sink");
        }

        pub(crate) fn open(&self) {
            let _ = self.open.send(());
        }

        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.written.lock().unwrap().clone()).unwrap()
        }
    }

    pub(crate) fn gated_sink() -> (GatedSink, Gate) {
        let written = Arc::new(Mutex::new(Vec::new()));
        let (entered_tx, entered) = mpsc::sync_channel(1);
        let (open, gate) = mpsc::sync_channel(1);
        let sink = GatedSink {
            written: written.clone(),
            entered: Some(entered_tx),
            gate: Some(gate),
            fail: false,
        };
        (
            sink,
            Gate {
                written,
                entered,
                open,
            },
        )
    }

    impl Write for GatedSink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let (Some(entered), Some(gate)) = (self.entered.take(), self.gate.take()) {
                let _ = entered.send(());
                let _ = gate.recv();
            }
            if self.fail {
                return Err(io::Error::other("disk full"));
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    pub(crate) const PLAIN_NOTES: Notes = Notes {
        dropped: |n, batch| {
            let _ = writeln!(batch, "{}", dropped_text(n));
        },
        write_failed: |_| {},
    };

    #[test]
    fn a_blocked_sink_does_not_block_senders_and_keeps_order() {
        let (sink, gate) = gated_sink();
        let out = LogWriter::spawn("test-log", 4, sink, PLAIN_NOTES).unwrap();
        out.send(b"first\n".to_vec());
        gate.wait_blocked();

        // The writer is stuck in the sink: four lines fill the queue, and the
        // rest are dropped, all without waiting.
        let (done_tx, done_rx) = mpsc::channel();
        let sender = out.clone();
        std::thread::spawn(move || {
            for i in 0..7 {
                sender.send(format!("line {i}\n").into_bytes());
            }
            let _ = done_tx.send(());
        });
        let sent = done_rx.recv_timeout(Duration::from_secs(5));
        assert!(sent.is_ok(), "send blocked on a blocked sink");
        assert_eq!(out.dropped_lines(), 3);
        assert_eq!(gate.text(), "", "nothing written while the sink blocks");

        // No line comes after the gap: it is noted once the queue is empty.
        gate.open();
        assert!(out.flush(Duration::from_secs(10)));
        out.send(b"after\n".to_vec());
        assert!(out.flush(Duration::from_secs(10)));
        assert_eq!(
            gate.text(),
            "first\nline 0\nline 1\nline 2\nline 3\n\
             3 log lines dropped: the log output was too slow\nafter\n"
        );

        // Once noted, a gap is not noted again.
        out.send(b"later\n".to_vec());
        assert!(out.flush(Duration::from_secs(10)));
        assert!(gate.text().ends_with("too slow\nafter\nlater\n"));
        assert_eq!(out.dropped_lines(), 3);
    }

    #[test]
    fn a_gap_is_noted_where_it_happened() {
        // The writer is driven by hand here, to place the gaps exactly.
        let (tx, rx) = mpsc::sync_channel(2);
        let state = Arc::new(State::default());
        let out = LogWriter {
            tx,
            state: state.clone(),
        };
        out.send(b"a\n".to_vec());
        out.send(b"b\n".to_vec());
        out.send(b"lost 1\n".to_vec());
        // The writer takes "a", which makes room for "c": the gap before it
        // goes with it.
        let a = rx.recv().unwrap();
        out.send(b"c\n".to_vec());
        out.send(b"lost 2\n".to_vec());
        out.send(b"lost 3\n".to_vec());
        drop(out);
        let (sink, gate) = gated_sink();
        gate.open();
        run(&rx, sink, &state, PLAIN_NOTES);
        assert_eq!(a.bytes, b"a\n");
        assert_eq!(
            gate.text(),
            "b\n1 log lines dropped: the log output was too slow\n\
             c\n2 log lines dropped: the log output was too slow\n"
        );
    }

    #[test]
    fn lines_are_written_as_they_come() {
        let (sink, gate) = gated_sink();
        gate.open();
        let out = LogWriter::spawn("test-log", 4, sink, PLAIN_NOTES).unwrap();
        // More lines than the queue holds, each one waited for: none dropped.
        for i in 0..20 {
            out.send(format!("{i}\n").into_bytes());
            assert!(out.flush(Duration::from_secs(10)));
            assert!(gate.text().ends_with(&format!("{i}\n")));
        }
        assert_eq!(out.dropped_lines(), 0);
    }

    #[test]
    fn write_errors_are_counted_and_reported_once() {
        use std::sync::atomic::AtomicUsize;
        static REPORTS: AtomicUsize = AtomicUsize::new(0);
        let notes = Notes {
            write_failed: |_| {
                REPORTS.fetch_add(1, Ordering::SeqCst);
            },
            ..PLAIN_NOTES
        };
        let (mut sink, gate) = gated_sink();
        sink.fail = true;
        gate.open();
        let out = LogWriter::spawn("test-log", 4, sink, notes).unwrap();
        for _ in 0..3 {
            out.send(b"lost\n".to_vec());
            assert!(out.flush(Duration::from_secs(10)));
        }
        assert_eq!(out.write_errors(), 3);
        assert_eq!(REPORTS.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn flush_gives_up_on_a_stuck_sink() {
        let (sink, gate) = gated_sink();
        let out = LogWriter::spawn("test-log", 4, sink, PLAIN_NOTES).unwrap();
        out.send(b"stuck\n".to_vec());
        gate.wait_blocked();
        let start = Instant::now();
        assert!(!out.flush(Duration::from_millis(50)));
        assert!(start.elapsed() < Duration::from_secs(5));
        gate.open();
        assert!(out.flush(Duration::from_secs(10)));
    }
}
