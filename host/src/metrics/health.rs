//! Liveness and readiness, as the copy loop reports them.
//!
//! Liveness is a heartbeat: the loop beats each time round and at the start of every attempt. It
//! is not broker-dependent: while starting (joining the group, initialising transactions, asking
//! the group about a fence) and while inside a Kafka call or a backoff ([`Health::waiting`]), the
//! instance is alive however long that takes. Only a loop that stopped beating outside those waits
//! (a transform that hangs) is not.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shared by the copy loop (writer) and the HTTP server (reader); all atomics.
pub struct Health {
    epoch: Instant,
    liveness_timeout: Duration,
    /// Milliseconds since `epoch` of the last beat.
    last_beat: AtomicU64,
    /// The loop is copying (not starting or answering a fence).
    copying: AtomicBool,
    /// How many waits on something outside the loop are open.
    waiting: AtomicU32,
    transactions_ready: AtomicBool,
    /// State stores are being restored.
    restoring: AtomicBool,
    assigned: AtomicBool,
    fatal: AtomicBool,
}

/// An open wait (see [`Health::waiting`]); ends when dropped.
#[must_use = "the wait ends when this is dropped"]
pub struct Waiting<'a>(&'a Health);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.beat();
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A failed probe says why.
pub type Probe = Result<(), String>;

impl Health {
    pub fn new(liveness_timeout: Duration) -> Health {
        Health {
            epoch: Instant::now(),
            liveness_timeout,
            last_beat: AtomicU64::new(0),
            copying: AtomicBool::new(false),
            waiting: AtomicU32::new(0),
            transactions_ready: AtomicBool::new(false),
            restoring: AtomicBool::new(false),
            assigned: AtomicBool::new(false),
            fatal: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The loop came round.
    pub fn beat(&self) {
        self.last_beat.store(self.now_ms(), Ordering::SeqCst);
    }

    /// The loop waits on Kafka or a backoff until the guard is dropped: alive meanwhile.
    pub fn waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(self)
    }

    /// Copying started (clients ready: `true`) or ended (`false`: a fence is being answered, or
    /// the instance stops).
    pub fn copying(&self, copying: bool) {
        self.beat();
        self.copying.store(copying, Ordering::SeqCst);
        self.transactions_ready.store(copying, Ordering::SeqCst);
        if !copying {
            self.assigned.store(false, Ordering::SeqCst);
        }
    }

    /// Whether the group gave this instance any partition.
    pub fn assigned(&self, any: bool) {
        self.assigned.store(any, Ordering::SeqCst);
    }

    /// State stores are being restored from their changelogs (not ready meanwhile).
    pub fn restoring(&self, restoring: bool) {
        self.restoring.store(restoring, Ordering::SeqCst);
    }

    /// The instance cannot go on.
    pub fn fatal(&self) {
        self.fatal.store(true, Ordering::SeqCst);
    }

    /// `/livez`.
    pub fn live(&self) -> Probe {
        if self.fatal.load(Ordering::SeqCst) {
            return Err("stopped after a fatal error".into());
        }
        if !self.copying.load(Ordering::SeqCst) || self.waiting.load(Ordering::SeqCst) > 0 {
            return Ok(());
        }
        let silent = Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_beat.load(Ordering::SeqCst)),
        );
        if silent > self.liveness_timeout {
            return Err(format!(
                "the copy loop has not come round for {silent:.0?} (metrics.liveness_timeout_secs = {})",
                self.liveness_timeout.as_secs()
            ));
        }
        Ok(())
    }

    /// `/readyz`; `stopping`: a stop was requested.
    pub fn ready(&self, stopping: bool) -> Probe {
        let problems = [
            (stopping, "stopping"),
            (
                self.fatal.load(Ordering::SeqCst),
                "stopped after a fatal error",
            ),
            (
                !self.transactions_ready.load(Ordering::SeqCst),
                "not started: joining the group and initialising transactions",
            ),
            (
                !self.assigned.load(Ordering::SeqCst),
                "no partition assigned by the group",
            ),
            (
                self.restoring.load(Ordering::SeqCst),
                "restoring state stores from their changelogs",
            ),
        ];
        match problems.into_iter().find(|(bad, _)| *bad) {
            Some((_, why)) => Err(why.to_string()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_and_waiting_count_as_alive_only_a_silent_loop_does_not() {
        let health = Health::new(Duration::from_millis(30));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            health.live(),
            Ok(()),
            "starting: alive however long it takes"
        );
        health.copying(true);
        assert_eq!(health.live(), Ok(()));
        {
            let _wait = health.waiting();
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(health.live(), Ok(()), "waiting on Kafka: alive");
        }
        assert_eq!(health.live(), Ok(()), "the end of a wait is a beat");
        std::thread::sleep(Duration::from_millis(50));
        let wedged = health.live().expect_err("a silent loop is not alive");
        assert!(
            wedged.starts_with("the copy loop has not come round for"),
            "{wedged}"
        );
        health.beat();
        assert_eq!(health.live(), Ok(()));
    }

    #[test]
    fn ready_needs_transactions_and_an_assignment_and_no_stop() {
        let health = Health::new(Duration::from_secs(60));
        assert!(health.ready(false).is_err());
        health.copying(true);
        assert_eq!(
            health.ready(false),
            Err("no partition assigned by the group".to_string())
        );
        health.assigned(true);
        assert_eq!(health.ready(false), Ok(()));
        assert_eq!(health.ready(true), Err("stopping".to_string()));
        health.copying(false);
        assert!(health.ready(false).is_err(), "answering a fence: not ready");
        health.copying(true);
        health.assigned(true);
        health.fatal();
        assert!(health.ready(false).is_err());
        assert!(health.live().is_err());
    }
}
