//! Counting what the pipeline does, and the periodic throughput line.
//!
//! The counters are the Prometheus metrics themselves ([`Metrics`]): the `stats:` line and a
//! scrape read the same numbers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelValue;

use crate::metrics::{CauseLabel, Metrics};

use super::attempt::Committed;
use super::failure::{Cause, Failure};

/// Why a transaction was aborted: the `cause` label of `txform_transactions_aborted_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum AbortCause {
    /// A transform returned an error for the batch.
    plugin_error,
    /// A transform panicked.
    panic,
    /// A transform rejected a record under `errors.on_failure = "stop"`.
    rejection,
    /// Kafka refused an output record (too large, invalid topic...).
    refused_record,
    /// Kafka itself failed (unreachable, time-out); retried without bound.
    kafka,
    /// A rebalance ended an isolation.
    rebalance,
    /// Kafka fenced this instance.
    fenced,
    /// The instance cannot go on.
    fatal,
}

impl AbortCause {
    pub const ALL: [AbortCause; 8] = [
        AbortCause::plugin_error,
        AbortCause::panic,
        AbortCause::rejection,
        AbortCause::refused_record,
        AbortCause::kafka,
        AbortCause::rebalance,
        AbortCause::fenced,
        AbortCause::fatal,
    ];

    pub fn of(failure: &Failure) -> AbortCause {
        match failure {
            Failure::Records { cause, .. } => AbortCause::of_records(cause),
            Failure::Kafka(message) => AbortCause::of_kafka(message),
            Failure::Fenced(_) => AbortCause::fenced,
            Failure::Fatal(_) => AbortCause::fatal,
        }
    }

    /// Reads the cause the way `Cause` is written: by txform's sink, from a rejection, or from the
    /// plugin's `CallError` (whose display marks a panic); the unit tests pin those spellings.
    pub fn of_records(cause: &Cause) -> AbortCause {
        if cause == &Cause::sink(&cause.error) {
            AbortCause::refused_record
        } else if cause.error.starts_with("rejected: ") {
            AbortCause::rejection
        } else if cause.error.starts_with("panicked: ") {
            AbortCause::panic
        } else {
            AbortCause::plugin_error
        }
    }

    pub fn of_kafka(message: &str) -> AbortCause {
        if message.contains("rebalance") {
            AbortCause::rebalance
        } else {
            AbortCause::kafka
        }
    }
}

/// How an attempt ended: the `outcome` label of `txform_transaction_duration_seconds`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    committed,
    aborted,
}

/// The counters, plus the snapshot of the last report for rates.
pub struct Stats {
    metrics: Arc<Metrics>,
    interval: Duration,
    last_report: Instant,
    last_in: u64,
    last_out: u64,
}

impl Stats {
    pub fn new(interval: Duration, metrics: Arc<Metrics>) -> Self {
        Stats {
            metrics,
            interval,
            last_report: Instant::now(),
            last_in: 0,
            last_out: 0,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Counts a committed attempt.
    pub fn committed(&mut self, done: Committed) {
        let m = &self.metrics;
        m.records_consumed.inc_by(done.records_in as u64);
        m.records_produced.inc_by(done.produced as u64);
        m.records_dead_lettered.inc_by(done.dead_lettered as u64);
        m.records_skipped.inc_by(done.skipped as u64);
        m.transactions_committed.inc();
    }

    /// Counts an aborted attempt.
    pub fn aborted(&mut self, cause: AbortCause) {
        self.metrics
            .transactions_aborted
            .get_or_create(&CauseLabel { cause })
            .inc();
    }

    pub fn retried(&mut self) {
        self.metrics.retries.inc();
    }

    pub fn batch(&mut self, records: usize) {
        self.metrics.batch_records.observe(records as f64);
    }

    pub fn records_in(&self) -> u64 {
        self.metrics.records_consumed.get()
    }

    pub fn records_out(&self) -> u64 {
        self.metrics.records_produced.get()
    }

    /// Logs the throughput line at info when the interval has passed.
    pub fn maybe_report(&mut self) {
        let elapsed = self.last_report.elapsed();
        if elapsed >= self.interval {
            let secs = elapsed.as_secs_f64().max(1e-3);
            let (records_in, records_out) = (self.records_in(), self.records_out());
            log::info!(
                "stats: records in={records_in} ({:.0}/s) out={records_out} ({:.0}/s) {}",
                (records_in - self.last_in) as f64 / secs,
                (records_out - self.last_out) as f64 / secs,
                self.rest()
            );
            self.last_report = Instant::now();
            self.last_in = records_in;
            self.last_out = records_out;
        }
    }

    /// The final totals, logged at shutdown.
    pub fn summary(&self) -> String {
        format!(
            "totals: records in={} out={} {}",
            self.records_in(),
            self.records_out(),
            self.rest()
        )
    }

    fn rest(&self) -> String {
        let m = &self.metrics;
        format!(
            "transactions={} aborts={} retries={} dead_lettered={} skipped={}",
            m.transactions_committed.get(),
            m.aborts(),
            m.retries.get(),
            m.records_dead_lettered.get(),
            m.records_skipped.get()
        )
    }
}

#[cfg(test)]
mod tests {
    use txform_plugin_api::CallError;

    use super::*;
    use crate::plugin::StageFailure;

    fn stage_failure(error: CallError) -> Failure {
        Failure::from(StageFailure {
            stage: "parse".into(),
            plugin: "json".into(),
            version: "1.0".into(),
            error,
        })
    }

    #[test]
    fn abort_causes_read_the_failures_as_they_are_written() {
        let cause = |f: Failure| AbortCause::of(&f);
        assert_eq!(
            cause(stage_failure(CallError::failed("bad json"))),
            AbortCause::plugin_error
        );
        assert_eq!(
            cause(stage_failure(CallError::panicked("index out of bounds"))),
            AbortCause::panic
        );
        let mut rejected = Cause::sink("x");
        rejected.stage = "parse".into();
        rejected.error = "rejected: not json".into();
        assert_eq!(AbortCause::of_records(&rejected), AbortCause::rejection);
        let refused = Failure::Records {
            cause: Cause::sink("Kafka refused an output (message too large)"),
            source: None,
        };
        assert_eq!(cause(refused), AbortCause::refused_record);
        assert_eq!(
            cause(Failure::Kafka("rebalance during isolation".into())),
            AbortCause::rebalance
        );
        assert_eq!(
            cause(Failure::Kafka("commit_transaction: timed out".into())),
            AbortCause::kafka
        );
        assert_eq!(cause(Failure::Fenced("x".into())), AbortCause::fenced);
        assert_eq!(cause(Failure::Fatal("x".into())), AbortCause::fatal);
    }
}
