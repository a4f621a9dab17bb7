//! Restoring a store partition from its changelog: read_committed, from the local store's
//! checkpoint to the end (the last stable offset: librdkafka reports the end of a read_committed
//! partition there), applied to the local store in chunks, each with the offset it reaches.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::Observer;

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
    let result = read_to_end(client, local, spec, partition, stop, &mut restored);
    let _ = client.unassign();
    result.map(|()| restored)
}

fn read_to_end(
    client: &Observer,
    local: &LocalStore,
    spec: &StoreSpec,
    partition: i32,
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
                "restoring state store `{}` of transform `{}` partition {partition}: {} record(s) so far",
                spec.store,
                spec.transform,
                restored.records
            );
        }
        match client.poll(POLL) {
            None => {}
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
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(error)) => return Err(kafka(error)),
        }
    }
    // The position is past trailing transaction markers, which a next restore need not read again.
    if let Ok(position) = client.position() {
        if let Some(Offset::Offset(next)) = position
            .find_partition(topic, partition)
            .map(|e| e.offset())
        {
            restored.to = restored.to.max(next);
        }
    }
    flush(&mut chunk, restored.to)
}
