//! Host threads for tasks, kept for the next task when one ends.
//!
//! Every task runs on a host thread of its own. Starting one costs a
//! `clone` and a stack, and on the ptrace platform also a new stub thread
//! traced by it (the platform keeps a finished context's stub thread for
//! the next context on the same host thread). So a host thread whose task
//! has ended waits a while for another before it exits.

use std::sync::mpsc::{channel, RecvTimeoutError, SendError, Sender};
use std::sync::Mutex;
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

/// How long an idle host thread waits for a task, and how many wait.
const IDLE_WAIT: Duration = Duration::from_secs(10);
const IDLE_MAX: usize = 64;

/// The idle threads, each with the sender of its own job channel, newest
/// last (its stub threads and stack are the warmest).
static IDLE: Mutex<Vec<(u64, Sender<Job>)>> = Mutex::new(Vec::new());

/// Run `job` on an idle host thread, or on a new one, named `name` (at
/// most 15 bytes are kept).
pub(crate) fn spawn(name: String, job: Job) -> std::io::Result<()> {
    let thread_name = name.clone();
    let mut job: Job = Box::new(move || {
        set_name(&name);
        job()
    });
    loop {
        let idle = IDLE.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let Some((_, tx)) = idle else { break };
        match tx.send(job) {
            Ok(()) => return Ok(()),
            // That thread gave up waiting just now: try the next.
            Err(SendError(back)) => job = back,
        }
    }
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || serve(job))
        .map(drop)
}

/// Run jobs until none comes for `IDLE_WAIT`.
fn serve(first: Job) {
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut job = first;
    loop {
        job();
        let (tx, rx) = channel::<Job>();
        {
            let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() >= IDLE_MAX {
                return;
            }
            idle.push((id, tx));
        }
        job = match rx.recv_timeout(IDLE_WAIT) {
            Ok(j) => j,
            Err(RecvTimeoutError::Timeout) => {
                // Leave the list. If this thread is no longer in it, a
                // spawn took its sender and is handing over a job: wait
                // for that one (exiting could drop it with the channel).
                let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
                let listed = idle.len();
                idle.retain(|&(i, _)| i != id);
                if idle.len() < listed {
                    return;
                }
                drop(idle);
                match rx.recv() {
                    Ok(j) => j,
                    Err(_) => return,
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
    }
}

/// Name the calling host thread (what `/proc` on the host and debuggers
/// show).
fn set_name(name: &str) {
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16
    // bytes from `buf`, which outlives the call.
    unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_thread_runs_the_next_job() {
        let (tx, rx) = channel();
        let t = tx.clone();
        let job = move || t.send(std::thread::current().id()).unwrap();
        spawn("first".into(), Box::new(job)).unwrap();
        let first = rx.recv().unwrap();
        // Wait until that thread is idle again.
        while IDLE.lock().unwrap().is_empty() {
            std::thread::yield_now();
        }
        let job = move || tx.send(std::thread::current().id()).unwrap();
        spawn("second".into(), Box::new(job)).unwrap();
        assert_eq!(rx.recv().unwrap(), first);
    }
}
