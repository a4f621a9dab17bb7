//! read_committed readers of the output topic: one that reads concurrently with the whole run (it sees
//! transactions as they commit, across broker restarts, like a real downstream consumer), and fresh
//! ones that read everything once the run is over.
//!
//! A reader is done once every partition reported its end after the last record it delivered, and no
//! record came for [`QUIET`]. The concurrent reader is reassigned at its positions when asked to
//! finish: reassigning restarts its fetchers, so each partition reports its end again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Offset, TopicPartitionList};
use txform_tests::assertions::Content;
use txform_tests::broker::client_config;
use txform_tests::{
    content_of, end_offsets, last_stable_offsets, unique_name, InputSpec, Record, Topic,
};

use crate::catch;

/// No record for this long after every partition reported its end: nothing more is coming.
const QUIET: Duration = Duration::from_secs(2);
/// Reading to the end once the run is over takes at most this long.
const FINISH_TIMEOUT: Duration = Duration::from_secs(180);

/// An output record, reduced to what verification needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Out {
    pub partition: i32,
    pub offset: i64,
    /// The input id (the `test-id` header, else the value's `"id"`); `None` for a foreign record.
    pub id: Option<u64>,
    /// Whether key, value and headers are exactly those seeded for `id` (see [`seeded_content`]).
    pub intact: bool,
    /// Key and value as text (lossy; empty when absent): what a count is checked by.
    pub key: String,
    pub value: String,
}

impl Out {
    /// Reads header names as bytes (rust-rdkafka's accessor panics on a non-UTF-8 name).
    fn of(message: &BorrowedMessage<'_>) -> Out {
        let record = Record::from_message(message);
        let id = record
            .test_id()
            .or_else(|| id_in_value(record.value.as_deref()?));
        Out {
            partition: record.partition,
            offset: record.offset,
            id,
            intact: id.is_some_and(|id| content_of(&record) == seeded_content(id)),
            key: record.key_str(),
            value: record.value_str(),
        }
    }
}

/// Key, value and headers of the input seeded with `id` ([`crate::seed`] writes the standard ones).
pub fn seeded_content(id: u64) -> Content {
    let spec = InputSpec::standard(id, 0);
    (spec.key, spec.value, spec.headers)
}

/// The reader that runs alongside the instances.
pub struct Concurrent {
    finish: Arc<AtomicBool>,
    seen: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<Vec<Out>>>>,
}

impl Concurrent {
    pub fn start(topic: &str, partitions: i32) -> Concurrent {
        let finish = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicU64::new(0));
        let thread = {
            let (finish, seen, topic) = (Arc::clone(&finish), Arc::clone(&seen), topic.to_string());
            std::thread::spawn(move || read(&topic, partitions, &finish, &seen))
        };
        Concurrent {
            finish,
            seen,
            thread: Some(thread),
        }
    }

    /// Records delivered so far.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Whether the reader thread ended (it only does by itself on an error).
    pub fn failed(&self) -> bool {
        self.thread.as_ref().is_some_and(JoinHandle::is_finished)
    }

    /// Reads to the end (call once nothing writes any more) and returns every record delivered.
    pub fn finish(mut self) -> Result<Vec<Out>> {
        self.finish.store(true, Ordering::SeqCst);
        let thread = self
            .thread
            .take()
            .context("the reader was already finished")?;
        thread
            .join()
            .map_err(|_| anyhow!("the concurrent reader panicked"))?
    }
}

impl Drop for Concurrent {
    fn drop(&mut self) {
        // Let the thread end on its own (it is not joined: this happens on error paths only).
        self.finish.store(true, Ordering::SeqCst);
    }
}

/// Reads all of `topic` from the beginning with a fresh read_committed consumer.
pub fn read_fresh(topic: &str, partitions: i32) -> Result<Vec<Out>> {
    read(
        topic,
        partitions,
        &AtomicBool::new(true),
        &AtomicU64::new(0),
    )
}

fn consumer(topic: &str, partitions: i32) -> Result<BaseConsumer> {
    let consumer: BaseConsumer = client_config()
        .set("group.id", unique_name("chaos-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "100")
        .create()
        .context("create a read_committed reader")?;
    assign(&consumer, topic, partitions, &BTreeMap::new())?;
    Ok(consumer)
}

/// Assigns every partition, at `next[p]` or from the beginning.
fn assign(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: i32,
    next: &BTreeMap<i32, i64>,
) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let offset = next
            .get(&p)
            .map_or(Offset::Beginning, |o| Offset::Offset(*o));
        tpl.add_partition_offset(topic, p, offset)
            .with_context(|| format!("add {topic}/{p} to the assignment"))?;
    }
    consumer
        .assign(&tpl)
        .with_context(|| format!("assign {topic}"))
}

/// Reads until `finish` is set and then to the end. With `finish` set from the start, this is a
/// fresh read of everything.
fn read(topic: &str, partitions: i32, finish: &AtomicBool, seen: &AtomicU64) -> Result<Vec<Out>> {
    let consumer = consumer(topic, partitions)?;
    let mut records = Vec::new();
    // Per partition: one past the last delivered offset, when the last record came, when its end was
    // last reported.
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut last_record: BTreeMap<i32, Instant> = BTreeMap::new();
    let mut at_end: BTreeMap<i32, Instant> = BTreeMap::new();
    let mut finishing: Option<Instant> = None;
    let mut errors = 0u64;
    loop {
        if finishing.is_none() && finish.load(Ordering::SeqCst) {
            let now = Instant::now();
            if !records.is_empty() {
                assign(&consumer, topic, partitions, &next)?;
            }
            at_end.clear();
            finishing = Some(now);
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let out = Out::of(&message);
                next.insert(out.partition, out.offset + 1);
                last_record.insert(out.partition, Instant::now());
                records.push(out);
                seen.fetch_add(1, Ordering::Relaxed);
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p, Instant::now());
            }
            Some(Err(error @ KafkaError::MessageConsumptionFatal(_))) => {
                bail!("reading {topic}: {error}")
            }
            // Broker restarts show up as transport errors; librdkafka reconnects by itself.
            Some(Err(error)) => {
                errors += 1;
                log::debug!("reader of {topic}: {error} ({errors} errors so far)");
            }
            None => {}
        }
        let Some(since) = finishing else {
            continue;
        };
        let all_at_end = (0..partitions).all(|p| match at_end.get(&p) {
            Some(end) => *end >= since && last_record.get(&p).is_none_or(|r| end >= r),
            None => false,
        });
        let quiet = last_record
            .values()
            .max()
            .map_or(since, |r| (*r).max(since))
            .elapsed()
            >= QUIET;
        if all_at_end && quiet {
            return Ok(records);
        }
        if since.elapsed() > FINISH_TIMEOUT {
            bail!(
                "reading {topic}: not at the end {FINISH_TIMEOUT:?} after the run ended ({} records; \
                 partitions at their end: {:?}); is a transaction left open?",
                records.len(),
                at_end.keys().collect::<Vec<_>>()
            );
        }
    }
}

/// The `"id"` of a `{"id":123,...}` value.
fn id_in_value(value: &[u8]) -> Option<u64> {
    let value = std::str::from_utf8(value).ok()?;
    let rest = &value[value.find("\"id\":")? + 5..];
    rest.chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// Waits until no transaction is open on `output` (the last stable offsets reached the ends), so the
/// readers can read everything: commit markers are written just after `commit_transaction` returns.
pub fn wait_stable(output: &Topic, deadline: Instant) -> Result<()> {
    let limit = (Instant::now() + Duration::from_secs(60)).min(deadline);
    loop {
        let (stable, end) = catch("read the output's offsets", || {
            (last_stable_offsets(output), end_offsets(output))
        })?;
        if stable == end {
            return Ok(());
        }
        if Instant::now() >= limit {
            bail!("transactions still open on {} after the instances stopped: last stable offsets {stable:?}, ends {end:?}", output.name);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_content_is_the_standard_input_and_the_value_names_the_id() {
        let spec = InputSpec::standard(42, 3);
        assert_eq!(
            seeded_content(42),
            (spec.key, spec.value.clone(), spec.headers)
        );
        assert_ne!(seeded_content(42), seeded_content(43));
        assert_eq!(id_in_value(&spec.value.unwrap_or_default()), Some(42));
        assert_eq!(id_in_value(b"{\"name\":1}"), None);
    }
}
