//! Command line: the benchmark's options, and the hidden `copy` sub-command that is the plain
//! copier baseline (a sub-command of this binary, so that it runs as a child process of its own and
//! its CPU and memory are measured like every other system's).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::sweep::SweepAxis;
use crate::systems::System;

#[derive(Parser, Debug)]
#[command(
    name = "txform-bench",
    about = "Benchmarks txform against Kafka Streams exactly_once_v2, Kafka's TransactionalMessageCopier and a plain copier on one real broker",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub options: Options,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// (internal) The plain non-transactional consume + produce copier measured as the baseline.
    #[command(hide = true)]
    Copy(CopyArgs),
}

/// Options of the benchmark run.
#[derive(Args, Debug, Clone)]
pub struct Options {
    /// Tiny CI run: 5,000 records per size, 1 round, a 3 s latency run at 2,000 rec/s. Checks that
    /// every system still works end to end; no timing is asserted.
    #[arg(long)]
    pub smoke: bool,

    /// Kafka bootstrap servers (all systems use the same broker).
    #[arg(long, env = "TXFORM_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    pub bootstrap: String,

    /// Records seeded per record size for the throughput runs.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,

    /// Record (value) sizes in bytes, each seeded into its own input topic.
    #[arg(long, value_delimiter = ',', default_values_t = [1024usize, 100])]
    pub sizes: Vec<usize>,

    /// Partitions of every input and output topic.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,

    /// Rounds; every round runs every system once per size, in an order rotated by the round.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,

    /// Systems to run (comma-separated), in this base order.
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = System::ALL.to_vec()
    )]
    pub systems: Vec<System>,

    /// Transaction / commit interval in ms: txform's batch.max_wait_ms and Kafka Streams'
    /// commit.interval.ms.
    #[arg(long, default_value_t = 100)]
    pub commit_interval_ms: u64,

    /// txform's batch.max_records (a batch is one transaction under exactly-once); the default is
    /// txform's own.
    #[arg(long, default_value_t = 100_000)]
    pub txform_max_records: u64,

    /// librdkafka property for txform's consumer (and the plain copier's), `key=value`
    /// (repeatable; giving any replaces all the defaults). The defaults keep librdkafka's prefetch
    /// small (RSS) and stop it from pausing a partition's fetches for a whole second whenever the
    /// small queue is full (fetch.queue.backoff.ms defaults to 1000). `fetch.max.bytes` is what
    /// txform's own default makes of that prefetch (half of it), given to the copiers too.
    #[arg(
        long = "txform-consumer",
        value_name = "KEY=VALUE",
        default_values_t = [
            "fetch.queue.backoff.ms=5".to_string(),
            "queued.max.messages.kbytes=4096".to_string(),
            "queued.min.messages=10000".to_string(),
            "fetch.max.bytes=2097152".to_string(),
        ]
    )]
    pub txform_consumer: Vec<String>,

    /// librdkafka property for txform's producer (and the plain copier's), `key=value`
    /// (repeatable; giving any replaces the defaults). The first default retries AddPartitionsToTxn
    /// after 5 ms instead of 100 ms: the coordinator answers CONCURRENT_TRANSACTIONS while the
    /// previous transaction's markers are being written, so the default cost every transaction
    /// about 100 ms (the Java producer uses 20 ms for this retry). `message.copy.max.bytes` is
    /// txform's own default, given to the plain copier too so neither copies a large value twice.
    #[arg(
        long = "txform-producer",
        value_name = "KEY=VALUE",
        default_values_t = [
            "retry.backoff.ms=5".to_string(),
            "message.copy.max.bytes=256".to_string(),
        ]
    )]
    pub txform_producer: Vec<String>,

    /// Directory holding the `txform` binary and `libtxform_passthrough.so` to measure, instead of
    /// building this workspace's release ones (e.g. an experimental build of the host).
    #[arg(long, value_name = "DIR")]
    pub txform_dir: Option<PathBuf>,

    /// RUST_LOG of the txform processes (`debug` logs every batch's timing, for profiling).
    #[arg(long, default_value = "info")]
    pub txform_log: String,

    /// TransactionalMessageCopier's --transaction-size (its max.poll.records: one poll is one
    /// transaction; it has no time-based commit). Default: txform's batch.max_records.
    #[arg(long)]
    pub copier_transaction_size: Option<u64>,

    /// Maximum heap (-Xmx) of both JVM systems.
    #[arg(long, default_value = "1g")]
    pub jvm_heap: String,

    /// Offered load of the latency runs, records per second.
    #[arg(long, default_value_t = 20_000)]
    pub latency_rate: u64,

    /// Measured duration of each latency run, seconds (after the warm-up).
    #[arg(long, default_value_t = 30)]
    pub latency_secs: u64,

    /// Warm-up at the offered load before measuring, seconds (excluded from the percentiles).
    #[arg(long, default_value_t = 3)]
    pub latency_warmup_secs: u64,

    /// Record size of the latency runs, bytes.
    #[arg(long, default_value_t = 1024)]
    pub latency_size: usize,

    /// Rounds of latency runs (default: --rounds).
    #[arg(long)]
    pub latency_rounds: Option<u32>,

    /// Skip the latency runs.
    #[arg(long)]
    pub no_latency: bool,

    /// Offered load of the low-steady-rate runs (txform exactly-once and the plain copier), records
    /// per second of --latency-size: what a record costs when the broker is not the limit. 0 skips
    /// them.
    #[arg(long, default_value_t = 8_000)]
    pub steady_rate: u64,

    /// Measured duration of each low-steady-rate run, seconds (after the warm-up).
    #[arg(long, default_value_t = 15)]
    pub steady_secs: u64,

    /// Distinct keys of the keyed input of the stateful systems (txform-count, streams-count).
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,

    /// Run the scaling sweep of these variables instead of the benchmark: txform exactly-once's
    /// throughput and CPU per record against source partitions (6, 60, 600), chain length (1, 3, 5
    /// stages of passthrough, then of json-transform) and batch interval (10, 100, 1000 ms).
    #[arg(long, value_delimiter = ',', value_name = "partitions|chain|interval")]
    pub sweep: Vec<SweepAxis>,

    /// Records seeded per sweep input.
    #[arg(long, default_value_t = 200_000)]
    pub sweep_records: u64,

    /// Record size of the sweep, bytes.
    #[arg(long, default_value_t = 1024)]
    pub sweep_size: usize,

    /// Rounds of the sweep.
    #[arg(long, default_value_t = 1)]
    pub sweep_rounds: u32,

    /// Do not run the plain copier at each partition count of the sweep.
    #[arg(long)]
    pub sweep_no_baseline: bool,

    /// Give up on one throughput run after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub run_timeout_secs: u64,

    /// Replace a section of this markdown file with this run's tables, e.g. docs/benchmarks.md.
    #[arg(long)]
    pub write_docs: Option<PathBuf>,

    /// The section --write-docs replaces: the text between `<!-- bench:SECTION:begin -->` and
    /// `<!-- bench:SECTION:end -->` (default: `results`, or `sweep` with --sweep).
    #[arg(long)]
    pub docs_section: Option<String>,

    /// Directory for this run's pipeline files, child logs and results.json
    /// (default: <target>/bench-runs/<run id>).
    #[arg(long)]
    pub results_dir: Option<PathBuf>,

    /// Measure nothing: render the tables of an earlier run's results.json (and --write-docs them).
    #[arg(long, value_name = "RESULTS_JSON")]
    pub render: Option<PathBuf>,

    /// Do not build txform, the passthrough plugin and the Kafka Streams app first (a Kafka Streams
    /// jar older than its sources is refused rather than measured).
    #[arg(long)]
    pub skip_build: bool,
}

impl Options {
    /// The options after `--smoke` shrank them to the CI size.
    pub fn effective(&self) -> Options {
        let mut options = self.clone();
        if options.smoke {
            options.records = 5_000;
            options.rounds = 1;
            options.latency_rounds = Some(1);
            options.latency_rate = 2_000;
            options.latency_secs = 3;
            options.latency_warmup_secs = 1;
            options.run_timeout_secs = options.run_timeout_secs.min(180);
            options.steady_rate = options.steady_rate.min(1_000);
            options.steady_secs = options.steady_secs.min(2);
            options.keys = options.keys.min(100);
            options.sweep_records = options.sweep_records.min(2_000);
        }
        options
    }

    /// The section of the docs page this run replaces.
    pub fn docs_section(&self) -> &str {
        match &self.docs_section {
            Some(section) => section,
            None if !self.sweep.is_empty() => "sweep",
            None => "results",
        }
    }

    pub fn latency_rounds(&self) -> u32 {
        self.latency_rounds.unwrap_or(self.rounds)
    }

    pub fn copier_transaction_size(&self) -> u64 {
        self.copier_transaction_size
            .unwrap_or(self.txform_max_records)
    }
}

/// Arguments of the baseline copier.
#[derive(Args, Debug, Clone)]
pub struct CopyArgs {
    #[arg(long)]
    pub bootstrap: String,
    #[arg(long)]
    pub input: String,
    #[arg(long)]
    pub output: String,
    #[arg(long)]
    pub group: String,
    /// librdkafka property of the consumer, `key=value` (repeatable).
    #[arg(long = "consumer", value_name = "KEY=VALUE")]
    pub consumer: Vec<String>,
    /// librdkafka property of the producer, `key=value` (repeatable).
    #[arg(long = "producer", value_name = "KEY=VALUE")]
    pub producer: Vec<String>,
    /// An idempotent producer (what exactly-once's producer pays, without transactions).
    #[arg(long)]
    pub idempotent: bool,
    /// Copy exactly once: one transaction per interval (the least an exactly-once copy needs).
    #[arg(long)]
    pub transactional: bool,
    /// With `--transactional`: a transaction commits this long after its first record.
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
    /// With `--transactional`: a transaction commits after this many records at the latest.
    #[arg(long, default_value_t = 100_000)]
    pub max_records: u64,
}

/// Splits `key=value`.
pub fn key_value(text: &str) -> anyhow::Result<(&str, &str)> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key, value)),
        _ => anyhow::bail!("expected KEY=VALUE, got `{text}`"),
    }
}
