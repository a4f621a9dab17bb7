//! Builds the consumer and the producer from the pipeline's configuration.
//!
//! User properties are passed through to librdkafka unchanged; the properties that exactly-once depends
//! on are set here, last, and the config module refuses user values for them.

use anyhow::Context as _;
use prometheus_client::metrics::counter::Counter;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::ThreadedProducer;

use crate::config::{Guarantee, Pipeline};

use super::delivery::DeliveryTracker;
use super::incarnation::Incarnation;
use super::rebalance::RebalanceTracker;

pub type Consumer = BaseConsumer<RebalanceTracker>;
/// A client that never joins the group (see [`build_observer`]).
pub type Observer = BaseConsumer<RebalanceTracker>;
/// Threaded: its own thread serves delivery reports, so the pipeline never polls the producer and
/// blocking transactional calls (which wait for reports) can use librdkafka's recommended
/// infinite time-out.
pub type Producer = ThreadedProducer<DeliveryTracker>;

/// How often librdkafka reports consumer lag when metrics are served.
const STATISTICS_INTERVAL_MS: &str = "5000";

/// A group member that reads only committed data and never commits on its own. Its `client.id`
/// names this process's incarnation, which the group reports to whoever it fences.
pub fn build_consumer(pipeline: &Pipeline, me: Incarnation) -> anyhow::Result<Consumer> {
    let mut config = consumer_config(pipeline);
    bound_prefetch(&mut config, pipeline);
    if pipeline.metrics.listen.is_some() {
        // The source of `txform_consumer_lag`.
        config.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    }
    config
        .set("client.id", me.client_id(&pipeline.transactional_id()))
        .create_with_context(RebalanceTracker::default())
        .context("cannot create the Kafka consumer")
}

/// A transactional producer whose id is stable per instance, so a restarted instance fences its dead
/// predecessor (and aborts its open transaction) at `init_transactions`. Each wait for room in its
/// full queue counts in `queue_full_waits`.
pub fn build_producer(
    pipeline: &Pipeline,
    me: Incarnation,
    queue_full_waits: Counter,
) -> anyhow::Result<Producer> {
    producer_config(pipeline)
        .set("client.id", me.client_id(&pipeline.transactional_id()))
        .create_with_context(DeliveryTracker::counting_queue_full_waits(queue_full_waits))
        .context("cannot create the Kafka producer")
}

/// A client that only asks the cluster questions (who is in the group): it never subscribes, so it
/// never joins the group, and it works when the pipeline's own clients are fenced.
pub fn build_observer(pipeline: &Pipeline) -> anyhow::Result<Observer> {
    let mut config = consumer_config(pipeline);
    config.remove("group.instance.id");
    config
        .set(
            "client.id",
            format!("{}:observer", pipeline.transactional_id()),
        )
        .create_with_context(RebalanceTracker::default())
        .context("cannot create the Kafka client that describes the group")
}

/// A client that reads changelog partitions it assigns itself (state restore): read_committed,
/// reporting the end of each partition, never joining the group or committing.
pub fn build_restorer(pipeline: &Pipeline) -> anyhow::Result<Observer> {
    let mut config = consumer_config(pipeline);
    config.remove("group.instance.id");
    config
        .set("enable.partition.eof", "true")
        .set(
            "client.id",
            format!("{}:restore", pipeline.transactional_id()),
        )
        .create_with_context(RebalanceTracker::default())
        .context("cannot create the Kafka client that restores state stores")
}

/// Configuration of an admin client (creating and describing changelog topics): the common
/// properties only.
pub fn admin_config(pipeline: &Pipeline) -> ClientConfig {
    let mut config = ClientConfig::new();
    apply(&mut config, &pipeline.kafka.common);
    config
}

fn consumer_config(pipeline: &Pipeline) -> ClientConfig {
    let mut config = ClientConfig::new();
    // Defaults a user may override: start from the beginning when the group has no offsets, and
    // resume fetching a partition soon after its prefetch queue drained (librdkafka waits 1 s by
    // default, which stalls a copier whose batches empty the queue every ~100 ms).
    config.set("auto.offset.reset", "earliest");
    config.set("fetch.queue.backoff.ms", "10");
    let fetch = FetchDefaults::for_batch_wait(pipeline.batch.max_wait);
    config.set("fetch.min.bytes", fetch.min_bytes.to_string());
    config.set("fetch.wait.max.ms", fetch.wait_max_ms.to_string());
    apply(&mut config, &pipeline.kafka.common);
    apply(&mut config, &pipeline.kafka.consumer);
    config
        .set("group.id", &pipeline.source.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed");
    if pipeline.transaction.static_membership {
        // A restarted instance takes over its predecessor's partitions at once instead of waiting for
        // the dead member's session to time out.
        config.set("group.instance.id", pipeline.transactional_id());
    }
    config
}

/// Bounds what the group consumer holds ahead of the batch: the prefetch ([`Prefetch`]) and the
/// largest fetch response ([`fetch_max_bytes`]), each unless the file sets it.
fn bound_prefetch(config: &mut ClientConfig, pipeline: &Pipeline) {
    let prefetch = Prefetch::for_batch(pipeline.batch.max_records, pipeline.batch.max_bytes);
    for (key, value) in [
        ("queued.min.messages", prefetch.messages.to_string()),
        ("queued.max.messages.kbytes", prefetch.kbytes.to_string()),
    ] {
        if config.get(key).is_none() {
            config.set(key, value);
        }
    }
    if config.get("fetch.max.bytes").is_none() {
        let prefetch_kbytes = parsed(config, "queued.max.messages.kbytes", prefetch.kbytes);
        let message_max_bytes = parsed(config, "message.max.bytes", MESSAGE_MAX_BYTES);
        config.set(
            "fetch.max.bytes",
            fetch_max_bytes(prefetch_kbytes, message_max_bytes).to_string(),
        );
    }
}

/// How much the group consumer prefetches, a default a user may override: two batches, in records
/// and in bytes, but at most 10,000 records or 4 MiB. librdkafka's own (100,000 messages, 64 MiB)
/// is one queue shared by every partition, so after a failed batch is rewound its partition's
/// records are fetched again *behind* whatever the other partitions prefetched while the transform
/// was slower than the fetcher (measured by `tests/tests/integration/prefetch.rs`: 4,850 records
/// of a backlogged partition ahead of a new one with librdkafka's defaults, 240 with these; the
/// likely cause of a chaos run's 12 s stall of a rewound partition after a broker outage), and the
/// prefetch is most of the host's memory at large records. A streamed batch takes its records in
/// chunks of 500, so the prefetch only has to cover a fetch round trip at full speed, not a whole
/// batch. The caps are what the benchmark gives its copiers; with them (and the default
/// transaction size) txform copied at the rate of the uncapped prefetch, at 22 MiB less peak RSS
/// at 1 KiB (docs/benchmarks.md, issue 13 part 6). A fetch response (`max.partition.fetch.bytes`
/// per partition, or one whole record batch) can still go past the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Prefetch {
    messages: usize,
    kbytes: usize,
}

impl Prefetch {
    /// The most records prefetched, whatever the batch size.
    const MAX_MESSAGES: usize = 10_000;
    /// The most kilobytes prefetched, whatever the batch's byte bound.
    const MAX_KBYTES: usize = 4 * 1024;

    fn for_batch(max_records: usize, max_bytes: usize) -> Prefetch {
        Prefetch {
            messages: max_records.saturating_mul(2).clamp(1, Self::MAX_MESSAGES),
            kbytes: (max_bytes.saturating_mul(2) / 1024).clamp(1, Self::MAX_KBYTES),
        }
    }
}

/// The largest fetch response (a default a user may override): half the prefetch bound, not
/// librdkafka's whole bound. A response's buffer is held whole until the last of its records is let
/// go, so the consumer holds a few responses at once whatever the bound says; 2 MiB responses
/// took 6-12 MiB off the median peak RSS against 4 MiB ones (1 KiB and 100 B, 6 and 60
/// partitions), at the same rate (docs/benchmarks.md, issue 13 part 10). Never below
/// `message.max.bytes`, which librdkafka refuses.
fn fetch_max_bytes(prefetch_kbytes: usize, message_max_bytes: usize) -> usize {
    (prefetch_kbytes.saturating_mul(1024) / 2).max(message_max_bytes)
}

/// `key`'s value in `config` as a number, or `default` when it is not set (or not a number:
/// librdkafka then refuses the configuration with its own message).
fn parsed(config: &ClientConfig, key: &str, default: usize) -> usize {
    config
        .get(key)
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Fetch defaults a user may override. librdkafka's own (`fetch.min.bytes = 1`) answers a fetch as
/// soon as one record is there, so at a moderate rate the consumer sends hundreds of tiny fetches a
/// second and its CPU follows wall-clock time, not records (measured: 8,000 records/s of 1 KiB cost
/// 17-22 CPU s per million records with these left alone). But a fetch held back is a record
/// fetched late, and a record fetched after the interval's end waits for the next transaction: the
/// wait shows in end-to-end latency. 64 KiB within a tenth of the batch interval kept the latency
/// of the minimal exactly-once copier at 20,000 records/s (p50 66-68 ms against its 66) for 9-11
/// CPU s per million at 8,000 records/s; 256 KiB within a fifth cost 7.5 but added 6 ms at 20,000
/// records/s and 12 ms at 8,000 (docs/benchmarks.md, issue 13 part 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FetchDefaults {
    min_bytes: u32,
    wait_max_ms: u64,
}

impl FetchDefaults {
    /// Enough bytes that a fetch at full speed is never held back (a fraction of librdkafka's
    /// per-partition fetch size), few enough that a moderate rate fills them in milliseconds.
    const MIN_BYTES: u32 = 64 * 1024;
    /// librdkafka's default, the upper bound for long batch intervals.
    const MAX_WAIT_MS: u64 = 500;

    fn for_batch_wait(max_wait: std::time::Duration) -> FetchDefaults {
        let tenth = u64::try_from(max_wait.as_millis() / 10).unwrap_or(u64::MAX);
        FetchDefaults {
            min_bytes: Self::MIN_BYTES,
            wait_max_ms: tenth.clamp(1, Self::MAX_WAIT_MS),
        }
    }
}

fn producer_config(pipeline: &Pipeline) -> ClientConfig {
    let mut config = ClientConfig::new();
    // Default a user may override: right after a commit the broker answers the next transaction's
    // first partition registration with CONCURRENT_TRANSACTIONS; librdkafka's 100 ms default retry
    // backoff then caps a transaction rate near 10/s (the Java client retries after 20 ms).
    config.set("retry.backoff.ms", "10");
    // Default a user may override: a batch's last outputs wait for linger.ms before they are sent,
    // and the commit waits for them. A chunk is produced in one burst, so batching needs no longer
    // linger: at 20,000 records/s of 1 KiB, 1 ms instead of librdkafka's 5 took 6 ms off p50 and
    // 7 ms off p99, at the same CPU per record (docs/benchmarks.md).
    config.set("linger.ms", "1");
    config.set("message.copy.max.bytes", MESSAGE_COPY_MAX_BYTES.to_string());
    apply(&mut config, &pipeline.kafka.common);
    apply(&mut config, &pipeline.kafka.producer);
    if config.get("queue.buffering.max.kbytes").is_none() {
        let message_max_bytes = parsed(&config, "message.max.bytes", MESSAGE_MAX_BYTES);
        config.set(
            "queue.buffering.max.kbytes",
            queue_kbytes(message_max_bytes).to_string(),
        );
    }
    config.set("enable.idempotence", "true");
    if pipeline.transaction.guarantee == Guarantee::ExactlyOnce {
        config.set("transactional.id", pipeline.transactional_id());
    }
    config
}

/// The largest output value librdkafka copies into a produce request (a default a user may
/// override); a larger one is sent from the message's own buffer. librdkafka's default, 64 KiB,
/// copies every output of a usual pipeline twice: into the message, then into the request, which
/// holds a second copy of everything in flight. At 1 KiB, 256 B took 2-5 MiB off peak RSS and
/// raised the rate in each of five alternating rounds, at 0.2-0.5 CPU s per million records less;
/// at 100 B both settings copy, so the same code runs (docs/benchmarks.md, issue 13 part 8).
const MESSAGE_COPY_MAX_BYTES: usize = 256;

/// librdkafka's default `message.max.bytes`.
const MESSAGE_MAX_BYTES: usize = 1_000_000;

/// The producer's queue bound (a default a user may override): 4 MiB of outputs in flight, or
/// twice `message_max_bytes` if that is more (a single message larger than the queue bound could
/// never be enqueued). librdkafka's own is 1 GiB, so a streamed batch's in-flight outputs could
/// grow with record size times batch count; with the bound, producing waits for room (see
/// `pipeline::sink`). The bound does not follow the batch: a streamed batch produces each chunk at
/// once, so the queue only covers the produce round trips. 8 MiB took 3-10 MiB off peak RSS at
/// 1 KiB against two batches (32 MiB) at the same rate (issue 13 part 7, where 4 MiB then cost
/// rate); with 2 MiB fetch responses and 256 B copies, 4 MiB took another 5 MiB off at 1 KiB
/// (median peak 34 against 39 MiB) at the same median rate and CPU per record in nine
/// alternating rounds each (docs/benchmarks.md, issue 13 part 11).
fn queue_kbytes(message_max_bytes: usize) -> usize {
    const BOUND: usize = 4 * 1024 * 1024;
    message_max_bytes.saturating_mul(2).max(BOUND) / 1024
}

fn apply(config: &mut ClientConfig, properties: &[(String, String)]) {
    for (key, value) in properties {
        config.set(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::{
        bound_prefetch, consumer_config, fetch_max_bytes, producer_config, queue_kbytes,
        FetchDefaults, Prefetch,
    };
    use crate::config::tests::{parse_ok, MINIMAL};
    use std::time::Duration;

    /// The config tests' smallest valid file with a `[kafka.producer]` table of `properties`.
    fn pipeline(properties: &str) -> crate::config::Pipeline {
        parse_ok(&format!("{MINIMAL}[kafka.producer]\n{properties}\n"))
    }

    #[test]
    fn the_producer_lingers_1_ms_unless_the_file_says_otherwise() {
        assert_eq!(producer_config(&pipeline("")).get("linger.ms"), Some("1"));
        assert_eq!(
            producer_config(&pipeline(r#""linger.ms" = "20""#)).get("linger.ms"),
            Some("20")
        );
    }

    #[test]
    fn outputs_above_256_bytes_are_sent_from_their_own_buffer_unless_the_file_says_otherwise() {
        let copy_max = |properties| producer_config(&pipeline(properties));
        let key = "message.copy.max.bytes";
        assert_eq!(copy_max("").get(key), Some("256"));
        assert_eq!(
            copy_max(r#""message.copy.max.bytes" = "65535""#).get(key),
            Some("65535")
        );
    }

    #[test]
    fn fetch_wait_is_a_tenth_of_the_batch_interval_within_librdkafkas_range() {
        let wait = |ms| FetchDefaults::for_batch_wait(Duration::from_millis(ms)).wait_max_ms;
        assert_eq!(wait(100), 10);
        assert_eq!(wait(1), 1);
        assert_eq!(wait(19), 1);
        assert_eq!(wait(5_000), 500);
        assert_eq!(wait(60_000), 500);
        assert_eq!(
            FetchDefaults::for_batch_wait(Duration::from_millis(100)).min_bytes,
            64 * 1024
        );
    }

    #[test]
    fn the_consumer_prefetches_two_batches_up_to_10_000_records_or_4_mib() {
        assert_eq!(
            Prefetch::for_batch(1000, 1024 * 1024),
            Prefetch {
                messages: 2000,
                kbytes: 2 * 1024
            }
        );
        assert_eq!(
            Prefetch::for_batch(12, 1024),
            Prefetch {
                messages: 24,
                kbytes: 2
            }
        );
        assert_eq!(
            Prefetch::for_batch(100_000, 16 * 1024 * 1024),
            Prefetch {
                messages: 10_000,
                kbytes: 4 * 1024
            }
        );
    }

    #[test]
    fn a_fetch_response_is_half_the_prefetch_but_never_below_the_largest_message() {
        assert_eq!(fetch_max_bytes(4 * 1024, 1_000_000), 2 * 1024 * 1024);
        assert_eq!(fetch_max_bytes(1024, 1_000_000), 1_000_000);
        let fetch_max = |properties: &str| {
            let pipeline = parse_ok(&format!("{MINIMAL}[kafka.consumer]\n{properties}\n"));
            let mut config = consumer_config(&pipeline);
            bound_prefetch(&mut config, &pipeline);
            config.get("fetch.max.bytes").map(str::to_string)
        };
        assert_eq!(fetch_max(""), Some("2097152".to_string()));
        assert_eq!(
            fetch_max(r#""queued.max.messages.kbytes" = "16384""#),
            Some("8388608".to_string())
        );
        assert_eq!(
            fetch_max(r#""message.max.bytes" = "3000000""#),
            Some("3000000".to_string())
        );
        assert_eq!(
            fetch_max(r#""fetch.max.bytes" = "5000000""#),
            Some("5000000".to_string())
        );
    }

    #[test]
    fn the_producer_queue_holds_4_mib_or_two_of_the_largest_messages() {
        assert_eq!(queue_kbytes(1_000_000), 4 * 1024);
        assert_eq!(queue_kbytes(3_000_000), 5859);
        assert_eq!(queue_kbytes(20 * 1024 * 1024), 40 * 1024);
        let queue = |properties| {
            producer_config(&pipeline(properties))
                .get("queue.buffering.max.kbytes")
                .map(str::to_string)
        };
        assert_eq!(queue(""), Some("4096".to_string()));
        assert_eq!(
            queue(r#""message.max.bytes" = "10485760""#),
            Some("20480".to_string())
        );
        assert_eq!(
            queue(r#""queue.buffering.max.kbytes" = "1024""#),
            Some("1024".to_string())
        );
    }
}
