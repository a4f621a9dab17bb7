//! The systems under test and how each is launched: what is built first, and the exact command
//! line (or pipeline file) of one copy job.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

use crate::cli::{key_value, Options};
use crate::pipeline::{Pipeline, StageKind};
use crate::sweep::SweepAxis;

/// One system under test.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// txform, `guarantee = "exactly-once"`, passthrough plugin keeping partitions.
    TxformEos,
    /// txform, `guarantee = "at-least-once"`.
    TxformAlo,
    /// Kafka Streams 4.1.1, identity mapValues, processing.guarantee=exactly_once_v2.
    Streams,
    /// Kafka's org.apache.kafka.tools.TransactionalMessageCopier (group mode, group metadata).
    Copier,
    /// The plain non-transactional rust-rdkafka copier of this crate (`txform-bench copy`).
    Baseline,
    /// The plain copier with an idempotent producer: what exactly-once's producer pays (sequence
    /// numbers, at most 5 requests in flight per broker) without transactions or a transform.
    BaselineIdempotent,
    /// The exactly-once floor (`txform-bench copy --transactional`): the plain copier inside
    /// transactions of txform's interval, read_committed, no transform. txform beyond it is the
    /// host's cost; it beyond the plain copier is the transaction protocol's.
    BaselineEos,
    /// Stateful: txform exactly-once with the `count` plugin (running count per key, `[state]`).
    TxformCount,
    /// Stateful: Kafka Streams `groupByKey().count()`, exactly_once_v2, record cache off.
    StreamsCount,
}

impl System {
    pub const ALL: [System; 6] = [
        System::TxformEos,
        System::TxformAlo,
        System::Streams,
        System::Copier,
        System::Baseline,
        System::BaselineEos,
    ];

    /// The stateful systems: they count per key over a keyed input instead of copying.
    pub const STATEFUL: [System; 2] = [System::TxformCount, System::StreamsCount];

    /// The name in tables.
    pub fn label(self) -> &'static str {
        match self {
            System::TxformEos => "txform exactly-once",
            System::TxformAlo => "txform at-least-once",
            System::Streams => "Kafka Streams exactly_once_v2",
            System::Copier => "TransactionalMessageCopier",
            System::Baseline => "plain copier (baseline)",
            System::BaselineIdempotent => "plain copier, idempotent producer",
            System::BaselineEos => "minimal exactly-once copier",
            System::TxformCount => "txform count (exactly-once, state)",
            System::StreamsCount => "Kafka Streams groupByKey().count() exactly_once_v2",
        }
    }

    /// The name in topic, group and file names.
    pub fn id(self) -> &'static str {
        match self {
            System::TxformEos => "txform-eos",
            System::TxformAlo => "txform-alo",
            System::Streams => "streams",
            System::Copier => "copier",
            System::Baseline => "baseline",
            System::BaselineIdempotent => "baseline-idempotent",
            System::BaselineEos => "baseline-eos",
            System::TxformCount => "txform-count",
            System::StreamsCount => "streams-count",
        }
    }

    /// False for TransactionalMessageCopier: it copies the backlog present when its partitions are
    /// assigned and then exits, so it cannot serve a paced latency run.
    pub fn continuous(self) -> bool {
        self != System::Copier
    }

    /// Counts per key over the keyed input (and keeps state that a restart must restore).
    pub fn stateful(self) -> bool {
        System::STATEFUL.contains(&self)
    }

    fn uses_txform(self) -> bool {
        matches!(
            self,
            System::TxformEos | System::TxformAlo | System::TxformCount
        )
    }

    fn uses_java(self) -> bool {
        matches!(
            self,
            System::Streams | System::Copier | System::StreamsCount
        )
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// One copy: input topic to a fresh output topic, with ids no earlier job used.
pub struct Job<'a> {
    pub input: &'a str,
    pub output: &'a str,
    /// Group id, application id and transactional id of the job.
    pub id: &'a str,
    /// Scratch directory of the job (pipeline file, Streams state).
    pub dir: &'a Path,
}

/// Everything needed to launch the systems, resolved once per benchmark.
pub struct Launcher {
    bootstrap: String,
    workspace: PathBuf,
    txform_bin: PathBuf,
    /// Directory of the plugin libraries (next to the txform binary).
    plugins: PathBuf,
    self_exe: PathBuf,
    java: String,
    jvm_heap: String,
    streams_classpath: String,
    tools_classpath: String,
    commit_interval_ms: u64,
    txform_max_records: u64,
    txform_consumer: Vec<(String, String)>,
    txform_producer: Vec<(String, String)>,
    txform_log: String,
    /// Set when the txform binary is not this workspace's release build.
    txform_custom: Option<PathBuf>,
    copier_transaction_size: u64,
}

/// The workspace root (this crate is `<workspace>/bench`).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Cargo's target directory: `CARGO_TARGET_DIR` or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"))
}

impl Launcher {
    /// Builds what the selected systems need (unless `skip_build`) and resolves their paths.
    pub fn prepare(options: &Options) -> anyhow::Result<Launcher> {
        let workspace = workspace_dir();
        let release = target_dir().join("release");
        let needs = |f: fn(System) -> bool| options.systems.iter().any(|s| f(*s));
        // Absolute: the pipeline files name the plugin, and txform resolves relative plugin paths
        // against the pipeline file's own directory.
        let txform_dir = match &options.txform_dir {
            Some(dir) => std::fs::canonicalize(dir)
                .with_context(|| format!("--txform-dir {}", dir.display()))?,
            None => release.clone(),
        };
        if needs(System::uses_txform) && !options.skip_build && options.txform_dir.is_none() {
            // Always the release build of the host and the plugin that is measured, never a stale one.
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
            let mut args = vec!["build", "--release", "-p", "txform"];
            for kind in stage_kinds(options) {
                args.extend(["-p", kind.package()]);
            }
            run_tool(
                Command::new(cargo).current_dir(&workspace).args(&args),
                &format!("cargo {}", args.join(" ")),
            )?;
        }
        let streams_dir = workspace.join("bench/streams");
        if needs(|s| matches!(s, System::Streams | System::StreamsCount)) {
            if !options.skip_build {
                build_streams_app(&streams_dir)?;
            } else if streams_app_stale(&streams_dir) {
                // Measuring a jar older than its sources fails late and obscurely (ClassNotFound).
                bail!(
                    "the Kafka Streams app in {} is missing or older than its sources: run without \
                     --skip-build, or `mvn package` there",
                    streams_dir.display()
                );
            }
        }
        let tools_classpath = if options.systems.contains(&System::Copier) {
            let output = Command::new(workspace.join("scripts/kafka.sh"))
                .arg("tools-classpath")
                .output()
                .context("run scripts/kafka.sh tools-classpath")?;
            if !output.status.success() {
                bail!(
                    "scripts/kafka.sh tools-classpath failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            String::from_utf8_lossy(&output.stdout).trim().to_string()
        } else {
            String::new()
        };
        let launcher = Launcher {
            bootstrap: options.bootstrap.clone(),
            txform_bin: txform_dir.join("txform"),
            plugins: txform_dir.clone(),
            self_exe: std::env::current_exe().context("locate the txform-bench executable")?,
            java: "java".to_string(),
            jvm_heap: options.jvm_heap.clone(),
            streams_classpath: format!(
                "{}:{}",
                streams_dir
                    .join("target/txform-bench-streams.jar")
                    .display(),
                streams_dir.join("target/lib/*").display()
            ),
            tools_classpath,
            commit_interval_ms: options.commit_interval_ms,
            txform_max_records: options.txform_max_records,
            txform_consumer: parse_properties(&options.txform_consumer)?,
            txform_producer: parse_properties(&options.txform_producer)?,
            txform_log: options.txform_log.clone(),
            txform_custom: options.txform_dir.clone(),
            copier_transaction_size: options.copier_transaction_size(),
            workspace,
        };
        if needs(System::uses_txform) {
            let kinds = stage_kinds(options);
            let files = std::iter::once(launcher.txform_bin.clone())
                .chain(kinds.iter().map(|k| launcher.plugins.join(k.library())));
            for file in files {
                if !file.exists() {
                    let packages: Vec<String> = kinds
                        .iter()
                        .map(|k| format!("-p {}", k.package()))
                        .collect();
                    bail!(
                        "{} is missing: cargo build --release -p txform {}",
                        file.display(),
                        packages.join(" ")
                    );
                }
            }
        }
        if needs(System::uses_java) {
            run_tool(
                Command::new(&launcher.java).arg("-version"),
                "java -version (JDK 17+ needed)",
            )?;
        }
        Ok(launcher)
    }

    /// The command that runs `system` on `job`. Writes the job's files (txform's pipeline.toml).
    pub fn command(&self, system: System, job: &Job<'_>) -> anyhow::Result<Command> {
        match system {
            System::TxformEos | System::TxformAlo => {
                let guarantee = if system == System::TxformEos {
                    "exactly-once"
                } else {
                    "at-least-once"
                };
                let pipeline = self.pipeline(job, guarantee, StageKind::Passthrough, 1);
                self.txform(job, &pipeline)
            }
            System::TxformCount => {
                let mut pipeline = self.pipeline(job, "exactly-once", StageKind::Count, 1);
                pipeline.state_dir = state_dir(system, job);
                self.txform(job, &pipeline)
            }
            System::Streams => Ok(self.streams(job, "txform.bench.StreamsCopy")),
            System::StreamsCount => {
                let mut command = self.streams(job, "txform.bench.StreamsCount");
                // Every input updates the store, the changelog and the output, as txform's count
                // does: with the record cache on, Streams would emit (and log) only the last count
                // of each key per commit interval.
                command.arg("statestore.cache.max.bytes=0");
                Ok(command)
            }
            System::Copier => {
                let mut command = Command::new(&self.java);
                command
                    .arg(format!("-Xmx{}", self.jvm_heap))
                    .arg(format!(
                        "-Dlog4j2.configurationFile={}",
                        self.workspace
                            .join("scripts/kafka/log4j2.properties")
                            .display()
                    ))
                    .arg("-Dtxform.kafka.log.level=WARN")
                    .arg("-cp")
                    .arg(&self.tools_classpath)
                    .arg("org.apache.kafka.tools.TransactionalMessageCopier")
                    .args(["--broker-list", &self.bootstrap])
                    .args(["--input-topic", job.input])
                    // Required by its argument parser, ignored in group mode.
                    .args(["--input-partition", "0"])
                    .args(["--output-topic", job.output])
                    .args(["--consumer-group", job.id])
                    .args(["--transactional-id", job.id])
                    .args([
                        "--transaction-size",
                        &self.copier_transaction_size.to_string(),
                    ])
                    .args(["--group-mode", "--use-group-metadata"]);
                Ok(command)
            }
            System::Baseline | System::BaselineIdempotent | System::BaselineEos => {
                let mut command = Command::new(&self.self_exe);
                command
                    .arg("copy")
                    .args(["--bootstrap", &self.bootstrap])
                    .args(["--input", job.input])
                    .args(["--output", job.output])
                    .args(["--group", job.id]);
                if system == System::BaselineIdempotent {
                    command.arg("--idempotent");
                }
                if system == System::BaselineEos {
                    command
                        .arg("--transactional")
                        .args(["--interval-ms", &self.commit_interval_ms.to_string()])
                        .args(["--max-records", &self.txform_max_records.to_string()]);
                }
                for (key, value) in &self.txform_consumer {
                    command.arg("--consumer").arg(format!("{key}={value}"));
                }
                for (key, value) in &self.txform_producer {
                    command.arg("--producer").arg(format!("{key}={value}"));
                }
                Ok(command)
            }
        }
    }

    /// txform running a chain of `stages` stages of `kind` on `job`, with the batch interval
    /// `max_wait_ms` (the chain and interval sweeps).
    pub fn txform_chain(
        &self,
        job: &Job<'_>,
        kind: StageKind,
        stages: usize,
        max_wait_ms: u64,
    ) -> anyhow::Result<Command> {
        let mut pipeline = self.pipeline(job, "exactly-once", kind, stages);
        pipeline.max_wait_ms = max_wait_ms;
        self.txform(job, &pipeline)
    }

    /// `txform run` of `pipeline`, written into the job's directory.
    fn txform(&self, job: &Job<'_>, pipeline: &Pipeline<'_>) -> anyhow::Result<Command> {
        let file = job.dir.join("pipeline.toml");
        std::fs::write(&file, pipeline.render())
            .with_context(|| format!("write {}", file.display()))?;
        let mut command = Command::new(&self.txform_bin);
        command
            .arg("run")
            .arg(&file)
            .env("RUST_LOG", &self.txform_log);
        Ok(command)
    }

    /// A Kafka Streams app of bench/streams (`class`) on `job`, exactly_once_v2 at the interval.
    fn streams(&self, job: &Job<'_>, class: &str) -> Command {
        let mut command = Command::new(&self.java);
        command
            .arg(format!("-Xmx{}", self.jvm_heap))
            .arg("-cp")
            .arg(&self.streams_classpath)
            .arg(class)
            .args([&self.bootstrap, job.input, job.output, job.id])
            .arg(job.dir.join("streams-state"))
            .arg("processing.guarantee=exactly_once_v2")
            .arg(format!("commit.interval.ms={}", self.commit_interval_ms));
        command
    }

    /// txform's pipeline for `job`: the benchmark's settings and a chain of `kind`.
    fn pipeline<'a>(
        &'a self,
        job: &Job<'a>,
        guarantee: &'a str,
        kind: StageKind,
        stages: usize,
    ) -> Pipeline<'a> {
        Pipeline {
            bootstrap: &self.bootstrap,
            consumer: &self.txform_consumer,
            producer: &self.txform_producer,
            input: job.input,
            output: job.output,
            id: job.id,
            guarantee,
            max_records: self.txform_max_records,
            max_wait_ms: self.commit_interval_ms,
            plugins: &self.plugins,
            kind,
            stages,
            state_dir: None,
        }
    }

    /// How the `systems` of a run were configured, for the report.
    pub fn describe(&self, systems: &[System]) -> Vec<String> {
        let props = |p: &[(String, String)]| {
            if p.is_empty() {
                "librdkafka defaults".to_string()
            } else {
                p.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let build = match &self.txform_custom {
            Some(dir) => format!(
                "binary and plugin from {} (not this workspace's build)",
                dir.display()
            ),
            None => "release build".to_string(),
        };
        let mut lines = Vec::new();
        if systems.iter().any(|s| s.uses_txform()) {
            lines.push(format!(
                "txform: {build}, passthrough plugin (keep_partition = true), batch.max_records = {}, batch.max_wait_ms = {}; consumer: {}; producer: {}",
                self.txform_max_records,
                self.commit_interval_ms,
                props(&self.txform_consumer),
                props(&self.txform_producer)
            ));
        }
        if systems.contains(&System::Streams) {
            lines.push(format!(
                "Kafka Streams 4.1.1: processing.guarantee=exactly_once_v2, commit.interval.ms={}, 1 stream thread, ByteArray serdes, other settings default; JVM -Xmx{}",
                self.commit_interval_ms, self.jvm_heap
            ));
        }
        if systems.contains(&System::Copier) {
            lines.push(format!(
                "TransactionalMessageCopier (kafka-tools 4.1.1): --group-mode --use-group-metadata --transaction-size {} (its max.poll.records; one poll = one transaction); its producer has batch.size=512 hard-coded; JVM -Xmx{}",
                self.copier_transaction_size, self.jvm_heap
            ));
        }
        if systems.contains(&System::TxformCount) {
            lines.push(format!(
                "txform count: {build}, exactly-once, the count plugin (output key = input key, value = the running count as decimal text), [state] in the job's directory; batch and librdkafka settings as above"
            ));
        }
        if systems.contains(&System::StreamsCount) {
            lines.push(format!(
                "Kafka Streams 4.1.1 count: groupByKey().count() (RocksDB store, changelog), output key -> count as decimal text, processing.guarantee=exactly_once_v2, commit.interval.ms={}, statestore.cache.max.bytes=0 (one output and one changelog record per input, like txform), 1 stream thread; JVM -Xmx{}",
                self.commit_interval_ms, self.jvm_heap
            ));
        }
        if systems.contains(&System::Baseline) {
            lines.push(format!(
                "plain copier: rust-rdkafka BaseConsumer (auto-commit) + BaseProducer (acks=all, not idempotent); consumer: {}; producer: {} (txform's); no batching, no transform",
                props(&self.txform_consumer),
                props(&self.txform_producer)
            ));
        }
        if systems.contains(&System::BaselineIdempotent) {
            lines.push(
                "plain copier, idempotent producer: the plain copier with enable.idempotence=true (acks=all, at most 5 requests in flight per broker), same properties".to_string(),
            );
        }
        if systems.contains(&System::BaselineEos) {
            lines.push(format!(
                "minimal exactly-once copier: the plain copier inside transactions (read_committed consumer, transactional producer; begin at the first record, send the offsets with the group metadata and commit {} ms later or after {} records), same properties; no transform, no batch kept, no error policy",
                self.commit_interval_ms, self.txform_max_records
            ));
        }
        lines
    }
}

/// The directory of `system`'s local state in `job` (deleted to measure a restore from the
/// changelog); `None` for the stateless systems.
pub fn state_dir(system: System, job: &Job<'_>) -> Option<PathBuf> {
    match system {
        System::TxformCount => Some(job.dir.join("txform-state")),
        System::StreamsCount => Some(job.dir.join("streams-state")),
        _ => None,
    }
}

/// The plugins the selected systems and sweeps run.
fn stage_kinds(options: &Options) -> Vec<StageKind> {
    let mut kinds = vec![StageKind::Passthrough];
    if options.sweep.contains(&SweepAxis::Chain) {
        kinds.push(StageKind::Json);
    }
    if options.systems.contains(&System::TxformCount) {
        kinds.push(StageKind::Count);
    }
    kinds
}

fn parse_properties(list: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    list.iter()
        .map(|p| key_value(p).map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// `mvn package` of bench/streams when its jar is missing or older than its sources.
fn build_streams_app(dir: &Path) -> anyhow::Result<()> {
    if !streams_app_stale(dir) {
        return Ok(());
    }
    log::info!(
        "building the Kafka Streams app (mvn package in {})",
        dir.display()
    );
    run_tool(
        Command::new("mvn")
            .args(["-q", "-B", "-Dstyle.color=never", "-f"])
            .arg(dir.join("pom.xml"))
            .arg("package"),
        "mvn package of bench/streams",
    )
}

/// Whether bench/streams' jar (or its copied dependencies) is missing or older than its sources.
fn streams_app_stale(dir: &Path) -> bool {
    let jar = dir.join("target/txform-bench-streams.jar");
    let built = modified(&jar);
    let sources = [
        dir.join("pom.xml"),
        dir.join("src/main/java/txform/bench/StreamsCopy.java"),
        dir.join("src/main/java/txform/bench/StreamsCount.java"),
        dir.join("src/main/resources/log4j2.properties"),
    ];
    let stale = match built {
        None => true,
        Some(built) => sources
            .iter()
            .any(|s| modified(s).is_none_or(|m| m > built)),
    };
    stale || !dir.join("target/lib").is_dir()
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Runs a build tool, failing with its output.
fn run_tool(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command.output().with_context(|| format!("run {what}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let tail: Vec<&str> = stderr.lines().chain(stdout.lines()).collect();
        bail!(
            "{what} failed ({}):\n{}",
            output.status,
            tail[tail.len().saturating_sub(30)..].join("\n")
        );
    }
    Ok(())
}
