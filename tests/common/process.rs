//! Hang guards, child processes (this test binary run again on one test) and the process's
//! memory figures.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs `work` on its own thread and fails the test if it has not finished within `limit` (a
/// hang or a deadlock), instead of hanging the test run; a panic of `work` is raised again
/// here. A thread that hangs is left behind, blocked, and dies with the process.
#[track_caller]
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            handle.join().unwrap();
            v
        }
        // The worker panicked: raise its panic again.
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker ended without sending"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: not finished after {limit:?} (hung or deadlocked)")
        }
    }
}

/// A child process, killed and reaped when dropped (a failing test leaves none behind).
#[derive(Debug)]
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// This test binary, to be run on the test `test` alone as a child process (ignored tests
/// included, output not captured); the caller adds what tells it what to do. (With
/// `--test-threads=1` libtest prints `test <name> ... ` before the test's own first line.)
pub fn this_test(test: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--exact", test, "--nocapture", "--include-ignored"]);
    command
}

/// What a child process was told to do: the `|`-separated parts of the environment variable
/// `env`, or `None` (with a message) where it is not set: the test is then not running as the
/// child of another one, and does nothing.
pub fn child_args(env: &str) -> Option<Vec<String>> {
    let Ok(spec) = std::env::var(env) else {
        eprintln!("{env} is not set: this test is a child process of another one");
        return None;
    };
    Some(spec.split('|').map(str::to_string).collect())
}

/// The longest a [`Child`] may take to say something or to end.
pub const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// A child process whose output (both streams) is collected line by line; killed and reaped
/// when dropped.
pub struct Child {
    process: KillOnDrop,
    output: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    what: String,
}

/// Collects the lines of a child's output stream into `output` until it closes.
fn drain(
    stream: impl BufRead + Send + 'static,
    output: &Arc<Mutex<Vec<String>>>,
) -> JoinHandle<()> {
    let output = Arc::clone(output);
    std::thread::spawn(move || {
        for line in stream.lines().map_while(Result::ok) {
            output.lock().unwrap().push(line);
        }
    })
}

impl Child {
    /// Starts `command` with both output streams collected; `what` names it in failures.
    pub fn spawn(mut command: Command, what: &str) -> std::io::Result<Child> {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut process = KillOnDrop(command.spawn()?);
        let output = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            drain(BufReader::new(process.0.stdout.take().unwrap()), &output),
            drain(BufReader::new(process.0.stderr.take().unwrap()), &output),
        ];
        Ok(Child {
            process,
            output,
            readers,
            what: what.to_string(),
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.process.0.id()
    }

    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// How many lines so far start with `prefix`.
    pub fn count_lines(&self, prefix: &str) -> usize {
        let output = self.output.lock().unwrap();
        output.iter().filter(|l| l.starts_with(prefix)).count()
    }

    /// The exit status, if the child has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.process.0.try_wait().unwrap()
    }

    /// Waits for a line starting with `prefix`; fails if the child ends first or takes longer
    /// than [`CHILD_LIMIT`].
    pub fn wait_for_line(&mut self, prefix: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| l.starts_with(prefix)) {
                return line;
            }
            if let Some(status) = self.try_wait() {
                self.join_readers();
                panic!(
                    "{} ended ({status}) before saying {prefix:?}: {:#?}",
                    self.what,
                    self.lines()
                );
            }
            assert!(
                start.elapsed() < CHILD_LIMIT,
                "{}: no {prefix:?} after {CHILD_LIMIT:?}: {:#?}",
                self.what,
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
    }

    /// Kills the child and returns its whole output.
    pub fn kill(mut self) -> Vec<String> {
        self.process.0.kill().unwrap();
        self.process.0.wait().unwrap();
        self.join_readers();
        self.lines()
    }

    /// Waits for the child to end (killing it after [`CHILD_LIMIT`]); returns how it ended
    /// and its whole output.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.try_wait() {
                break status;
            }
            if start.elapsed() > CHILD_LIMIT {
                let _ = self.process.0.kill();
                let _ = self.process.0.wait();
                panic!(
                    "{} still running after {CHILD_LIMIT:?}: {:#?}",
                    self.what,
                    self.lines()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.join_readers();
        (status, self.lines())
    }

    /// Waits for the child, which must succeed; returns its output.
    pub fn succeed(self) -> Vec<String> {
        let what = self.what.clone();
        let (status, lines) = self.finish();
        assert!(status.success(), "{what} failed ({status}): {lines:#?}");
        lines
    }
}

/// A field of `/proc/self/status` in bytes (`VmRSS:`, `VmHWM:`), or `None` without `/proc`.
pub fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib << 10)
}

/// This process's peak resident set size (`VmHWM`) in bytes.
pub fn peak_rss() -> u64 {
    status_bytes("VmHWM:").expect("VmHWM in /proc/self/status")
}
