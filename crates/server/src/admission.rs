//! How much capture work may be in flight at once, counted in events and bytes rather
//! than requests: one 20 MB batch of tiny events is 650 000 events. A request takes its
//! share from its headers on (twice the body its `Content-Length` announces while the
//! body is read and decoded, then what its events hold) and keeps it until its commit is
//! on disk, even when the sender gave up meanwhile; past the bound capture answers 503 at
//! once instead of queueing without end while the disk stalls.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The bounds on what is in flight.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub events: usize,
    pub bytes: usize,
}

impl Default for Bounds {
    /// At 2 cores the collector commits about 100k events/s, so 200k events are two
    /// seconds of work; with 64 MB of bodies and decoded events the collector stayed
    /// under 300 MB resident with 768 senders at 3x its capacity (bench/overload).
    fn default() -> Self {
        Bounds {
            events: 200_000,
            bytes: 64 << 20,
        }
    }
}

#[derive(Debug, Default)]
pub struct Admission {
    bounds: Bounds,
    events: AtomicUsize,
    bytes: AtomicUsize,
}

/// What one request holds; given back when dropped.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    events: usize,
    bytes: usize,
}

/// The bound was reached: the request is shed.
#[derive(Debug)]
pub struct Full;

impl Admission {
    pub fn new(bounds: Bounds) -> Arc<Self> {
        Arc::new(Admission {
            bounds,
            ..Default::default()
        })
    }

    /// An empty ticket, to grow as the request's size becomes known.
    pub fn ticket(self: &Arc<Self>) -> Ticket {
        Ticket {
            admission: self.clone(),
            events: 0,
            bytes: 0,
        }
    }

    /// What is in flight now: (events, bytes).
    pub fn in_flight(&self) -> (usize, usize) {
        (
            self.events.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// Whether the events in flight fill their bound, so that a new request is shed
    /// before its body is read.
    pub fn events_full(&self) -> bool {
        self.events.load(Ordering::Relaxed) >= self.bounds.events
    }

    /// Adds `n` to `counter` unless that passes `bound`; a request that holds all there
    /// is (`mine`) is let through whatever its size, so that nothing the size limits
    /// accept is refused for ever.
    fn take(counter: &AtomicUsize, n: usize, bound: usize, mine: usize) -> bool {
        n == 0
            || counter
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                    (held + n <= bound || held == mine).then_some(held + n)
                })
                .is_ok()
    }
}

impl Ticket {
    /// Holds `events` and `bytes` more, or sheds the request.
    pub fn grow(&mut self, events: usize, bytes: usize) -> Result<(), Full> {
        let a = &self.admission;
        if !Admission::take(&a.bytes, bytes, a.bounds.bytes, self.bytes) {
            return Err(Full);
        }
        self.bytes += bytes;
        if !Admission::take(&a.events, events, a.bounds.events, self.events) {
            return Err(Full);
        }
        self.events += events;
        Ok(())
    }

    /// Holds exactly `events` and `bytes`: gives back what is no longer held (a body
    /// once decoded) and takes what more is, or sheds the request.
    pub fn hold(&mut self, events: usize, bytes: usize) -> Result<(), Full> {
        let a = &self.admission;
        if bytes < self.bytes {
            a.bytes.fetch_sub(self.bytes - bytes, Ordering::AcqRel);
            self.bytes = bytes;
        }
        if events < self.events {
            a.events.fetch_sub(self.events - events, Ordering::AcqRel);
            self.events = events;
        }
        self.grow(events - self.events, bytes - self.bytes)
    }

    /// The bytes this request holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission
            .events
            .fetch_sub(self.events, Ordering::AcqRel);
        self.admission.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheds_past_the_bound_and_gives_back_on_drop() {
        let a = Admission::new(Bounds {
            events: 10,
            bytes: 100,
        });
        let mut first = a.ticket();
        first.grow(6, 60).unwrap();
        let mut second = a.ticket();
        assert!(
            second.grow(5, 10).is_err(),
            "16 events passed a bound of 10"
        );
        assert!(
            a.ticket().grow(0, 50).is_err(),
            "110 bytes passed a bound of 100"
        );
        drop(second);
        assert_eq!(a.in_flight(), (6, 60));
        drop(first);
        assert_eq!(a.in_flight(), (0, 0));
    }

    #[test]
    fn hold_gives_back_what_is_no_longer_held_and_takes_what_more_is() {
        let a = Admission::new(Bounds {
            events: 10,
            bytes: 100,
        });
        let mut t = a.ticket();
        t.grow(0, 80).unwrap();
        // Decoded: the body's 80 bytes become 5 events of 30 bytes.
        t.hold(5, 30).unwrap();
        assert_eq!(a.in_flight(), (5, 30));
        let mut other = a.ticket();
        other.grow(5, 60).unwrap();
        assert!(a.events_full());
        assert!(t.hold(6, 30).is_err(), "11 events passed a bound of 10");
        drop(other);
        assert!(!a.events_full());
        t.hold(0, 0).unwrap();
        assert_eq!(a.in_flight(), (0, 0));
    }

    #[test]
    fn a_request_alone_in_flight_passes_whatever_its_size() {
        let a = Admission::new(Bounds {
            events: 10,
            bytes: 100,
        });
        let mut big = a.ticket();
        big.grow(0, 500).unwrap();
        big.grow(650, 0).unwrap();
        assert!(a.ticket().grow(1, 1).is_err());
        drop(big);
        a.ticket().grow(1, 1).unwrap();
    }
}
