//! Restoring a store partition from its changelog: read_committed, from the local store's
//! checkpoint to the changelog's end when the restore began, applied to the local store in chunks,
//! each with the offset it reaches.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::{classify, ErrorClass, Observer};

use super::changelog::StoreSpec;
use super::local::{Change, LocalError, LocalStore};

const POLL: Duration = Duration::from_millis(100);
const WATERMARKS_TIMEOUT: Duration = Duration::from_secs(30);
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// Records applied per local write transaction while restoring.
const CHUNK: usize = 10_000;

/// What one restore did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// Changelog records read (and applied).
    pub records: u64,
    /// The checkpoint it started from, and the offset it reached.
    pub from: i64,
    pub to: i64,
    /// The local checkpoint was past the changelog's end (a re-created changelog): wiped first.
    pub wiped: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("stopped while restoring")]
    Stopped,
    #[error("restoring {topic}/{partition}: {error}")]
    Kafka {
        topic: String,
        partition: i32,
        #[source]
        error: KafkaError,
    },
    #[error(transparent)]
    Local(#[from] LocalError),
}

/// Restores `partition` of `spec`'s store into `local` through `client` (which assigns the
/// changelog partition itself and never joins the group).
pub fn restore(
    client: &Observer,
    local: &LocalStore,
    spec: &StoreSpec,
    partition: i32,
    stop: &AtomicBool,
) -> Result<Restored, RestoreError> {
    let topic = spec.topic.as_str();
    let kafka = |error| RestoreError::Kafka {
        topic: topic.to_string(),
        partition,
        error,
    };
    let mut from = local.checkpoint(topic, partition)?;
    let (_, high) = client
        .fetch_watermarks(topic, partition, WATERMARKS_TIMEOUT)
        .map_err(kafka)?;
    let mut wiped = false;
    if from > high {
        log::warn!(
            "local state of {topic}/{partition} is at changelog offset {from}, past the changelog's \
             end {high} (the topic was re-created?): wiping it and restoring from the start"
        );
        local.wipe(topic, partition)?;
        from = 0;
        wiped = true;
    }
    let mut restored = Restored {
        records: 0,
        from,
        to: from,
        wiped,
    };
    if from >= high {
        return Ok(restored);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(from))
        .map_err(kafka)?;
    client.assign(&assignment).map_err(kafka)?;
    let result = read_to_end(client, local, spec, partition, high, stop, &mut restored);
    let _ = client.unassign();
    result.map(|()| restored)
}

/// Reads until the position reaches `high`, the changelog's end when the restore began. Only the
/// partition's previous owner wrote below it, and that owner's transactions are all decided before
/// the group's offsets for it are stable (KIP-447), so waiting for `high` rather than stopping at the
/// first end-of-partition also waits out a transaction whose commit markers are still being written
/// (read_committed stops at the last stable offset until then), and never reads an undecided one.
fn read_to_end(
    client: &Observer,
    local: &LocalStore,
    spec: &StoreSpec,
    partition: i32,
    high: i64,
    stop: &AtomicBool,
    restored: &mut Restored,
) -> Result<(), RestoreError> {
    let topic = spec.topic.as_str();
    let kafka = |error| RestoreError::Kafka {
        topic: topic.to_string(),
        partition,
        error,
    };
    let started = Instant::now();
    let mut reported = started;
    let mut chunk: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(CHUNK);
    let flush = |chunk: &mut Vec<(Vec<u8>, Option<Vec<u8>>)>, next: i64| {
        let changes = chunk.iter().map(|(key, value)| Change {
            topic,
            partition,
            key,
            value: value.as_deref(),
        });
        local.apply(changes, &[(topic, partition, next)])?;
        chunk.clear();
        Ok::<(), RestoreError>(())
    };
    loop {
        if stop.load(Ordering::SeqCst) {
            return Err(RestoreError::Stopped);
        }
        if reported.elapsed() >= PROGRESS_EVERY {
            reported = Instant::now();
            log::info!(
                "restoring state store `{}` of transform `{}` partition {partition}: {} record(s) \
                 so far, at offset {} of {high} (a transaction still open on the changelog holds \
                 read_committed readers back until it ends)",
                spec.store,
                spec.transform,
                restored.records,
                restored.to
            );
        }
        let at_end = match client.poll(POLL) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => true,
            Some(Ok(message)) => {
                restored.records += 1;
                restored.to = message.offset() + 1;
                // A changelog record always has a key (the host writes them); skip any other.
                if let Some(key) = message.key() {
                    chunk.push((key.to_vec(), message.payload().map(<[u8]>::to_vec)));
                }
                if chunk.len() >= CHUNK {
                    flush(&mut chunk, restored.to)?;
                }
                restored.to >= high
            }
            Some(Err(error)) => match classify(&error) {
                // librdkafka reconnects by itself (its error callback logs it, rate-limited): a
                // broker outage delays the restore, it does not fail it.
                ErrorClass::Retriable | ErrorClass::Abortable => {
                    log::debug!("restoring {topic}/{partition}: {error}");
                    false
                }
                ErrorClass::Fenced | ErrorClass::Fatal => return Err(kafka(error)),
            },
        };
        // The position also moves past transaction markers and aborted records, which are never
        // delivered.
        if at_end {
            restored.to = restored.to.max(position(client, topic, partition));
            if restored.to >= high {
                break;
            }
        }
    }
    flush(&mut chunk, restored.to)
}

/// The consumer's position in `topic`/`partition` (-1 when it has none yet).
fn position(client: &Observer, topic: &str, partition: i32) -> i64 {
    let position = client.position().ok();
    match position
        .as_ref()
        .and_then(|p| p.find_partition(topic, partition))
        .map(|e| e.offset())
    {
        Some(Offset::Offset(next)) => next,
        _ => -1,
    }
}
