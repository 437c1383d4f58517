//! Work in a detached process: the caller returns at once, and the work outlives it.
//!
//! The standard library cannot fork a process or start a session, hence `libc`. A double
//! fork is used: the intermediate child starts a new session and exits at once, so the
//! grandchild is orphaned straight away (init reaps it) and belongs to no terminal (no
//! SIGHUP, no Ctrl-C); its standard streams are on `/dev/null`, so that a caller reading
//! its output (`$(anonstats send ...)`) does not wait.
//!
//! The caller does not wait for the intermediate child: on a busy machine that wait lasts
//! until the scheduler runs it. This suits a process that exits right after, as `anonstats
//! send` does: its exit hands the finished intermediate child to init, which reaps it. A
//! long-running process should deliver with the client's delivery thread instead, or reap
//! its children.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Run `work` in a detached process and return without waiting for it (see the module
/// documentation for what is left to the caller's exit). Returns false, and
/// runs nothing, when the calling process has other threads (a fork copies only the calling
/// thread, so locks held by the others would stay locked in the child) or a fork fails.
pub fn spawn(work: impl FnOnce()) -> bool {
    if !single_threaded() {
        return false;
    }
    // SAFETY: the process has one thread, so the child is a consistent copy of it.
    match unsafe { libc::fork() } {
        -1 => false,
        0 => {
            // SAFETY: in the single-threaded child; `_exit` skips the caller's exit path
            // (atexit handlers, buffered output) that belongs to the parent.
            unsafe {
                libc::setsid();
                if libc::fork() == 0 {
                    run_detached(work);
                }
                libc::_exit(0)
            }
        }
        _ => true,
    }
}

/// In the grandchild: quiet standard streams, no inherited descriptors, then the work.
fn run_detached(work: impl FnOnce()) -> ! {
    if quiet_stdio() {
        close_inherited();
        let _ = catch_unwind(AssertUnwindSafe(work));
    }
    // SAFETY: ends this process only.
    unsafe { libc::_exit(0) }
}

/// True when this process runs one thread (Linux: `/proc/self/task` has one entry).
fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| tasks.count() == 1)
}

/// Point stdin, stdout and stderr at `/dev/null`.
fn quiet_stdio() -> bool {
    let Ok(null) = File::options().read(true).write(true).open("/dev/null") else {
        return false;
    };
    // SAFETY: dup2 onto the standard descriptors; `null` stays valid for the calls.
    (0..=2).all(|fd| unsafe { libc::dup2(null.as_raw_fd(), fd) } == fd)
}

/// Close every descriptor above stderr: the caller may have passed some without
/// close-on-exec (a pipe it waits on, a lock), which this process must not keep open.
fn close_inherited() {
    #[cfg(target_os = "linux")]
    // SAFETY: close_range only closes descriptors; none above 2 is in use here. Kernels
    // before 5.9 lack it, and then nothing is closed.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
    }
}
