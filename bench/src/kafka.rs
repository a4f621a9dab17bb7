//! The benchmark's own Kafka clients: topic administration, the seeding and paced producers, and
//! the read_committed reader that decides when output became visible.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use txform::kafka::admin::block_on;

use crate::payload::{self, Kind};
use crate::process::CpuSample;

/// The broker every system uses.
#[derive(Debug, Clone)]
pub struct Kafka {
    pub bootstrap: String,
}

impl Kafka {
    pub fn new(bootstrap: &str) -> Kafka {
        Kafka {
            bootstrap: bootstrap.to_string(),
        }
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config
    }

    /// Fails unless the broker answers a metadata request.
    pub fn check(&self) -> anyhow::Result<()> {
        let client: BaseConsumer = self.config().create().context("create a metadata client")?;
        client
            .fetch_metadata(None, Duration::from_secs(10))
            .with_context(|| {
                format!(
                    "no Kafka broker answers at {} (start one with scripts/kafka.sh start)",
                    self.bootstrap
                )
            })?;
        Ok(())
    }

    /// Creates `name` (replication 1) and waits until every partition has a leader.
    pub fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        Ok(txform::kafka::admin::create_topic(
            &self.config(),
            name,
            partitions,
            &[],
        )?)
    }

    /// Deletes topics; a failure is logged, not returned (it only costs disk space).
    pub fn delete_topics(&self, names: &[&str]) {
        if names.is_empty() {
            return;
        }
        let result = self
            .config()
            .create::<AdminClient<DefaultClientContext>>()
            .map_err(anyhow::Error::from)
            .and_then(|admin| {
                let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
                Ok(block_on(admin.delete_topics(names, &options))?)
            });
        match result {
            Ok(results) => {
                for (topic, code) in results.into_iter().filter_map(Result::err) {
                    log::warn!("delete topic {topic}: {code}");
                }
            }
            Err(error) => log::warn!("delete topics {names:?}: {error:#}"),
        }
    }

    /// A producer for the benchmark's inputs: idempotent (no duplicates on retries), acks=all.
    fn producer(&self, linger_ms: u32) -> anyhow::Result<BaseProducer<CountingContext>> {
        self.config()
            .set("enable.idempotence", "true")
            .set("linger.ms", linger_ms.to_string())
            .set("batch.size", "1000000")
            .set("queue.buffering.max.kbytes", "262144")
            .set("compression.type", "none")
            .create_with_context(CountingContext::default())
            .context("create the input producer")
    }

    /// Produces `records` values of `size` bytes over `partitions` partitions of `topic` and waits
    /// until all are acknowledged. Returns how long that took. Unkeyed records go round-robin;
    /// keyed ones to `key number % partitions`, so each key lives in one partition.
    pub fn seed(
        &self,
        topic: &str,
        partitions: i32,
        records: u64,
        size: usize,
        values: Values,
    ) -> anyhow::Result<Duration> {
        let producer = self.producer(20)?;
        let started = Instant::now();
        let mut value = Vec::with_capacity(size);
        for seq in 0..records {
            match values {
                Values::Json => payload::write_json(&mut value, size, seq),
                Values::Text | Values::Keyed { .. } => {
                    payload::write(&mut value, size, seq, 0, Kind::Seed)
                }
            }
            match values {
                Values::Keyed { keys } => send_key(
                    &producer,
                    topic,
                    partitions,
                    payload::key_index(seq, keys),
                    &value,
                )?,
                Values::Text | Values::Json => {
                    send(&producer, topic, partition_of(seq, partitions), &value)?
                }
            }
        }
        finish(&producer, topic, records)?;
        Ok(started.elapsed())
    }

    /// Produces one record with key number `index` of a keyed input (the restore probe).
    pub fn produce_key(&self, topic: &str, partitions: i32, index: u64) -> anyhow::Result<()> {
        let producer = self.producer(0)?;
        let mut value = Vec::new();
        payload::write(&mut value, 64, 0, payload::now_ns(), Kind::Probe);
        send_key(&producer, topic, partitions, index, &value)?;
        finish(&producer, topic, 1)
    }

    /// The end offsets of `partitions` partitions of `topic`.
    pub fn end_offsets(&self, topic: &str, partitions: i32) -> anyhow::Result<Vec<i64>> {
        let client: BaseConsumer = self.config().create().context("create a metadata client")?;
        (0..partitions)
            .map(|p| {
                client
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .map(|(_, high)| high)
                    .with_context(|| format!("end offset of {topic} [{p}]"))
            })
            .collect()
    }

    /// Waits for the first record with `key` visible to a read_committed reader of `topic` after
    /// `from` (end offsets), until `deadline` or until `give_up` says so. Returns when it was seen
    /// and its value.
    pub fn await_key(
        &self,
        topic: &str,
        from: &[i64],
        key: &[u8],
        deadline: Instant,
        give_up: &dyn Fn() -> bool,
    ) -> anyhow::Result<Option<(Instant, Vec<u8>)>> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", format!("{topic}-key-reader"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "20")
            .create()
            .context("create the read_committed key reader")?;
        let mut tpl = TopicPartitionList::new();
        for (p, &offset) in (0..).zip(from) {
            tpl.add_partition_offset(topic, p, Offset::Offset(offset))
                .context("assign the key reader")?;
        }
        consumer.assign(&tpl).context("assign the key reader")?;
        while Instant::now() < deadline && !give_up() {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(message)) if message.key() == Some(key) => {
                    let value = message.payload().unwrap_or_default().to_vec();
                    return Ok(Some((Instant::now(), value)));
                }
                Some(Err(error)) if !matches!(error, KafkaError::PartitionEOF(_)) => {
                    log::warn!("key reader of {topic}: {error}");
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Produces one [`Kind::Probe`] record, to see when a system is up and copying.
    pub fn probe(&self, topic: &str) -> anyhow::Result<()> {
        let producer = self.producer(0)?;
        let mut value = Vec::new();
        payload::write(&mut value, 64, 0, payload::now_ns(), Kind::Probe);
        send(&producer, topic, 0, &value)?;
        finish(&producer, topic, 1)
    }

    /// Produces `warmup` then `measured` records at `rate` per second, each stamped with its
    /// scheduled send time (so that a stalled producer shows up as latency, not as a lower load).
    pub fn paced(
        &self,
        topic: &str,
        partitions: i32,
        size: usize,
        rate: u64,
        warmup: u64,
        measured: u64,
    ) -> anyhow::Result<()> {
        let producer = self.producer(5)?;
        let total = warmup + measured;
        let interval_ns = 1e9 / rate.max(1) as f64;
        let started = Instant::now();
        let start_ns = payload::now_ns();
        let mut value = Vec::with_capacity(size);
        let mut seq = 0u64;
        while seq < total {
            let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
            while seq < due {
                let kind = if seq < warmup {
                    Kind::Warmup
                } else {
                    Kind::Measured
                };
                let stamp = start_ns + (seq as f64 * interval_ns) as u64;
                payload::write(&mut value, size, seq, stamp, kind);
                send(&producer, topic, partition_of(seq, partitions), &value)?;
                seq += 1;
            }
            producer.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(1));
        }
        finish(&producer, topic, total)
    }
}

/// What the seeded values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// The stamped ASCII values of [`payload::write`], no key.
    Text,
    /// JSON objects ([`payload::write_json`]), no key.
    Json,
    /// Stamped ASCII values with keys `k0..k<keys>` ([`payload::key`]).
    Keyed { keys: u64 },
}

fn partition_of(seq: u64, partitions: i32) -> i32 {
    (seq % partitions.max(1) as u64) as i32
}

/// Enqueues one record without a key, waiting for room in librdkafka's queue.
fn send(
    producer: &BaseProducer<CountingContext>,
    topic: &str,
    partition: i32,
    value: &[u8],
) -> anyhow::Result<()> {
    send_keyed(producer, topic, partition, None, value)
}

/// Enqueues one record with key number `index`, to the partition that key lives in.
fn send_key(
    producer: &BaseProducer<CountingContext>,
    topic: &str,
    partitions: i32,
    index: u64,
    value: &[u8],
) -> anyhow::Result<()> {
    let key = payload::key(index);
    let partition = partition_of(index, partitions);
    send_keyed(producer, topic, partition, Some(key.as_bytes()), value)
}

/// Enqueues one record, waiting for room in librdkafka's queue.
fn send_keyed(
    producer: &BaseProducer<CountingContext>,
    topic: &str,
    partition: i32,
    key: Option<&[u8]>,
    value: &[u8],
) -> anyhow::Result<()> {
    let mut record: BaseRecord<'_, [u8], [u8]> =
        BaseRecord::to(topic).partition(partition).payload(value);
    if let Some(key) = key {
        record = record.key(key);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                producer.poll(Duration::from_millis(5));
                record = returned;
            }
            Err((error, _)) => return Err(error).with_context(|| format!("produce to {topic}")),
        }
    }
}

/// Flushes and checks that all `records` were delivered.
fn finish(
    producer: &BaseProducer<CountingContext>,
    topic: &str,
    records: u64,
) -> anyhow::Result<()> {
    producer
        .flush(Duration::from_secs(120))
        .with_context(|| format!("flush the producer of {topic}"))?;
    let context = producer.context();
    let failed = context.failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!(
            "{failed} of {records} records to {topic} were not delivered (first error: {})",
            context.first_error()
        );
    }
    Ok(())
}

/// Counts failed deliveries, so that a seeding error fails the benchmark instead of skewing it.
#[derive(Default)]
struct CountingContext {
    failed: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl CountingContext {
    fn first_error(&self) -> String {
        self.first_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_default()
    }
}

impl ClientContext for CountingContext {}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                if let Ok(mut first) = self.first_error.lock() {
                    *first = Some(error.to_string());
                }
            }
        }
    }
}

/// What the reader saw.
#[derive(Debug, Default)]
pub struct ReaderReport {
    /// Records received.
    pub count: u64,
    /// When the first record arrived.
    pub first_at: Option<Instant>,
    /// When the count reached the `window_start` threshold, and the CPU seconds used by then.
    pub window_start: Option<(Instant, CpuSample)>,
    /// When the count reached the target, and the CPU seconds used by then.
    pub done: Option<(Instant, CpuSample)>,

    /// Latency (visibility time minus stamp) of every [`Kind::Measured`] record, microseconds.
    pub latencies_us: Vec<u64>,
    /// Arrival of the first and the last [`Kind::Measured`] record.
    pub measured_span: Option<(Instant, Instant)>,
}

/// A read_committed consumer of every partition of an output topic, outside any group, on its own
/// thread. It stops by itself when it has seen `target` records.
pub struct Reader {
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<anyhow::Result<ReaderReport>>,
}

/// What a [`Reader`] watches for.
pub struct ReaderPlan {
    pub topic: String,
    pub partitions: i32,
    /// Stop after this many records.
    pub target: u64,
    /// Record the moment (and the child's CPU time) the count reaches this.
    pub window_start: u64,
    /// The system under test, whose CPU time is sampled at the window's ends.
    pub pid: Option<libc::pid_t>,
    /// The broker, sampled with it (see `listener`).
    pub broker_pid: Option<libc::pid_t>,
}

impl Reader {
    pub fn start(kafka: &Kafka, plan: ReaderPlan) -> anyhow::Result<Reader> {
        let consumer: BaseConsumer = kafka
            .config()
            .set("group.id", format!("{}-reader", plan.topic))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            // Visibility is what is measured: do not let the broker hold an empty fetch long.
            .set("fetch.wait.max.ms", "20")
            // librdkafka pauses a partition's fetches for fetch.queue.backoff.ms (1 s by default)
            // whenever the reader's queue holds queued.min.messages: at 100 B that happened every
            // few rounds, and the reader, not the system under test, set the measured rate
            // (a plain copier whose output's end offsets reached 3 M in 3.5 s was timed at 262,000
            // records/s).
            .set("fetch.queue.backoff.ms", "5")
            .create()
            .context("create the read_committed reader")?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..plan.partitions {
            tpl.add_partition_offset(&plan.topic, p, Offset::Beginning)
                .context("assign the reader")?;
        }
        consumer.assign(&tpl).context("assign the reader")?;
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = std::thread::Builder::new()
            .name("reader".into())
            .spawn({
                let count = Arc::clone(&count);
                let stop = Arc::clone(&stop);
                move || read(consumer, plan, &count, &stop)
            })
            .context("start the reader thread")?;
        Ok(Reader {
            count,
            stop,
            handle,
        })
    }

    /// Records received so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// True once the reader has stopped (target reached, or an error).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Stops the reader (if still running) and returns what it saw.
    pub fn finish(self) -> anyhow::Result<ReaderReport> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.join() {
            Ok(result) => result,
            Err(_) => bail!("the reader thread panicked"),
        }
    }
}

fn read(
    consumer: BaseConsumer,
    plan: ReaderPlan,
    count: &AtomicU64,
    stop: &AtomicBool,
) -> anyhow::Result<ReaderReport> {
    let cpu = || CpuSample::take(plan.pid, plan.broker_pid);
    let mut report = ReaderReport::default();
    while report.count < plan.target && !stop.load(Ordering::Relaxed) {
        let Some(polled) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let message = match polled {
            Ok(message) => message,
            Err(KafkaError::PartitionEOF(_)) => continue,
            Err(error) => {
                log::warn!("reader of {}: {error}", plan.topic);
                continue;
            }
        };
        let now = Instant::now();
        report.count += 1;
        count.store(report.count, Ordering::Relaxed);
        report.first_at.get_or_insert(now);
        if report.count == plan.window_start.max(1) {
            report.window_start = Some((now, cpu()));
        }
        if report.count == plan.target {
            report.done = Some((now, cpu()));
        }
        if let Some((stamp, Kind::Measured)) = message.payload().and_then(payload::parse) {
            let latency_ns = payload::now_ns().saturating_sub(stamp);
            report.latencies_us.push(latency_ns / 1_000);
            report.measured_span = match report.measured_span {
                None => Some((now, now)),
                Some((first, _)) => Some((first, now)),
            };
        }
    }
    Ok(report)
}
