//! Test records: what the tests produce as input and what they read back.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use crate::broker::client_config;
use crate::topics::Topic;

/// Record headers, in order: name bytes (Kafka header names need not be UTF-8) and value.
pub type HeaderList = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Header carrying each input's unique id, so outputs can be traced to inputs whatever a transform
/// did to the key and value.
pub const TEST_ID_HEADER: &str = "test-id";

/// A record as read from (or written to) a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: HeaderList,
    /// Milliseconds since the epoch; `None` when the record has none.
    pub timestamp: Option<i64>,
}

impl Record {
    /// The value as UTF-8 text (lossy); "" when there is no value.
    pub fn value_str(&self) -> String {
        self.value
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default()
            .into_owned()
    }

    /// The key as UTF-8 text (lossy); "" when there is no key.
    pub fn key_str(&self) -> String {
        self.key
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default()
            .into_owned()
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .and_then(|(_, v)| v.as_deref())
    }

    /// The input id carried in the [`TEST_ID_HEADER`] header.
    pub fn test_id(&self) -> Option<u64> {
        std::str::from_utf8(self.header(TEST_ID_HEADER)?)
            .ok()?
            .parse()
            .ok()
    }

    /// `partition@offset`, for messages.
    pub fn position(&self) -> String {
        format!("{}@{}", self.partition, self.offset)
    }

    /// Reads header names as bytes: rust-rdkafka's own header accessor panics on non-UTF-8 names.
    pub fn from_message(message: &BorrowedMessage<'_>) -> Record {
        let headers = txform::kafka::headers::headers(message)
            .map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)))
            .collect();
        Record {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp: message.timestamp().to_millis(),
        }
    }
}

/// One input record to produce, to an explicit partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: HeaderList,
    /// The record's create time (ms); `None` lets the producer stamp it with the current time.
    pub timestamp: Option<i64>,
}

impl InputSpec {
    /// The standard input number `id`: key `k000123`, value `{"id":123,"seq":"id-000123"}` and header
    /// `test-id: 123`, on partition `partition`.
    pub fn standard(id: u64, partition: i32) -> InputSpec {
        InputSpec {
            partition,
            key: Some(format!("k{id:06}").into_bytes()),
            value: Some(format!("{{\"id\":{id},\"seq\":\"id-{id:06}\"}}").into_bytes()),
            headers: vec![(
                TEST_ID_HEADER.as_bytes().to_vec(),
                Some(id.to_string().into_bytes()),
            )],
            timestamp: None,
        }
    }

    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> InputSpec {
        self.value = Some(value.into());
        self
    }

    pub fn with_key(mut self, key: Option<&[u8]>) -> InputSpec {
        self.key = key.map(<[u8]>::to_vec);
        self
    }

    /// No value: a tombstone.
    pub fn without_value(mut self) -> InputSpec {
        self.value = None;
        self
    }

    pub fn with_timestamp(mut self, timestamp: i64) -> InputSpec {
        self.timestamp = Some(timestamp);
        self
    }

    /// Appends a header; its name may be any bytes.
    pub fn with_header(mut self, key: impl Into<Vec<u8>>, value: Option<&[u8]>) -> InputSpec {
        self.headers.push((key.into(), value.map(<[u8]>::to_vec)));
        self
    }
}

/// `headers` as a librdkafka header list, names written as bytes (rust-rdkafka's own `insert` takes
/// UTF-8 names only).
pub fn owned_headers(headers: &[(Vec<u8>, Option<Vec<u8>>)]) -> OwnedHeaders {
    headers.iter().fold(OwnedHeaders::new(), |hs, (k, v)| {
        txform::kafka::headers::insert(hs, k, v.as_deref())
    })
}

/// `n` standard inputs (ids `0..n`) spread round robin over `partitions` partitions: id `i` goes to
/// partition `i % partitions`.
pub fn standard_inputs(n: u64, partitions: i32) -> Vec<InputSpec> {
    (0..n)
        .map(|id| InputSpec::standard(id, (id % partitions as u64) as i32))
        .collect()
}

/// [`standard_inputs`], except that input `big` has a value of `len` bytes ([`big_value`]).
pub fn standard_inputs_with_big(n: u64, partitions: i32, big: u64, len: usize) -> Vec<InputSpec> {
    let mut inputs = standard_inputs(n, partitions);
    let spec = &mut inputs[big as usize];
    spec.value = Some(big_value(big, len));
    inputs
}

/// A value of `len` bytes that is still the standard JSON of input `id` (padded with a `pad` field).
pub fn big_value(id: u64, len: usize) -> Vec<u8> {
    let head = format!("{{\"id\":{id},\"seq\":\"id-{id:06}\",\"pad\":\"");
    let tail = "\"}";
    let pad = len.saturating_sub(head.len() + tail.len());
    let mut value = head.into_bytes();
    value.extend(std::iter::repeat_n(b'x', pad));
    value.extend_from_slice(tail.as_bytes());
    value
}

/// A delivery report: `(partition, offset, timestamp)` or the error; `None` until it arrives.
type Delivery = Option<Result<(i32, i64, Option<i64>), String>>;

/// Collects delivery reports by input index.
struct DeliveryContext {
    results: Mutex<Vec<Delivery>>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<usize>;

    fn delivery(&self, result: &DeliveryResult<'_>, index: Box<usize>) {
        let outcome = match result {
            Ok(message) => Ok((
                message.partition(),
                message.offset(),
                message.timestamp().to_millis(),
            )),
            Err((error, _)) => Err(error.to_string()),
        };
        let mut results = self.results.lock().unwrap_or_else(|p| p.into_inner());
        results[*index] = Some(outcome);
    }
}

/// A plain (non-transactional) idempotent producer of test inputs to one topic.
pub struct InputProducer {
    topic: Topic,
    producer: BaseProducer<DeliveryContext>,
}

impl InputProducer {
    pub fn new(topic: &Topic) -> InputProducer {
        let context = DeliveryContext {
            results: Mutex::new(Vec::new()),
        };
        let producer = client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create_with_context(context)
            .expect("create the input producer");
        InputProducer {
            topic: topic.clone(),
            producer,
        }
    }

    /// Produces `inputs`, in order, and waits until all are acknowledged. Returns them as written
    /// (with their offsets), in input order.
    pub fn produce(&self, inputs: &[InputSpec]) -> Vec<Record> {
        let topic = &self.topic;
        let producer = &self.producer;
        *producer
            .context()
            .results
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = vec![None; inputs.len()];
        for (index, input) in inputs.iter().enumerate() {
            assert!(
                input.partition >= 0 && input.partition < topic.partitions,
                "input {index}: partition {} not in {}",
                input.partition,
                topic.name
            );
            let headers = owned_headers(&input.headers);
            let mut record: BaseRecord<'_, [u8], [u8], Box<usize>> =
                BaseRecord::with_opaque_to(&topic.name, Box::new(index))
                    .partition(input.partition)
                    .headers(headers);
            if let Some(key) = &input.key {
                record = record.key(key.as_slice());
            }
            if let Some(value) = &input.value {
                record = record.payload(value.as_slice());
            }
            if let Some(timestamp) = input.timestamp {
                record = record.timestamp(timestamp);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        producer.poll(Duration::from_millis(10));
                        record = returned;
                    }
                    Err((error, _)) => panic!("produce input {index} to {}: {error}", topic.name),
                }
            }
            producer.poll(Duration::ZERO);
        }
        producer
            .flush(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("flush inputs to {}: {e}", topic.name));
        let results = std::mem::take(
            &mut *producer
                .context()
                .results
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        inputs
            .iter()
            .zip(results)
            .enumerate()
            .map(|(index, (input, result))| match result {
                Some(Ok((partition, offset, timestamp))) => {
                    assert_eq!(
                        partition, input.partition,
                        "input {index} went to another partition"
                    );
                    Record {
                        partition,
                        offset,
                        key: input.key.clone(),
                        value: input.value.clone(),
                        headers: input.headers.clone(),
                        timestamp,
                    }
                }
                Some(Err(error)) => panic!("input {index} to {} failed: {error}", topic.name),
                None => panic!(
                    "input {index} to {}: no delivery report after flush",
                    topic.name
                ),
            })
            .collect()
    }

    /// Produces `inputs` in chunks of `chunk`, each acknowledged before a pause of `pause`: a steady
    /// stream for tests that need the pipeline busy for a while.
    pub fn produce_paced(
        &self,
        inputs: &[InputSpec],
        chunk: usize,
        pause: Duration,
    ) -> Vec<Record> {
        let mut written = Vec::with_capacity(inputs.len());
        for part in inputs.chunks(chunk.max(1)) {
            written.extend(self.produce(part));
            std::thread::sleep(pause);
        }
        written
    }
}

/// Produces `inputs` to `topic`, in order, with a plain (non-transactional) idempotent producer, and
/// waits until all are acknowledged. Returns them as written (with their offsets), in input order.
pub fn produce(topic: &Topic, inputs: &[InputSpec]) -> Vec<Record> {
    InputProducer::new(topic).produce(inputs)
}
