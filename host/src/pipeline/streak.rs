//! The retry count of the records that keep failing, across batches cut differently.

use std::collections::BTreeMap;
use std::time::Instant;

use super::batch::Span;

/// The offsets of each (topic, partition) of a batch, as `Batch::spans` gives them.
pub type Spans<'a> = BTreeMap<(&'a str, i32), Span>;

/// Consecutive failures of the records that keep failing.
///
/// After an abort only the failed batch's partitions are rewound, and the next batches may cut the
/// same records differently (other partitions' records first, or only a prefix of the failed range),
/// so commits in between must not reset the count, or a poison record would be retried forever. The
/// streak therefore follows the failed offset ranges: commits trim them, a failure that overlaps
/// them narrows them and counts, and the streak ends when nothing of them is left.
#[derive(Default)]
pub struct Streak {
    /// Record failures of the records in `failing`: they count against `errors.max_retries`.
    pub records: u32,
    /// When the first of them happened, for `errors.max_retry_time_ms`.
    since: Option<Instant>,
    /// (topic, partition) -> offsets first..=last not yet committed that every failing attempt
    /// contained.
    failing: Vec<((String, i32), Span)>,
    /// Failures of Kafka itself: they only lengthen the backoff; reset by any commit.
    pub kafka: u32,
}

impl Streak {
    /// Counts a record failure of a batch spanning `spans`; a batch that overlaps nothing of the
    /// streak starts a new one.
    pub fn record_failure(&mut self, spans: Spans<'_>) -> (u32, Instant) {
        let overlap: Vec<((String, i32), Span)> = self
            .failing
            .iter()
            .filter_map(|((topic, partition), old)| {
                let new = spans.get(&(topic.as_str(), *partition))?;
                let first = old.first.max(new.first);
                let last = old.last.min(new.last);
                (first <= last).then(|| ((topic.clone(), *partition), Span { first, last }))
            })
            .collect();
        if overlap.is_empty() {
            self.records = 0;
            self.since = None;
            self.failing = spans
                .into_iter()
                .map(|((topic, partition), span)| ((topic.to_string(), partition), span))
                .collect();
        } else {
            self.failing = overlap;
        }
        self.records += 1;
        (self.records, *self.since.get_or_insert_with(Instant::now))
    }

    /// Trims what a batch spanning `spans` committed off the failing ranges; the streak ends when
    /// none is left.
    pub fn committed(&mut self, spans: Spans<'_>) {
        self.kafka = 0;
        self.failing.retain_mut(|((topic, partition), failing)| {
            match spans.get(&(topic.as_str(), *partition)) {
                Some(done) if done.first <= failing.first && done.last >= failing.first => {
                    failing.first = done.last + 1;
                    failing.first <= failing.last
                }
                _ => true,
            }
        });
        if self.failing.is_empty() {
            self.records = 0;
            self.since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans<'a>(parts: &[(&'a str, i32, i64, i64)]) -> Spans<'a> {
        parts
            .iter()
            .map(|&(topic, partition, first, last)| ((topic, partition), Span { first, last }))
            .collect()
    }

    fn failing(streak: &Streak) -> Vec<(&str, i32, i64, i64)> {
        streak
            .failing
            .iter()
            .map(|((t, p), s)| (t.as_str(), *p, s.first, s.last))
            .collect()
    }

    #[test]
    fn a_poison_record_counts_on_across_batches_cut_differently_and_commits_in_between() {
        let mut streak = Streak::default();
        let (n, since) = streak.record_failure(spans(&[("in", 0, 0, 9), ("in", 1, 5, 7)]));
        assert_eq!(n, 1);
        assert_eq!(failing(&streak), [("in", 0, 0, 9), ("in", 1, 5, 7)]);
        // Only a prefix of partition 0 fails next: the streak narrows to it and counts.
        let (n, again) = streak.record_failure(spans(&[("in", 0, 0, 4), ("in", 2, 0, 3)]));
        assert_eq!((n, again), (2, since));
        assert_eq!(failing(&streak), [("in", 0, 0, 4)]);
        // Other partitions commit: no reset.
        streak.kafka = 3;
        streak.committed(spans(&[("in", 1, 5, 9), ("in", 2, 0, 3)]));
        assert_eq!((streak.records, streak.kafka), (2, 0));
        // The records before the poison one commit: trimmed, still counting.
        streak.committed(spans(&[("in", 0, 0, 2)]));
        assert_eq!(failing(&streak), [("in", 0, 3, 4)]);
        assert_eq!(streak.records, 2);
        let (n, still) = streak.record_failure(spans(&[("in", 0, 3, 3)]));
        assert_eq!((n, still), (3, since));
        assert_eq!(failing(&streak), [("in", 0, 3, 3)]);
        // The poison record itself committed (dead-lettered): the streak ends.
        streak.committed(spans(&[("in", 0, 3, 8)]));
        assert_eq!(failing(&streak), []);
        assert_eq!(streak.records, 0);
        let (n, fresh) = streak.record_failure(spans(&[("in", 0, 9, 9)]));
        assert_eq!(n, 1);
        assert!(fresh > since);
    }

    #[test]
    fn a_failure_elsewhere_starts_a_new_streak() {
        let mut streak = Streak::default();
        streak.record_failure(spans(&[("in", 0, 0, 9)]));
        streak.record_failure(spans(&[("in", 0, 5, 12)]));
        assert_eq!(failing(&streak), [("in", 0, 5, 9)]);
        // Same partition, offsets past the failing ones; and another topic's same partition.
        let (n, _) = streak.record_failure(spans(&[("in", 0, 10, 12), ("other", 0, 5, 9)]));
        assert_eq!(n, 1);
        assert_eq!(failing(&streak), [("in", 0, 10, 12), ("other", 0, 5, 9)]);
    }

    #[test]
    fn a_commit_that_does_not_reach_the_failing_offsets_leaves_them() {
        let mut streak = Streak::default();
        streak.record_failure(spans(&[("in", 0, 4, 6)]));
        // Ends before them, or starts after their first offset (cannot pass over it): kept whole.
        streak.committed(spans(&[("in", 0, 0, 3)]));
        streak.committed(spans(&[("in", 0, 5, 6)]));
        assert_eq!(failing(&streak), [("in", 0, 4, 6)]);
        assert_eq!(streak.records, 1);
        // Covers the first of them exactly.
        streak.committed(spans(&[("in", 0, 0, 4)]));
        assert_eq!(failing(&streak), [("in", 0, 5, 6)]);
    }
}
