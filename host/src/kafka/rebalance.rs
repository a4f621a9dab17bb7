//! Tracks rebalances so the pipeline can drop what it fetched for partitions it may no longer own,
//! and ends the open transaction before partitions are given up.
//!
//! librdkafka runs these callbacks inside `poll`, on the pipeline's own thread. The pipeline polls
//! between the chunks of a streamed batch, so a transaction may be open when a revocation arrives:
//! the registered [`RevokeHook`] ends it (commit or abort) before the callback returns, so no
//! transaction outlives the revocation of a partition it covers.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;

use super::client_log::ClientLog;

use super::errors::describe_partitions;

/// What must happen before this consumer gives partitions up: the pipeline ends its open
/// transaction here. Called on the pipeline's thread, inside `poll`.
pub trait RevokeHook: Send + Sync {
    /// Partitions are about to go (a revocation, or an assignment error, after which rust-rdkafka
    /// unassigns everything); `consumer` is still in the generation that fetched them.
    fn revoking(&self, consumer: &BaseConsumer<RebalanceTracker>);
}

/// Counts rebalance events and remembers revoked partitions; the pipeline compares the count before
/// and after each poll while collecting a batch.
#[derive(Default)]
pub struct RebalanceTracker {
    events: AtomicU64,
    revoked: Mutex<HashSet<(String, i32)>>,
    /// Registered while a transaction is open.
    hook: Mutex<Option<Arc<dyn RevokeHook>>>,
    /// librdkafka's errors and logs, rate-limited.
    log: ClientLog,
}

impl RebalanceTracker {
    /// How many assignment changes (revocations, assignments, errors) this consumer has seen.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::SeqCst)
    }

    /// Partitions revoked since the last call. Their fetch positions restart from the committed
    /// offsets if they come back, so the pipeline must not seek them.
    pub fn take_revoked(&self) -> HashSet<(String, i32)> {
        match self.revoked.lock() {
            Ok(mut revoked) => std::mem::take(&mut *revoked),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    /// Registers (or with `None` removes) what runs before partitions are revoked.
    pub fn set_revoke_hook(&self, hook: Option<Arc<dyn RevokeHook>>) {
        *self.hook.lock().unwrap_or_else(|p| p.into_inner()) = hook;
    }

    /// Runs the registered hook, at most once per registration.
    fn run_hook(&self, consumer: &BaseConsumer<Self>) {
        let hook = self.hook.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(hook) = hook {
            hook.revoking(consumer);
        }
    }
}

impl ClientContext for RebalanceTracker {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }

    /// Consumer lag per partition (only when `statistics.interval.ms` is set: `[metrics]` on).
    fn stats(&self, statistics: Statistics) {
        crate::metrics::observe_statistics(&statistics);
    }
}

impl ConsumerContext for RebalanceTracker {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.events.fetch_add(1, Ordering::SeqCst);
        match rebalance {
            Rebalance::Revoke(tpl) => {
                log::info!("partitions revoked: {}", describe_partitions(tpl));
                self.run_hook(consumer);
                let mut revoked = match self.revoked.lock() {
                    Ok(revoked) => revoked,
                    Err(poisoned) => poisoned.into_inner(),
                };
                for element in tpl.elements() {
                    revoked.insert((element.topic().to_string(), element.partition()));
                }
            }
            Rebalance::Assign(tpl) => {
                log::info!("partitions assigned: {}", describe_partitions(tpl))
            }
            Rebalance::Error(e) => {
                log::warn!("rebalance error: {e}");
                self.run_hook(consumer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::Consumer as _;
    use rdkafka::TopicPartitionList;

    use super::*;

    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl RevokeHook for Counting {
        fn revoking(&self, _consumer: &BaseConsumer<RebalanceTracker>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A consumer that never connects: only its context is used.
    fn offline() -> BaseConsumer<RebalanceTracker> {
        ClientConfig::new()
            .set("group.id", "unit")
            .set("bootstrap.servers", "127.0.0.1:1")
            .create_with_context(RebalanceTracker::default())
            .expect("an offline consumer")
    }

    #[test]
    fn the_hook_runs_once_before_a_revocation_or_an_error_never_on_an_assignment() {
        let consumer = offline();
        let tracker = consumer.context();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("t", 0);
        let hook = Arc::new(Counting::default());
        tracker.set_revoke_hook(Some(Arc::clone(&hook) as Arc<dyn RevokeHook>));
        tracker.pre_rebalance(&consumer, &Rebalance::Assign(&tpl));
        assert_eq!(
            hook.0.load(Ordering::SeqCst),
            0,
            "an assignment keeps it open"
        );
        tracker.pre_rebalance(&consumer, &Rebalance::Revoke(&tpl));
        tracker.pre_rebalance(&consumer, &Rebalance::Revoke(&tpl));
        assert_eq!(hook.0.load(Ordering::SeqCst), 1, "once per registration");
        assert_eq!(
            tracker.take_revoked(),
            HashSet::from([("t".to_string(), 0)])
        );

        tracker.set_revoke_hook(Some(Arc::clone(&hook) as Arc<dyn RevokeHook>));
        let error = KafkaError::Rebalance(rdkafka::types::RDKafkaErrorCode::Fail);
        tracker.pre_rebalance(&consumer, &Rebalance::Error(error));
        assert_eq!(
            hook.0.load(Ordering::SeqCst),
            2,
            "an assignment error unassigns all"
        );
        tracker.set_revoke_hook(Some(Arc::clone(&hook) as Arc<dyn RevokeHook>));
        tracker.set_revoke_hook(None);
        tracker.pre_rebalance(&consumer, &Rebalance::Revoke(&tpl));
        assert_eq!(hook.0.load(Ordering::SeqCst), 2, "removed");
        assert_eq!(tracker.events(), 5);
    }
}
