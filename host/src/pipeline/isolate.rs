//! Finding the records that make a batch fail, so every good record is committed exactly once and
//! only the failing ones are set aside.
//!
//! The batch is split in halves, each attempted in its own transaction (aborted on failure), in
//! fetch order so every commit covers the next contiguous chunk of each partition; a failing half
//! is split again until single records remain. For k failing records in a batch of n this costs
//! O(k log n) transform calls.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaResult;
use rdkafka::message::Message as _;
use rdkafka::Offset;

use crate::kafka::Consumer;
use crate::plugin::Chain;

use super::attempt::{Attempt, Work};
use super::failure::{Cause, Failure};
use super::retry::{backoff, sleep_unless_stopped};
use super::stats::{AbortCause, Stats};

/// How often a long isolation polls the consumer (with every partition paused) to stay in the group.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(5);

/// How often one isolation step is retried after a Kafka failure before the isolation is abandoned.
const STEP_KAFKA_RETRIES: u32 = 3;

/// A unit of isolation work, in the order it must be committed.
enum Step {
    /// Transform the range; `tried` counts the attempts that already included its records, `alone`
    /// the failed attempts of a single record on its own (it is set aside only once they reach the
    /// retry policy's count, so a flaky dependency never sends a good record to the dead-letter
    /// topic).
    Try {
        range: Range<usize>,
        tried: u32,
        alone: u32,
    },
    /// Set the record at this index aside: it failed alone (or Kafka named it).
    SetAside(usize, u32, Cause),
}

/// Isolates and sets aside the failing records of the whole batch. `source` is the record the last
/// failure of the whole batch named, if any, `attempts` how many whole-batch attempts were made. A
/// record is set aside only after failing on its own `errors.max_retries + 1` times, with backoff.
/// On a Kafka or fatal failure, a rebalance or a stop request, the records not yet committed are
/// rewound and a failure returned.
pub fn isolate(
    attempt: &Attempt<'_, '_>,
    chain: &mut Chain,
    source: Option<usize>,
    attempts: u32,
    stats: &mut Stats,
    stop: &AtomicBool,
) -> Result<(), Failure> {
    let policy = &attempt.pipeline.errors;
    let mut kept_alive = Instant::now();
    let all = attempt.batch.all();
    log::warn!(
        "isolating the failing record(s) of a batch of {} ({}) by bisection",
        all.len(),
        attempt.batch.describe(all.clone())
    );
    let mut pending = VecDeque::new();
    // The whole batch failed `attempts` times: its records are tried again in smaller ranges.
    split(&mut pending, all, attempts, source);
    let mut calls = 0u32;
    let mut kafka_failures = 0u32;
    while let Some(step) = pending.pop_front() {
        let first = match &step {
            Step::Try { range, .. } => range.start,
            Step::SetAside(index, ..) => *index,
        };
        if stop.load(Ordering::SeqCst) {
            rewind(attempt, first)?;
            return Err(Failure::Kafka("stop requested during isolation".into()));
        }
        if kept_alive.elapsed() >= KEEP_ALIVE_EVERY {
            kept_alive = Instant::now();
            if keep_membership(attempt.consumer)
                .map_err(|e| Failure::kafka("keep-alive poll", e))?
            {
                rewind(attempt, first)?;
                return Err(Failure::Kafka("rebalance during isolation".into()));
            }
        }
        calls += 1;
        let (range, work) = match &step {
            Step::Try { range, .. } => (range.clone(), Work::Transform),
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
                stats.aborted(AbortCause::of_records(&cause));
                match step {
                    Step::Try {
                        range,
                        tried,
                        alone,
                    } if range.len() == 1 => {
                        let alone = alone + 1;
                        if alone > policy.max_retries {
                            pending.push_front(Step::SetAside(range.start, tried + 1, cause));
                            continue;
                        }
                        let delay = backoff(alone, policy.initial_backoff, policy.max_backoff);
                        log::warn!(
                            "{} failed on its own (attempt {alone} of {}): {cause}; retrying in {delay:.0?}",
                            attempt.batch.source_of(range.start),
                            policy.max_retries + 1
                        );
                        if !sleep_unless_stopped(delay, stop) {
                            rewind(attempt, range.start)?;
                            return Err(Failure::Kafka("stop requested during isolation".into()));
                        }
                        pending.push_front(Step::Try {
                            range,
                            tried: tried + 1,
                            alone,
                        });
                    }
                    Step::Try { range, tried, .. } => split(&mut pending, range, tried + 1, source),
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
                stats.aborted(AbortCause::of_kafka(&message));
                kafka_failures += 1;
                let delay = Duration::from_millis(100 << kafka_failures);
                log::warn!("isolation step failed on Kafka ({message}); retrying it in {delay:?}");
                std::thread::sleep(delay);
                pending.push_front(step);
            }
            Err(failure) => {
                stats.aborted(AbortCause::of(&failure));
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

/// Queues, in front and in fetch order, the work left after `range` (several records) failed: the
/// record Kafka or the plugin named is tried on its own between its neighbours; without a name the
/// range is tried again in halves.
fn split(pending: &mut VecDeque<Step>, range: Range<usize>, tried: u32, source: Option<usize>) {
    let try_range = |range: Range<usize>| Step::Try {
        range,
        tried,
        alone: 0,
    };
    let Some(culprit) = source.filter(|s| range.contains(s)) else {
        let mid = range.start + range.len() / 2;
        pending.push_front(try_range(mid..range.end));
        pending.push_front(try_range(range.start..mid));
        return;
    };
    if culprit + 1 < range.end {
        pending.push_front(try_range(culprit + 1..range.end));
    }
    pending.push_front(try_range(culprit..culprit + 1));
    if culprit > range.start {
        pending.push_front(try_range(range.start..culprit));
    }
}

/// Keeps this consumer in the group during a long isolation (librdkafka evicts a member that does
/// not poll within `max.poll.interval.ms`): polls with every partition paused, so no record is
/// fetched. Returns true if a rebalance happened, which ends the isolation (its partitions may be
/// someone else's now). No transaction is open here.
fn keep_membership(consumer: &Consumer) -> KafkaResult<bool> {
    let events = consumer.context().events();
    let assignment = consumer.assignment()?;
    consumer.pause(&assignment)?;
    let polled = consumer.poll(Duration::ZERO);
    consumer.resume(&assignment)?;
    if let Some(Ok(message)) = polled {
        // Fetched before the pause took effect: fetch it again later.
        consumer.seek(
            message.topic(),
            message.partition(),
            Offset::Offset(message.offset()),
            Duration::from_secs(10),
        )?;
    }
    Ok(consumer.context().events() != events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(pending: &VecDeque<Step>) -> Vec<String> {
        pending
            .iter()
            .map(|step| match step {
                Step::Try { range, tried, .. } => format!("try {range:?} x{tried}"),
                Step::SetAside(index, tried, _) => format!("set aside {index} x{tried}"),
            })
            .collect()
    }

    #[test]
    fn an_unknown_culprit_splits_the_range_in_halves_left_first() {
        let mut pending = VecDeque::from([Step::Try {
            range: 10..20,
            tried: 1,
            alone: 0,
        }]);
        split(&mut pending, 0..5, 3, None);
        assert_eq!(
            steps(&pending),
            ["try 0..2 x3", "try 2..5 x3", "try 10..20 x1"]
        );
    }

    #[test]
    fn a_named_culprit_is_tried_alone_between_its_neighbours() {
        let mut pending = VecDeque::new();
        split(&mut pending, 0..10, 2, Some(4));
        assert_eq!(
            steps(&pending),
            ["try 0..4 x2", "try 4..5 x2", "try 5..10 x2"]
        );
        let mut pending = VecDeque::new();
        split(&mut pending, 0..10, 2, Some(0));
        assert_eq!(steps(&pending), ["try 0..1 x2", "try 1..10 x2"]);
        // A culprit outside the range is ignored.
        let mut pending = VecDeque::new();
        split(&mut pending, 0..4, 2, Some(9));
        assert_eq!(steps(&pending), ["try 0..2 x2", "try 2..4 x2"]);
    }
}
