//! Producing a chain's outputs and dead-letter records.
//!
//! Everything a plugin chose is checked before it reaches rust-rdkafka, which panics on some of it
//! (a topic name with a NUL byte) and would retry other parts forever (a topic name the broker
//! refuses); header names are written as bytes (see `kafka::headers`). A forwarded source record is
//! produced from its fetched message (key, value, header list, timestamp), as a dead-letter record
//! is, without an `OutRecord` in between.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{
    BorrowedHeaders, BorrowedMessage, Header as KafkaHeader, Message, OwnedHeaders,
};
use rdkafka::producer::{BaseRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use txform_plugin_api::{OutHeader, OutRecord};

use crate::plugin::Produced;

use crate::config::topic_name_problem;
use crate::kafka::headers::{self, RawHeader};
use crate::kafka::Producer;

use super::batch::Batch;
use super::failure::Cause;

/// An output that could not be enqueued; `record` is the index of its source record in the batch.
#[derive(Debug, thiserror::Error)]
pub enum ProduceFailure {
    #[error("producing to {topic}: {error}")]
    Kafka {
        record: usize,
        topic: String,
        #[source]
        error: KafkaError,
    },
    /// The plugin named an output topic Kafka would refuse, or one the cluster does not have.
    #[error("output topic {topic:?} {problem}")]
    BadTopic {
        record: usize,
        topic: String,
        problem: String,
    },
    /// The plugin chose a partition the output topic does not have (e.g. `keep_partition` from a
    /// source with more partitions than the sink); `partitions` is the topic's count, when the
    /// cluster said.
    #[error("output partition {partition} of {topic} does not exist{}", count_of(*.partitions))]
    NoPartition {
        record: usize,
        topic: String,
        partition: i32,
        partitions: Option<usize>,
    },
    /// The chain checks every index against its batch, so this is the host's own bug, reported
    /// instead of crashing or silently dropping the output.
    #[error("an output of batch record {record}, which the batch does not have")]
    NoSource { record: usize },
}

/// `": the topic has N partitions"`, or nothing when the count is unknown.
fn count_of(partitions: Option<usize>) -> String {
    partitions
        .map(|n| {
            format!(
                ": the topic has {n} partition{}",
                if n == 1 { "" } else { "s" }
            )
        })
        .unwrap_or_default()
}

impl ProduceFailure {
    /// The batch index of the source record of the output.
    pub fn record(&self) -> usize {
        match self {
            ProduceFailure::Kafka { record, .. }
            | ProduceFailure::BadTopic { record, .. }
            | ProduceFailure::NoPartition { record, .. }
            | ProduceFailure::NoSource { record } => *record,
        }
    }
}

/// Enqueues every output; `first` is the batch index of the chain's input 0. Delivery failures
/// surface later, at flush or commit, through the producer's `DeliveryTracker`.
pub fn produce_outputs(
    producer: &Producer,
    default_topic: &str,
    batch: &Batch<'_>,
    first: usize,
    outputs: &[Produced],
    missing: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<(), ProduceFailure> {
    check_topics(outputs, first, missing)?;
    for output in outputs {
        let source = first + output.input() as usize;
        let (topic, partition) = route(output, default_topic);
        let mut message = match output {
            Produced::Record(record) => built(record, topic, source, batch.message(source)),
            Produced::Forward { .. } => {
                let message = batch
                    .message(source)
                    .ok_or(ProduceFailure::NoSource { record: source })?;
                forwarded(message, message.headers(), topic, source)
            }
        };
        if let Some(partition) = partition {
            message = message.partition(partition);
        }
        send(producer, message)?;
    }
    Ok(())
}

/// The message of a record a plugin built, to `topic`; `source` is its source message.
fn built<'r>(
    record: &'r OutRecord,
    topic: &'r str,
    index: usize,
    source: Option<&BorrowedMessage<'_>>,
) -> BaseRecord<'r, [u8], [u8], usize> {
    let mut message = BaseRecord::with_opaque_to(topic, index);
    // Most records carry no headers; skip allocating librdkafka's header list for them.
    if !record.headers.is_empty() {
        message = message.headers(output_headers(&record.headers, source));
    }
    if let Some(key) = record.key.as_ref().into_option() {
        message = message.key(key.as_slice());
    }
    if let Some(value) = record.value.as_ref().into_option() {
        message = message.payload(value.as_slice());
    }
    if let Some(timestamp) = record.timestamp.into_option() {
        message = message.timestamp(timestamp);
    }
    message
}

/// The message that produces `source` (the batch record at `index`) unchanged to `topic`: its own
/// key, value and timestamp, and a copy of its header list `headers`, which keeps every name's
/// bytes (rust-rdkafka's header accessors would panic on a name that is not UTF-8). Generic over
/// the message type so that it is tested without a broker.
fn forwarded<'m, M: Message>(
    source: &'m M,
    headers: Option<&BorrowedHeaders>,
    topic: &'m str,
    index: usize,
) -> BaseRecord<'m, [u8], [u8], usize> {
    let mut message = BaseRecord::with_opaque_to(topic, index);
    if let Some(headers) = headers {
        message = message.headers(headers.detach());
    }
    if let Some(key) = source.key() {
        message = message.key(key);
    }
    if let Some(value) = source.payload() {
        message = message.payload(value);
    }
    if let Some(timestamp) = source.timestamp().to_millis() {
        message = message.timestamp(timestamp);
    }
    message
}

/// Checks every plugin-chosen topic before anything is sent, so a bad one fails the attempt without
/// leaving aborted records in the log. `missing` says why a topic the cluster lacks cannot be used.
fn check_topics(
    outputs: &[Produced],
    first: usize,
    missing: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<(), ProduceFailure> {
    for output in outputs {
        if let Some(topic) = output.topic() {
            if let Some(problem) = topic_name_problem(topic).or_else(|| missing(topic)) {
                return Err(ProduceFailure::BadTopic {
                    record: first + output.input() as usize,
                    topic: topic.to_string(),
                    problem,
                });
            }
        }
    }
    Ok(())
}

/// The topic and partition of an output: the plugin's choice, else the sink topic and the
/// producer's partitioner (by key).
fn route<'r>(output: &'r Produced, default_topic: &'r str) -> (&'r str, Option<i32>) {
    (output.topic().unwrap_or(default_topic), output.partition())
}

/// Writes the source record at `index` unchanged (key, value, headers) to `topic`, plus `txform.*`
/// headers saying why it was set aside and where it came from.
pub fn produce_dead_letter(
    producer: &Producer,
    topic: &str,
    batch: &Batch<'_>,
    index: usize,
    cause: &Cause,
    attempts: u32,
) -> Result<(), ProduceFailure> {
    let Some(source) = batch.message(index) else {
        return Ok(());
    };
    let origin = Origin {
        topic: source.topic(),
        partition: source.partition(),
        offset: source.offset(),
        timestamp: source.timestamp().to_millis(),
    };
    let mut message = forwarded(source, source.headers(), topic, index);
    let headers = message.headers.take().unwrap_or_default();
    let message = message.headers(dead_letter_headers(headers, cause, &origin, attempts));
    send(producer, message)
}

/// Where a dead-lettered record came from.
struct Origin<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
}

/// The source's `headers` followed by the `txform.*` headers saying why the record was set aside,
/// after how many attempts, and where it came from (`txform.source.timestamp` null without one).
fn dead_letter_headers(
    mut headers: OwnedHeaders,
    cause: &Cause,
    origin: &Origin<'_>,
    attempts: u32,
) -> OwnedHeaders {
    let partition = origin.partition.to_string();
    let offset = origin.offset.to_string();
    let timestamp = origin.timestamp.map(|t| t.to_string());
    let attempts = attempts.to_string();
    // The error text may quote a configuration value; secrets never reach a dead-letter header.
    let error = crate::redact::text(&cause.error);
    for (key, value) in [
        ("txform.error", Some(error.as_ref())),
        ("txform.stage", Some(&cause.stage)),
        ("txform.plugin", Some(&cause.plugin)),
        ("txform.plugin.version", Some(&cause.version)),
        ("txform.source.topic", Some(origin.topic)),
        ("txform.source.partition", Some(&partition)),
        ("txform.source.offset", Some(&offset)),
        ("txform.source.timestamp", timestamp.as_deref()),
        ("txform.attempts", Some(&attempts)),
    ] {
        headers = headers.insert(KafkaHeader {
            key,
            value: value.map(str::as_bytes),
        });
    }
    headers
}

/// How long a full queue waits for room (see `DeliveryTracker::wait_for_room`) before trying again.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(100);

/// Enqueues one message, waiting for room when librdkafka's queue is full.
pub(crate) fn send<'a>(
    producer: &Producer,
    mut message: BaseRecord<'a, [u8], [u8], usize>,
) -> Result<(), ProduceFailure> {
    loop {
        match producer.send(message) {
            Ok(()) => {
                producer.context().sent();
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                producer.context().wait_for_room(QUEUE_FULL_WAIT);
                message = returned;
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::UnknownPartition), returned)) => {
                let topic = returned.topic.to_string();
                return Err(ProduceFailure::NoPartition {
                    record: returned.delivery_opaque,
                    partitions: partition_count(producer, &topic),
                    partition: returned.partition.unwrap_or(-1),
                    topic,
                });
            }
            Err((error, returned)) => {
                return Err(ProduceFailure::Kafka {
                    record: returned.delivery_opaque,
                    topic: returned.topic.to_string(),
                    error,
                })
            }
        }
    }
}

/// The librdkafka header list of an output of `source`. Header names are written as bytes: a name
/// that is the lossy UTF-8 view of one of the source's non-UTF-8 names (see `Batch::with_records`)
/// gets those original bytes back, so a header passed on unchanged stays byte for byte the same.
fn output_headers(out: &[OutHeader], source: Option<&BorrowedMessage<'_>>) -> OwnedHeaders {
    // The source's headers whose names are not UTF-8, read only if an output name can be one's view.
    let mut originals: Option<Vec<(RawHeader<'_>, bool)>> = None;
    out.iter()
        .fold(OwnedHeaders::new_with_capacity(out.len()), |list, h| {
            let mut key = h.key.as_bytes();
            if h.key.contains(char::REPLACEMENT_CHARACTER) {
                let originals = originals.get_or_insert_with(|| {
                    source
                        .map(headers::headers)
                        .into_iter()
                        .flatten()
                        .filter(|raw| std::str::from_utf8(raw.key).is_err())
                        .map(|raw| (raw, false))
                        .collect()
                });
                if let Some(original) = original_name(h.key.as_str(), originals) {
                    key = original;
                }
            }
            let value = h.value.as_ref().map(|v| v.as_slice()).into_option();
            headers::insert(list, key, value)
        })
}

/// How long the failure message waits for a topic's partition count.
const METADATA_WAIT: Duration = Duration::from_secs(2);

/// The number of partitions the cluster reports for `topic`, asked only when a record was refused
/// for its partition (so the message can say what exists).
fn partition_count(producer: &Producer, topic: &str) -> Option<usize> {
    let metadata = producer
        .client()
        .fetch_metadata(Some(topic), METADATA_WAIT)
        .ok()?;
    let found = metadata.topics().iter().find(|t| t.name() == topic)?;
    found.error().is_none().then(|| found.partitions().len())
}

/// The original bytes of the non-UTF-8 name among `originals` whose lossy UTF-8 view is `view`:
/// the first one not yet `used` (so several such headers passed on keep their own names), else the
/// first one.
fn original_name<'m>(view: &str, originals: &mut [(RawHeader<'m>, bool)]) -> Option<&'m [u8]> {
    let matches = |raw: &RawHeader<'_>| String::from_utf8_lossy(raw.key) == view;
    let slot = match originals
        .iter()
        .position(|(raw, used)| !used && matches(raw))
    {
        Some(unused) => unused,
        None => originals.iter().position(|(raw, _)| matches(raw))?,
    };
    originals[slot].1 = true;
    Some(originals[slot].0.key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use txform_plugin_api::Forward;

    #[test]
    fn a_bad_output_topic_is_named_with_kafkas_rule() {
        let failure = ProduceFailure::BadTopic {
            record: 3,
            topic: "bad\0topic".into(),
            problem: topic_name_problem("bad\0topic").unwrap_or_default(),
        };
        assert_eq!(
            failure.to_string(),
            "output topic \"bad\\0topic\" contains '\\0', but a Kafka topic name may only contain \
             ASCII letters, digits, '.', '_' and '-'"
        );
        assert_eq!(failure.record(), 3);
    }

    fn routed(topic: Option<&str>, partition: Option<i32>, input: u32) -> Produced {
        let mut record = OutRecord::new("v");
        record.input = input;
        if let Some(topic) = topic {
            record = record.with_topic(topic);
        }
        if let Some(partition) = partition {
            record = record.with_partition(partition);
        }
        Produced::Record(record)
    }

    fn forward(topic: Option<&str>, partition: Option<i32>, input: u32) -> Produced {
        let to = Forward {
            topic: topic.map(str::to_string),
            partition,
        };
        Produced::Forward { input, to }
    }

    #[test]
    fn outputs_go_where_the_plugin_chose_else_to_the_sink_topic() {
        let outputs = [
            routed(None, None, 0),
            routed(None, Some(3), 0),
            routed(Some("elsewhere"), None, 1),
            routed(Some("elsewhere"), Some(0), 1),
            forward(None, None, 2),
            forward(None, Some(3), 2),
            forward(Some("elsewhere"), None, 2),
            forward(Some("elsewhere"), Some(0), 2),
        ];
        let routes: Vec<(&str, Option<i32>)> = outputs.iter().map(|r| route(r, "sink")).collect();
        assert_eq!(
            routes,
            [
                ("sink", None),
                ("sink", Some(3)),
                ("elsewhere", None),
                ("elsewhere", Some(0)),
                ("sink", None),
                ("sink", Some(3)),
                ("elsewhere", None),
                ("elsewhere", Some(0))
            ]
        );
    }

    #[test]
    fn plugin_chosen_topics_are_checked_by_name_then_by_existence() {
        let mut asked = Vec::new();
        let mut missing = |topic: &str| {
            asked.push(topic.to_string());
            (topic == "gone").then(|| "does not exist".to_string())
        };
        let fine = [routed(None, None, 0), forward(Some("there"), None, 1)];
        assert!(check_topics(&fine, 10, &mut missing).is_ok());
        // The first bad one is named, with the batch index of its source record (10 + input).
        let bad = [
            routed(Some("there"), None, 0),
            forward(Some("gone"), None, 2),
            routed(Some("bad name"), None, 3),
        ];
        match check_topics(&bad, 10, &mut missing) {
            Err(ProduceFailure::BadTopic {
                record,
                topic,
                problem,
            }) => assert_eq!(
                (record, topic.as_str(), problem.as_str()),
                (12, "gone", "does not exist")
            ),
            other => panic!("{other:?}"),
        }
        let named = [routed(Some("bad name"), None, 4)];
        match check_topics(&named, 0, &mut missing) {
            Err(failure @ ProduceFailure::BadTopic { .. }) => {
                assert_eq!(failure.record(), 4);
                assert!(failure
                    .to_string()
                    .starts_with("output topic \"bad name\" contains ' '"));
            }
            other => panic!("{other:?}"),
        }
        // An invalid name is refused without asking the cluster.
        assert_eq!(asked, ["there", "there", "gone"]);
    }

    #[test]
    fn dead_letter_headers_keep_the_sources_and_add_why_and_where() {
        let source = headers::insert(OwnedHeaders::new(), b"trace\xff", Some(b"1"));
        let source = headers::insert(source, b"empty", None);
        let cause = Cause {
            stage: "parse".into(),
            plugin: "json".into(),
            version: "2.0.0".into(),
            error: "bad json".into(),
        };
        let origin = Origin {
            topic: "in",
            partition: 4,
            offset: 1234,
            timestamp: Some(1_700_000_000_000),
        };
        let all = |headers: &OwnedHeaders| -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
            headers::owned(headers)
                .map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)))
                .collect()
        };
        let h = |key: &str, value: &str| (key.as_bytes().to_vec(), Some(value.as_bytes().to_vec()));
        let with = dead_letter_headers(source, &cause, &origin, 21);
        let mut expected = vec![
            (b"trace\xff".to_vec(), Some(b"1".to_vec())),
            (b"empty".to_vec(), None),
            h("txform.error", "bad json"),
            h("txform.stage", "parse"),
            h("txform.plugin", "json"),
            h("txform.plugin.version", "2.0.0"),
            h("txform.source.topic", "in"),
            h("txform.source.partition", "4"),
            h("txform.source.offset", "1234"),
            h("txform.source.timestamp", "1700000000000"),
            h("txform.attempts", "21"),
        ];
        assert_eq!(all(&with), expected);
        // No source timestamp: the header is there, null.
        let without = dead_letter_headers(
            OwnedHeaders::new(),
            &cause,
            &Origin {
                timestamp: None,
                ..origin
            },
            1,
        );
        expected.drain(..2);
        expected[7] = (b"txform.source.timestamp".to_vec(), None);
        expected[8] = h("txform.attempts", "1");
        assert_eq!(all(&without), expected);
    }

    #[test]
    fn a_missing_partition_is_named_with_the_topics_count() {
        let failure = |partitions| ProduceFailure::NoPartition {
            record: 4,
            topic: "out".into(),
            partition: 2,
            partitions,
        };
        assert_eq!(
            failure(Some(2)).to_string(),
            "output partition 2 of out does not exist: the topic has 2 partitions"
        );
        assert_eq!(
            failure(Some(1)).to_string(),
            "output partition 2 of out does not exist: the topic has 1 partition"
        );
        assert_eq!(
            failure(None).to_string(),
            "output partition 2 of out does not exist"
        );
        assert_eq!(failure(None).record(), 4);
    }

    /// (topic, partition, key, value, timestamp, headers, opaque) of a message to produce.
    type Sent = (
        String,
        Option<i32>,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Option<i64>,
        Option<Vec<(Vec<u8>, Option<Vec<u8>>)>>,
        usize,
    );

    fn sent(message: &BaseRecord<'_, [u8], [u8], usize>) -> Sent {
        (
            message.topic.to_string(),
            message.partition,
            message.key.map(<[u8]>::to_vec),
            message.payload.map(<[u8]>::to_vec),
            message.timestamp,
            message.headers.as_ref().map(|h| {
                headers::owned(h)
                    .map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            }),
            message.delivery_opaque,
        )
    }

    #[test]
    fn a_forwarded_record_is_produced_from_its_source_message() {
        use rdkafka::message::{OwnedMessage, Timestamp};
        let headers = headers::insert(OwnedHeaders::new(), b"trace\xff", Some(b"1"));
        let headers = headers::insert(headers, b"empty", None);
        let headers = headers::insert(headers, b"dup", Some(b"a"));
        let headers = headers::insert(headers, b"dup", Some(b"\x00b"));
        let source = OwnedMessage::new(
            Some(b"value\xfe".to_vec()),
            Some(b"key".to_vec()),
            "in".into(),
            Timestamp::LogAppendTime(1_700_000_000_123),
            4,
            99,
            Some(headers),
        );
        let all = source.headers().map(OwnedHeaders::as_borrowed);
        let message = forwarded(&source, all, "out", 17);
        let expected_headers = vec![
            (b"trace\xff".to_vec(), Some(b"1".to_vec())),
            (b"empty".to_vec(), None),
            (b"dup".to_vec(), Some(b"a".to_vec())),
            (b"dup".to_vec(), Some(b"\x00b".to_vec())),
        ];
        assert_eq!(
            sent(&message),
            (
                "out".to_string(),
                // The partition is the route's (set by the caller), never the source's.
                None,
                Some(b"key".to_vec()),
                Some(b"value\xfe".to_vec()),
                Some(1_700_000_000_123),
                Some(expected_headers),
                17
            )
        );
        // Without key, value, headers or timestamp: nothing of them is sent.
        let bare = OwnedMessage::new(None, None, "in".into(), Timestamp::NotAvailable, 0, 0, None);
        let message = forwarded(&bare, None, "out", 0);
        assert_eq!(
            sent(&message),
            ("out".to_string(), None, None, None, None, None, 0)
        );
    }

    fn raw<'a>(key: &'a [u8]) -> (RawHeader<'a>, bool) {
        (RawHeader { key, value: None }, false)
    }

    #[test]
    fn lossy_views_get_their_original_names_back_in_order() {
        // Both have the view "x\u{FFFD}y".
        let mut originals = [raw(b"bad\xff"), raw(b"x\xffy"), raw(b"x\xfey")];
        assert_eq!(
            original_name("x\u{FFFD}y", &mut originals),
            Some(&b"x\xffy"[..])
        );
        assert_eq!(
            original_name("x\u{FFFD}y", &mut originals),
            Some(&b"x\xfey"[..])
        );
        // A third header with that view (a plugin copied one twice) takes the first one again.
        assert_eq!(
            original_name("x\u{FFFD}y", &mut originals),
            Some(&b"x\xffy"[..])
        );
        assert_eq!(
            original_name("bad\u{FFFD}", &mut originals),
            Some(&b"bad\xff"[..])
        );
        // A name a plugin made up itself is written as it is.
        assert_eq!(original_name("new\u{FFFD}", &mut originals), None);
    }
}
