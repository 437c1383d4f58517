//! The client's own thread for what an event costs before it can be sent: the machine id,
//! the system facts (read once), scrubbing, the status file and the spool write (fsynced
//! for FATAL). The host's thread only puts the event in a bounded queue, so that a slow or
//! stalled disk never slows the host down; a caller that waits (EXIT, FATAL) waits at most
//! the timeout in all, file I/O included.

use std::sync::OnceLock;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::ThreadId;

/// At most this many events wait for the intake thread; past it, new events are dropped
/// and counted (`dropped_events`), never waited for.
pub const QUEUE: usize = 1024;

pub(crate) type Task = Box<dyn FnOnce() + Send>;

/// Why a task was not queued.
pub(crate) enum Refused {
    /// The queue is full: the thread is behind (a stalled disk).
    Full,
    /// No thread could be started; the task may run on the caller's thread instead.
    NoThread(Task),
}

#[derive(Default)]
pub(crate) struct Intake {
    queue: OnceLock<Option<SyncSender<Task>>>,
    worker: OnceLock<ThreadId>,
}

impl Intake {
    /// True on the intake thread itself (which must not wait for itself).
    pub fn on_worker(&self) -> bool {
        self.worker.get() == Some(&std::thread::current().id())
    }

    /// Queue a task without waiting; the thread starts with the first one. The thread ends
    /// once the client is dropped and the queue is empty.
    pub fn run(&self, task: Task) -> Result<(), Refused> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::sync_channel::<Task>(QUEUE);
            std::thread::Builder::new()
                .name("anonstats-intake".into())
                .spawn(move || rx.into_iter().for_each(|task| task()))
                .ok()
                .map(|handle| {
                    let _ = self.worker.set(handle.thread().id());
                    tx
                })
        });
        let Some(tx) = queue else {
            return Err(Refused::NoThread(task));
        };
        tx.try_send(task).map_err(|e| match e {
            TrySendError::Full(_) => Refused::Full,
            TrySendError::Disconnected(task) => Refused::NoThread(task),
        })
    }
}
