//! Consumer lag per assigned partition, from librdkafka's statistics (`statistics.interval.ms`).
//!
//! librdkafka calls the consumer context's `stats` on its own thread; the context is built deep in
//! `kafka::clients`, so the metrics it feeds are registered here once per process instead of being
//! threaded through every client constructor.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use rdkafka::statistics::{Partition, Statistics};

use super::{Metrics, PartitionLabel};

/// The metrics, and the partitions of the previous report.
type Sink = (Arc<Metrics>, Mutex<HashSet<PartitionLabel>>);

static SINK: OnceLock<Sink> = OnceLock::new();

/// Sends the statistics of every consumer of this process to `metrics` (first call wins).
pub fn publish_statistics_to(metrics: &Arc<Metrics>) {
    let _ = SINK.set((Arc::clone(metrics), Mutex::default()));
}

/// Called from the consumer context's `stats` callback.
pub fn observe_statistics(statistics: &Statistics) {
    if let Some((metrics, last)) = SINK.get() {
        record_lag(metrics, last, statistics);
    }
}

/// Replaces the lag gauges with the partitions this consumer fetches now: a revoked partition's
/// gauge goes away instead of freezing at its last value.
///
/// librdkafka's own `consumer_lag` counts from the offsets the consumer committed, and txform's
/// consumer never commits (the producer's transaction does), so it stays -1. The lag here is the
/// last stable offset (read_committed's end) minus the position handed to the copy loop, or, before
/// anything was fetched, minus the committed offset fetched at assignment. A partition whose ends
/// are not known yet is left out until they are.
fn record_lag(metrics: &Metrics, last: &Mutex<HashSet<PartitionLabel>>, statistics: &Statistics) {
    let mut current = HashSet::new();
    for (topic, stats) in &statistics.topics {
        for (&partition, p) in &stats.partitions {
            // -1 is librdkafka's internal "unassigned" partition; "none" is not fetched.
            if partition < 0 || p.fetch_state == "none" {
                continue;
            }
            let Some(lag) = lag_of(p) else { continue };
            let label = PartitionLabel {
                topic: topic.clone(),
                partition,
            };
            metrics.consumer_lag.get_or_create(&label).set(lag);
            current.insert(label);
        }
    }
    let stale: Vec<PartitionLabel> = last
        .lock()
        .map(|mut last| {
            let stale = last.difference(&current).cloned().collect();
            *last = current;
            stale
        })
        .unwrap_or_default();
    for label in stale {
        metrics.consumer_lag.remove(&label);
    }
}

/// See [`record_lag`]; `None` while an end is unknown (librdkafka's negative logical offsets).
fn lag_of(p: &Partition) -> Option<i64> {
    let position = [p.app_offset, p.committed_offset]
        .into_iter()
        .find(|&offset| offset >= 0)?;
    (p.ls_offset >= 0).then(|| (p.ls_offset - position).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(app: i64, committed: i64, ls: i64) -> Partition {
        let mut p: Partition = serde_json::from_value(serde_json::json!({
            "partition": 0, "broker": 1, "leader": 1, "desired": true, "unknown": false,
            "msgq_cnt": 0, "msgq_bytes": 0, "xmit_msgq_cnt": 0, "xmit_msgq_bytes": 0,
            "fetchq_cnt": 0, "fetchq_size": 0, "fetch_state": "active", "query_offset": -1001,
            "next_offset": 0, "app_offset": -1001, "stored_offset": -1001, "committed_offset": -1001,
            "eof_offset": -1001, "lo_offset": 0, "hi_offset": 0, "ls_offset": 0, "consumer_lag": -1,
            "consumer_lag_stored": -1, "txmsgs": 0, "txbytes": 0, "rxmsgs": 0, "rxbytes": 0,
            "msgs": 0, "rx_ver_drops": 0, "msgs_inflight": 0, "next_ack_seq": 0, "next_err_seq": 0,
            "acked_msgid": 0
        }))
        .expect("a librdkafka partition report");
        p.app_offset = app;
        p.committed_offset = committed;
        p.ls_offset = ls;
        p
    }

    #[test]
    fn lag_counts_from_the_position_else_the_committed_offset() {
        assert_eq!(lag_of(&partition(40, 10, 100)), Some(60));
        assert_eq!(lag_of(&partition(-1001, 10, 100)), Some(90));
        assert_eq!(lag_of(&partition(-1001, -1001, 100)), None);
        assert_eq!(lag_of(&partition(40, 10, -1001)), None);
        assert_eq!(lag_of(&partition(100, 10, 100)), Some(0));
    }
}
