//! Finding the records that make a batch fail, so every good record is committed exactly once and
//! only the failing ones are set aside.
//!
//! The batch is split in halves, each attempted in its own transaction (aborted on failure), in
//! fetch order so every commit covers the next contiguous chunk of each partition; a failing half
//! is split again until single records remain. For k failing records in a batch of n this costs
//! O(k log n) transform calls.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::Duration;

use crate::plugin::Chain;

use super::attempt::{Attempt, Work};
use super::failure::{Cause, Failure};
use super::stats::Stats;

/// How often one isolation step is retried after a Kafka failure before the isolation is abandoned.
const STEP_KAFKA_RETRIES: u32 = 3;

/// A unit of isolation work, in the order it must be committed.
enum Step {
    /// Transform the range; `tried` counts the attempts that already included its records.
    Try(Range<usize>, u32),
    /// Set the record at this index aside: it failed alone (or Kafka named it).
    SetAside(usize, u32, Cause),
}

/// Isolates and sets aside the failing records of the whole batch. `cause` and `source` describe
/// the last failure of the whole batch, `attempts` how many whole-batch attempts were made. On a
/// Kafka or fatal failure the records not yet committed are rewound and the failure returned.
pub fn isolate(
    attempt: &Attempt<'_, '_>,
    chain: &mut Chain,
    cause: Cause,
    source: Option<usize>,
    attempts: u32,
    stats: &mut Stats,
) -> Result<(), Failure> {
    let all = attempt.batch.all();
    log::warn!(
        "isolating the failing record(s) of a batch of {} ({}) by bisection",
        all.len(),
        attempt.batch.describe(all.clone())
    );
    let mut pending = VecDeque::new();
    split(&mut pending, all, attempts, cause, source);
    let mut calls = 0u32;
    let mut kafka_failures = 0u32;
    while let Some(step) = pending.pop_front() {
        calls += 1;
        let (range, work) = match &step {
            Step::Try(range, _) => (range.clone(), Work::Transform),
            Step::SetAside(index, attempts, cause) => (
                *index..*index + 1,
                Work::SetAside {
                    cause: cause.clone(),
                    attempts: *attempts,
                },
            ),
        };
        match attempt.run(chain, range.clone(), &work) {
            Ok(done) => {
                kafka_failures = 0;
                stats.committed(done);
            }
            Err(Failure::Records { cause, source }) => {
                stats.aborts += 1;
                match step {
                    Step::Try(range, tried) => split(&mut pending, range, tried + 1, cause, source),
                    // Setting aside runs no transform: a record failure here is Kafka refusing the
                    // dead-letter record itself.
                    Step::SetAside(..) => {
                        rewind(attempt, range.start)?;
                        return Err(Failure::Fatal(format!(
                            "cannot set aside {}: {cause}",
                            attempt.batch.source_of(range.start)
                        )));
                    }
                }
            }
            // A Kafka failure right after a refused record is often librdkafka recovering its
            // idempotence state (an epoch bump on abort): retry the same step a few times before
            // giving the batch back to the main loop, which polls (a rebalance needs that).
            Err(Failure::Kafka(message)) if kafka_failures < STEP_KAFKA_RETRIES => {
                stats.aborts += 1;
                kafka_failures += 1;
                let delay = Duration::from_millis(100 << kafka_failures);
                log::warn!("isolation step failed on Kafka ({message}); retrying it in {delay:?}");
                std::thread::sleep(delay);
                pending.push_front(step);
            }
            Err(failure) => {
                stats.aborts += 1;
                rewind(attempt, range.start)?;
                return Err(failure);
            }
        }
    }
    log::info!("isolation done after {calls} attempt(s)");
    Ok(())
}

/// Rewinds what isolation did not commit; a failed rewind leaves the consumer's position unknown.
fn rewind(attempt: &Attempt<'_, '_>, start: usize) -> Result<(), Failure> {
    attempt.batch.rewind_from(start).map_err(Failure::Fenced)
}

/// Queues, in front and in fetch order, the work left after `range` failed with `cause`: a single
/// record (or the record Kafka named) is set aside; anything else is tried again in halves.
fn split(
    pending: &mut VecDeque<Step>,
    range: Range<usize>,
    tried: u32,
    cause: Cause,
    source: Option<usize>,
) {
    let culprit = match source.filter(|s| range.contains(s)) {
        Some(culprit) => culprit,
        None if range.len() == 1 => range.start,
        None => {
            let mid = range.start + range.len() / 2;
            pending.push_front(Step::Try(mid..range.end, tried));
            pending.push_front(Step::Try(range.start..mid, tried));
            return;
        }
    };
    if culprit + 1 < range.end {
        pending.push_front(Step::Try(culprit + 1..range.end, tried));
    }
    pending.push_front(Step::SetAside(culprit, tried, cause));
    if culprit > range.start {
        pending.push_front(Step::Try(range.start..culprit, tried));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause() -> Cause {
        Cause::sink("boom")
    }

    fn steps(pending: &VecDeque<Step>) -> Vec<String> {
        pending
            .iter()
            .map(|step| match step {
                Step::Try(range, tried) => format!("try {range:?} x{tried}"),
                Step::SetAside(index, tried, _) => format!("set aside {index} x{tried}"),
            })
            .collect()
    }

    #[test]
    fn an_unknown_culprit_splits_the_range_in_halves_left_first() {
        let mut pending = VecDeque::from([Step::Try(10..20, 1)]);
        split(&mut pending, 0..5, 3, cause(), None);
        assert_eq!(
            steps(&pending),
            ["try 0..2 x3", "try 2..5 x3", "try 10..20 x1"]
        );
    }

    #[test]
    fn a_single_failing_record_is_set_aside() {
        let mut pending = VecDeque::new();
        split(&mut pending, 7..8, 4, cause(), None);
        assert_eq!(steps(&pending), ["set aside 7 x4"]);
    }

    #[test]
    fn a_named_culprit_is_set_aside_between_its_neighbours() {
        let mut pending = VecDeque::new();
        split(&mut pending, 0..10, 2, cause(), Some(4));
        assert_eq!(
            steps(&pending),
            ["try 0..4 x2", "set aside 4 x2", "try 5..10 x2"]
        );
        let mut pending = VecDeque::new();
        split(&mut pending, 0..10, 2, cause(), Some(0));
        assert_eq!(steps(&pending), ["set aside 0 x2", "try 1..10 x2"]);
        // A culprit outside the range is ignored.
        let mut pending = VecDeque::new();
        split(&mut pending, 0..4, 2, cause(), Some(9));
        assert_eq!(steps(&pending), ["try 0..2 x2", "try 2..4 x2"]);
    }
}
