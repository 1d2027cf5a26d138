//! Watching a sandbox's process until it exits: its stdout and stderr copied into the caller's
//! sinks, a timeout or a cancellation turned into a stop (the executor's own: a signal to the
//! helper, `kill` through the runtime), then SIGKILL after a grace period. One mechanism for
//! both executors.

use std::io::{self, Read, Write};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{CancelToken, ExecError, Output, sys};

/// How long a stopped sandbox has to go before its process is killed.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// How the supervision of a process ended.
pub(super) struct Supervised {
    /// The process's exit (waited for), or why waiting failed.
    pub status: io::Result<std::process::ExitStatus>,
    /// A timeout or a cancellation that ended the run.
    pub stopped: Option<ExecError>,
    /// The first error copying the process's output.
    pub copied: Option<io::Error>,
}

/// Copies `child`'s stdout and stderr into `output` until it exits, with `also` running beside
/// (reading the helper's reports, say); on a timeout or a cancellation calls `stop` with its pid
/// once, then kills it after the grace period.
pub(super) fn supervise(
    child: &mut Child,
    output: Output<'_>,
    cancel: &CancelToken,
    timeout: Option<Duration>,
    stop: impl FnOnce(libc::pid_t),
    also: impl FnOnce() + Send,
) -> Supervised {
    let pid = child.id() as libc::pid_t;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let (out, err) = (output.stdout, output.stderr);
    let exited = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let out_thread = scope.spawn(|| stdout.map_or(Ok(()), |s| copy_all(s, out)));
        let err_thread = scope.spawn(|| stderr.map_or(Ok(()), |s| copy_all(s, err)));
        let also_thread = scope.spawn(also);
        let waiter = scope.spawn(|| {
            let res = sys::wait_exited_keep(pid);
            exited.store(true, Ordering::SeqCst);
            cancel.wake();
            res
        });
        let cancelled_early = cancel.wait_until(timeout, || exited.load(Ordering::SeqCst));
        let timed_out = !cancelled_early && !exited.load(Ordering::SeqCst);
        let cancelled = cancel.is_cancelled() && !exited.load(Ordering::SeqCst);
        if timed_out || cancelled {
            stop(pid);
            cancel.wait_for(CANCEL_GRACE, || exited.load(Ordering::SeqCst));
            if !exited.load(Ordering::SeqCst) {
                let _ = sys::kill(pid, sys::SIGKILL);
            }
        }
        let waited = waiter.join().unwrap_or_else(|_| Err(io::Error::other("waiter thread panicked")));
        let status = waited.and(child.wait());
        let copied = [out_thread.join(), err_thread.join()]
            .into_iter()
            .map(|r| r.unwrap_or_else(|_| Err(io::Error::other("output thread panicked"))))
            .find_map(Result::err);
        let _ = also_thread.join();
        let stopped = match (timed_out, cancelled) {
            (true, _) => Some(ExecError::TimedOut { timeout: timeout.unwrap_or_default() }),
            (_, true) => Some(ExecError::Cancelled),
            _ => None,
        };
        Supervised { status, stopped, copied }
    })
}

/// Copies a pipe into a sink; after a sink error keeps draining (so the process never blocks
/// on a full pipe) and returns the first error.
fn copy_all(mut from: impl Read, to: &mut (dyn Write + Send)) -> io::Result<()> {
    let mut buf = vec![0u8; 64 << 10];
    let mut first_err = None;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                first_err.get_or_insert(e);
                break;
            }
        };
        if first_err.is_none()
            && let Err(e) = to.write_all(&buf[..n])
        {
            first_err = Some(e);
        }
    }
    if first_err.is_none()
        && let Err(e) = to.flush()
    {
        first_err = Some(e);
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
