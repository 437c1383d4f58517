//! The client's own thread for what an event costs before it can be sent: the machine id,
//! the system facts (read once), scrubbing, the status file and the spool write (fsynced
//! for FATAL). The host's thread only puts the event in a bounded queue, so that a slow or
//! stalled disk never slows the host down; a caller that waits (EXIT, FATAL) waits at most
//! the timeout in all, file I/O included.
//!
//! Queuing an event wakes nothing: while events come, the thread takes what waits every
//! [`DRAIN`], and only a caller that waits (EXIT, FATAL, `sync`, a capture that waits), a
//! queue past [`HIGH_WATER`] or the client's drop wakes it at once. Waking another thread
//! costs the host's thread a system call and, on a busy machine, its core: that was the
//! tail of `capture()`. After [`IDLE`] with nothing to do the thread sleeps until woken, so
//! that an idle host is not woken by a timer; the first event after that wakes it.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;

/// At most this many events wait for the intake thread; past it, new events are dropped
/// and counted (`dropped_events`), never waited for.
pub const QUEUE: usize = 1024;
/// While events come, the intake thread takes what waits at least this often: an event
/// nobody waits for is in the spool (or the local log) this long after it was captured,
/// plus the time its file work takes.
pub const DRAIN: Duration = Duration::from_millis(20);
/// With this many events waiting the thread is woken at once, so that a burst does not
/// fill the queue before the next drain.
pub const HIGH_WATER: usize = QUEUE / 4;
/// After this long with nothing to do the thread sleeps until an event wakes it.
pub const IDLE: Duration = Duration::from_secs(1);

pub(crate) type Task = Box<dyn FnOnce() + Send>;

/// Why a task was not queued.
pub(crate) enum Refused {
    /// The queue is full: the thread is behind (a stalled disk).
    Full,
    /// No thread could be started (or it ended); the task may run on the caller's thread
    /// instead.
    NoThread(Task),
}

#[derive(Default)]
struct State {
    tasks: VecDeque<Task>,
    /// The thread sleeps until woken (no timer).
    parked: bool,
    /// The client is gone: the thread ends once the queue is empty.
    closed: bool,
    /// The thread ended (a task panicked on it).
    gone: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The thread's loop: one task at a time, so that what waits stays within [`QUEUE`].
    fn serve(&self) {
        struct Gone<'a>(&'a Shared);
        impl Drop for Gone<'_> {
            fn drop(&mut self) {
                self.0.lock().gone = true;
            }
        }
        let _gone = Gone(self);
        let mut idle = Duration::ZERO;
        let mut state = self.lock();
        loop {
            if let Some(task) = state.tasks.pop_front() {
                drop(state);
                task();
                idle = Duration::ZERO;
                state = self.lock();
            } else if state.closed {
                return;
            } else if idle >= IDLE {
                state.parked = true;
                state = self
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                state.parked = false;
                idle = Duration::ZERO;
            } else {
                let (s, waited) = self
                    .wake
                    .wait_timeout(state, DRAIN)
                    .unwrap_or_else(PoisonError::into_inner);
                state = s;
                if waited.timed_out() && state.tasks.is_empty() {
                    idle += DRAIN;
                }
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct Intake {
    shared: OnceLock<Option<Arc<Shared>>>,
    worker: OnceLock<ThreadId>,
}

impl Intake {
    /// True on the intake thread itself (which must not wait for itself).
    pub fn on_worker(&self) -> bool {
        self.worker.get() == Some(&std::thread::current().id())
    }

    /// Queue a task without waiting; the thread starts with the first one. `urgent` (a
    /// caller waits for it) wakes the thread at once; otherwise it runs at the next drain.
    pub fn run(&self, task: Task, urgent: bool) -> Result<(), Refused> {
        let shared = self.shared.get_or_init(|| {
            let shared = Arc::new(Shared::default());
            let mine = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("anonstats-intake".into())
                .spawn(move || mine.serve())
                .ok()
                .map(|handle| {
                    let _ = self.worker.set(handle.thread().id());
                    shared
                })
        });
        let Some(shared) = shared else {
            return Err(Refused::NoThread(task));
        };
        let mut state = shared.lock();
        if state.gone {
            return Err(Refused::NoThread(task));
        }
        if state.tasks.len() >= QUEUE {
            return Err(Refused::Full);
        }
        state.tasks.push_back(task);
        let wake = urgent || state.parked || state.tasks.len() >= HIGH_WATER;
        drop(state);
        if wake {
            shared.wake.notify_one();
        }
        Ok(())
    }

    /// Wake the thread if events wait (the host dropped a handle of the client).
    pub fn nudge(&self) {
        if let Some(Some(shared)) = self.shared.get()
            && !shared.lock().tasks.is_empty()
        {
            shared.wake.notify_one();
        }
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        if let Some(Some(shared)) = self.shared.get() {
            shared.lock().closed = true;
            shared.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Long enough for any machine; the tests wait for a state, not for this.
    const PATIENCE: Duration = Duration::from_secs(30);

    fn shared(intake: &Intake) -> Arc<Shared> {
        Arc::clone(intake.shared.get().unwrap().as_ref().unwrap())
    }

    #[test]
    fn a_task_nobody_waits_for_runs_without_any_other_call() {
        let intake = Intake::default();
        let (tx, rx) = mpsc::channel();
        let _ = intake.run(Box::new(move || tx.send(()).unwrap()), false);
        rx.recv_timeout(PATIENCE).expect("ran at a drain");
    }

    #[test]
    fn a_parked_thread_is_woken_by_the_next_task() {
        let intake = Intake::default();
        let (tx, rx) = mpsc::channel();
        let first = tx.clone();
        let _ = intake.run(Box::new(move || first.send(()).unwrap()), false);
        rx.recv_timeout(PATIENCE).unwrap();
        let shared = shared(&intake);
        let mut state = shared.lock();
        while !state.parked {
            drop(state);
            std::thread::sleep(Duration::from_millis(5));
            state = shared.lock();
        }
        drop(state);
        let _ = intake.run(Box::new(move || tx.send(()).unwrap()), false);
        rx.recv_timeout(PATIENCE).expect("woken from its sleep");
    }

    #[test]
    fn the_queue_is_bounded_while_the_thread_is_busy() {
        let intake = Intake::default();
        let (hold, held) = mpsc::channel::<()>();
        let (started, is_started) = mpsc::channel();
        let _ = intake.run(
            Box::new(move || {
                started.send(()).unwrap();
                let _ = held.recv();
            }),
            true,
        );
        is_started.recv_timeout(PATIENCE).unwrap();
        for _ in 0..QUEUE {
            assert!(intake.run(Box::new(|| {}), false).is_ok());
        }
        assert!(matches!(
            intake.run(Box::new(|| {}), false),
            Err(Refused::Full)
        ));
        drop(hold);
    }

    #[test]
    fn the_thread_ends_once_the_intake_is_dropped_and_the_queue_is_empty() {
        let intake = Intake::default();
        let (tx, rx) = mpsc::channel();
        let _ = intake.run(Box::new(move || tx.send(()).unwrap()), false);
        let shared = shared(&intake);
        drop(intake);
        rx.recv_timeout(PATIENCE).expect("what waited ran");
        let mut state = shared.lock();
        while !state.gone {
            drop(state);
            std::thread::sleep(Duration::from_millis(5));
            state = shared.lock();
        }
    }
}
