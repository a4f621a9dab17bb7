//! The retry count of the records that keep failing, across batches cut differently.

use std::time::Instant;

use super::batch::{Batch, Span};

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
    /// Counts a record failure of `batch`; a batch that overlaps nothing of the streak starts a new
    /// one.
    pub fn record_failure(&mut self, batch: &Batch<'_>) -> (u32, Instant) {
        let spans = batch.spans(batch.all());
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

    /// Trims what `batch` committed off the failing ranges; the streak ends when none is left.
    pub fn committed(&mut self, batch: &Batch<'_>) {
        self.kafka = 0;
        let spans = batch.spans(batch.all());
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
