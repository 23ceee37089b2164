//! The log lines' way to stdout: copied into one bounded buffer by the threads that log, and
//! written out in batches by a thread of its own.
//!
//! A request must never wait for stdout (a full pipe, a stalled log collector), and a line per
//! request must cost the request little. tracing-appender's non-blocking writer, used before,
//! meets the first but not the second: it copies each line into a `Vec` of its own and sends it
//! through a channel, and its writer thread frees it, so every line was an allocation on the
//! request's thread and a free on another (which makes glibc lock the first thread's arena;
//! `perf` on `/livez` showed the allocator's functions among the busiest). Here a line is
//! appended to a shared buffer under a lock held for that copy only, and the writer thread
//! swaps the whole buffer for its empty spare and writes it in one `write`: no allocation per
//! line once the two buffers have grown.
//!
//! When the buffer holds [`LIMIT`] bytes, new lines are dropped and counted
//! ([`LineBuffer::dropped`]) until the writer catches up.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Bytes of log lines that may wait for stdout before new lines are dropped (about 16,000
/// request lines).
pub const LIMIT: usize = 4 * 1024 * 1024;

/// How long the writer thread pauses after each batch, so that lines queue up meanwhile.
///
/// Measured with `perf` under load: writing each line as it came cost a wake-up of the writer
/// and a `write` per line. With the pause, lines logged meanwhile only join the buffer (no one
/// is woken while the writer sleeps) and go out together. After an idle spell the first line is
/// written at once; under load a line waits at most the pause plus one batch.
pub const BATCH_PAUSE: Duration = Duration::from_millis(5);

/// How long [`LineBuffer::close`] waits for the last lines to be written.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The capacity a buffer is trimmed back to after a burst, so that memory stays flat (and
/// enough that a busy service's batches never regrow: 60,000 lines a second of ~250 bytes are
/// ~75 KiB per 5 ms pause).
const KEPT_CAPACITY: usize = 1024 * 1024;

/// The producers' side: a `tracing_subscriber` writer (`MakeWriter`). Cheap to clone.
#[derive(Clone)]
pub struct LineBuffer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LineBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineBuffer")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer when the first line arrives while it waits, and the closer when the
    /// writer has finished.
    changed: Condvar,
    dropped: AtomicU64,
    limit: usize,
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    writer_waiting: bool,
    closing: bool,
    finished: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the buffer half-appended (one
        // `extend_from_slice`), so a poisoned lock is still good to use.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, line: &[u8]) {
        let mut state = self.lock();
        if state.closing || state.pending.len() + line.len() > self.limit {
            drop(state);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Only the first line of a batch can find the writer waiting; waking it costs a system
        // call, so lines that join a batch already queued wake no one.
        let wake = state.writer_waiting && state.pending.is_empty();
        state.pending.extend_from_slice(line);
        drop(state);
        if wake {
            self.changed.notify_all();
        }
    }
}

impl LineBuffer {
    /// Queues one whole line (dropped and counted when the buffer is full or closed).
    pub fn push(&self, line: &[u8]) {
        self.shared.push(line);
    }

    /// Starts the writer thread on `out` (named `thread_name`); lines beyond `limit` bytes
    /// waiting are dropped.
    pub fn spawn(
        out: impl Write + Send + 'static,
        limit: usize,
        thread_name: &str,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            dropped: AtomicU64::new(0),
            limit,
        });
        let writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || write_batches(&writer, out))?;
        Ok(Self { shared })
    }

    /// Lines dropped so far: the buffer was full, the writer was closed, or stdout failed.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Writes out what is queued and stops the writer, waiting at most a second (a stdout that
    /// does not drain must not hold the process's exit). Lines logged afterwards are dropped.
    pub fn close(&self) {
        let shared = &self.shared;
        let mut state = shared.lock();
        state.closing = true;
        shared.changed.notify_all();
        let _ = shared
            .changed
            .wait_timeout_while(state, CLOSE_WAIT, |s| !s.finished);
    }
}

/// The writer thread: waits for lines, swaps the buffer out, writes it, pauses, repeats.
fn write_batches(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        let closing = {
            let mut state = shared.lock();
            while state.pending.is_empty() && !state.closing {
                state.writer_waiting = true;
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
            state.writer_waiting = false;
            std::mem::swap(&mut state.pending, &mut batch);
            state.closing
        };
        if !batch.is_empty() && out.write_all(&batch).and_then(|()| out.flush()).is_err() {
            // Stdout is gone (closed, or a broken pipe): these lines are lost, and counted.
            let lost = batch.iter().filter(|&&b| b == b'\n').count();
            shared.dropped.fetch_add(lost as u64, Ordering::Relaxed);
        }
        batch.clear();
        batch.shrink_to(KEPT_CAPACITY);
        if closing {
            shared.lock().finished = true;
            shared.changed.notify_all();
            return;
        }
        // Not a wait for an event: a deliberate limit on how often this thread wakes.
        std::thread::sleep(BATCH_PAUSE);
    }
}

/// One line's writer, as `tracing_subscriber` asks for one per event. The formatter hands it
/// the whole line in one `write`, so a line is queued or dropped whole.
#[derive(Debug)]
pub struct LineWriter<'a>(&'a LineBuffer);

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.0.shared.push(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineBuffer {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::mpsc;

    /// Stdout as a test sees it: every `write` goes to a channel.
    struct Sink(mpsc::Sender<Vec<u8>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.0.send(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A stdout that blocks until told to go on, then fails.
    struct Stuck(mpsc::Receiver<()>);

    impl Write for Stuck {
        fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
            let _ = self.0.recv();
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn write_line(buffer: &LineBuffer, line: &str) {
        use tracing_subscriber::fmt::MakeWriter;
        buffer.make_writer().write_all(line.as_bytes()).unwrap();
    }

    #[test]
    fn lines_come_out_whole_and_in_order_and_close_writes_the_rest() {
        let (tx, rx) = mpsc::channel();
        let buffer = LineBuffer::spawn(Sink(tx), LIMIT, "test-log").unwrap();
        let lines: Vec<String> = (0..1000).map(|i| format!("line {i}\n")).collect();
        for line in &lines {
            write_line(&buffer, line);
        }
        buffer.close();
        let written: Vec<u8> = rx.try_iter().flatten().collect();
        assert_eq!(String::from_utf8(written).unwrap(), lines.concat());
        assert_eq!(buffer.dropped(), 0);
        // After close: dropped, and counted.
        write_line(&buffer, "late\n");
        assert_eq!(buffer.dropped(), 1);
    }

    #[test]
    fn a_stuck_stdout_drops_lines_beyond_the_limit_without_blocking_the_caller() {
        let (go_on, wait) = mpsc::channel();
        let buffer = LineBuffer::spawn(Stuck(wait), 100, "test-log").unwrap();
        // The writer may have taken the first k lines (1 to 10) to the stuck stdout before the
        // buffer filled; then 100 bytes fit (10 lines of 10) and the rest are dropped.
        for _ in 0..50 {
            write_line(&buffer, "123456789\n");
        }
        let dropped = buffer.dropped();
        assert!((30..=40).contains(&dropped), "dropped {dropped}");
        // Stdout fails: what it held is lost and counted too; close returns.
        go_on.send(()).unwrap();
        go_on.send(()).unwrap();
        buffer.close();
        assert_eq!(buffer.dropped(), 50);
    }
}
