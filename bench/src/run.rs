//! The benchmark: seed the inputs, then rounds of throughput runs and of latency runs, each round
//! running every system in turn (order rotated per round) so that all of them share the machine's
//! conditions; then the report.
//!
//! Definitions (identical for every system; docs/benchmarks.md repeats them):
//! - visible: returned by a read_committed consumer in this process reading the output topic.
//! - throughput: (N − N/100) / (t(N visible) − t(N/100 visible)), N the records seeded. Start-up
//!   (JVM, group join, init_transactions) and the first transactions are outside the window; the
//!   time to the first visible record is reported separately.
//! - CPU per million records: the child's user + system CPU seconds (/proc/<pid>/stat) sampled at
//!   the same two moments, divided by the records in between.
//! - peak RSS: the child's VmHWM (/proc/<pid>/status), sampled every 20 ms until it exits.
//! - latency: reader's clock at visibility minus the record's scheduled send time.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};

use crate::cli::Options;
use crate::kafka::{Kafka, Reader, ReaderPlan, ReaderReport, Values};
use crate::listener;
use crate::machine::Machine;
use crate::payload;
use crate::process::{cpu_seconds, Child, CpuSample};
use crate::report::{self, LatencyRun, Results, ThroughputRun};
use crate::stats::quantile;
use crate::sweep::{self, SweepRun};
use crate::systems::{state_dir, target_dir, Job, Launcher, System};

/// How long a stopped system may take to shut down before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// How long a latency run waits for a system to copy its probe record (start-up included).
const PROBE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a latency run waits, after the load ended, for the last measured record.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a restarted stateful system may take to restore and count one new record.
const RESTART_TIMEOUT: Duration = Duration::from_secs(180);
/// A throughput run timed over less than this gets a warning: too short for its rate and CPU.
const MIN_TIMED_WINDOW_SECS: f64 = 1.0;

/// How the sweep's jobs differ from the copy, for the report.
const SWEEP_SETTINGS: &str = "Sweep: each point copies its own seeded input (that many partitions; JSON objects for the json-transform chains) to a fresh output topic of the same partition count, fresh group and transactional ids; json-transform stage N sets field stageN = N (every stage parses and serializes); the plain copier runs only on the partitions axis.";

/// A paced load: a latency run, or a low-steady-rate run.
struct Load {
    /// `lat` or `steady`, in ids.
    tag: &'static str,
    rate: u64,
    secs: u64,
    warmup_secs: u64,
    size: usize,
}

/// Shared state of one benchmark run.
struct Bench<'a> {
    options: &'a Options,
    kafka: Kafka,
    /// The local broker process, when found: its CPU is sampled with each system's.
    broker_pid: Option<libc::pid_t>,
    launcher: Launcher,
    run_id: String,
    dir: PathBuf,
    /// Records of key 0 that restarts added to each input topic after it was seeded: every system
    /// of a round reads the same input, so the next system's counts include them.
    added_to_key0: RefCell<HashMap<String, u64>>,
}

pub fn benchmark(cli_options: &Options) -> anyhow::Result<()> {
    if let Some(path) = &cli_options.render {
        return render(path, cli_options);
    }
    let options = cli_options.effective();
    check(&options)?;
    let started = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let run_id = format!("{started_unix}-{}", std::process::id());
    let dir = options
        .results_dir
        .clone()
        .unwrap_or_else(|| target_dir().join("bench-runs").join(&run_id));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    log::info!("run {run_id}: logs and results in {}", dir.display());

    let kafka = Kafka::new(&options.bootstrap);
    kafka.check()?;
    let launcher = Launcher::prepare(&options)?;
    let broker_pid = listener::broker_pid(&options.bootstrap);
    match broker_pid {
        Some(pid) => log::info!("broker: process {pid}, its CPU is measured with each system's"),
        None => log::info!(
            "no local process listens on {}: the broker's CPU is not measured",
            options.bootstrap
        ),
    }
    let bench = Bench {
        options: &options,
        kafka,
        broker_pid,
        launcher,
        run_id,
        dir,
        added_to_key0: RefCell::new(HashMap::new()),
    };

    let mut inputs = Vec::new();
    let mut seeding = Vec::new();
    let mut measured = Measured::default();
    let result = if options.sweep.is_empty() {
        bench.seed_and_run(&mut inputs, &mut seeding, &mut measured)
    } else {
        bench.sweep(&mut inputs, &mut seeding, &mut measured)
    };
    let names: Vec<&str> = inputs.iter().map(String::as_str).collect();
    bench.kafka.delete_topics(&names);
    result?;
    let Measured {
        throughput,
        latency,
        steady,
        sweep,
    } = measured;

    let results = Results {
        run_id: bench.run_id.clone(),
        started_utc: report::utc(started_unix),
        command: command_line(),
        elapsed_secs: started.elapsed().as_secs_f64(),
        machine: Machine::detect(),
        records: options.records,
        partitions: options.partitions,
        sizes: options.sizes.clone(),
        rounds: options.rounds,
        systems: options.systems.clone(),
        settings: bench.settings(),
        seeding,
        throughput,
        latency,
        commit_interval_ms: Some(options.commit_interval_ms),
        steady,
        keys: options
            .systems
            .iter()
            .any(|s| s.stateful())
            .then_some(options.keys),
        sweep,
        sweep_records: options.sweep_records,
        sweep_size: options.sweep_size,
        max_records: options.txform_max_records,
    };
    let json = bench.dir.join("results.json");
    std::fs::write(
        &json,
        serde_json::to_string_pretty(&results).context("serialize the results")?,
    )
    .with_context(|| format!("write {}", json.display()))?;
    let markdown = results.markdown();
    println!("{markdown}");
    log::info!("results: {}", json.display());
    if let Some(docs) = &options.write_docs {
        if options.smoke {
            log::warn!("--smoke: not writing {}", docs.display());
        } else {
            report::write_docs(docs, options.docs_section(), &markdown)?;
            log::info!("updated {}", docs.display());
        }
    }
    match results.failures() {
        0 => Ok(()),
        n => bail!(
            "{n} run(s) failed; see the error column above and the logs in {}",
            bench.dir.display()
        ),
    }
}

/// Re-renders an earlier run's results (after a change to the report's layout).
fn render(path: &std::path::Path, options: &Options) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let results: Results =
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    let markdown = results.markdown();
    println!("{markdown}");
    if let Some(docs) = &options.write_docs {
        report::write_docs(docs, options.docs_section(), &markdown)?;
        log::info!("updated {}", docs.display());
    }
    Ok(())
}

fn check(options: &Options) -> anyhow::Result<()> {
    if options.systems.is_empty() {
        bail!("--systems is empty");
    }
    if options.sizes.is_empty() {
        bail!("--sizes is empty");
    }
    for &size in options.sizes.iter().chain([&options.latency_size]) {
        if size < payload::HEADER_LEN {
            bail!(
                "record size {size} is below the {} bytes of the benchmark's record header",
                payload::HEADER_LEN
            );
        }
    }
    if options.records < 100 {
        bail!("--records must be at least 100");
    }
    if options.partitions < 1 || options.rounds < 1 || options.latency_rate < 1 {
        bail!("--partitions, --rounds and --latency-rate must be at least 1");
    }
    if options.keys < 1 {
        bail!("--keys must be at least 1");
    }
    if !options.sweep.is_empty() {
        if options.sweep_records < 100 || options.sweep_rounds < 1 {
            bail!("--sweep-records must be at least 100 and --sweep-rounds at least 1");
        }
        if options.sweep_size < payload::HEADER_LEN {
            bail!(
                "--sweep-size {} is below the {} bytes of the benchmark's record header",
                options.sweep_size,
                payload::HEADER_LEN
            );
        }
    }
    Ok(())
}

/// The command line as typed (cargo's own part is not visible from here).
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        "cargo run --release -p txform-bench".to_string()
    } else {
        format!("cargo run --release -p txform-bench -- {}", args.join(" "))
    }
}

/// What a run measured.
#[derive(Default)]
struct Measured {
    throughput: Vec<ThroughputRun>,
    latency: Vec<LatencyRun>,
    steady: Vec<LatencyRun>,
    sweep: Vec<SweepRun>,
}

/// `items` rotated left by `by`: round r starts with a different system.
fn rotated<T: Copy>(items: &[T], by: usize) -> Vec<T> {
    let mut out = items.to_vec();
    if !out.is_empty() {
        let by = by % out.len();
        out.rotate_left(by);
    }
    out
}

impl Bench<'_> {
    fn settings(&self) -> Vec<String> {
        let o = self.options;
        if !o.sweep.is_empty() {
            let mut lines = self
                .launcher
                .describe(&[System::TxformEos, System::Baseline]);
            lines.push(SWEEP_SETTINGS.to_string());
            return lines;
        }
        let mut lines = self.launcher.describe(&o.systems);
        lines.push(format!(
            "Each throughput run copies the seeded input ({} partitions, no keys, values of the stated size) to a fresh output topic with fresh group / application / transactional ids; rounds: {}, systems rotated per round.",
            o.partitions, o.rounds
        ));
        if !o.no_latency {
            lines.push(format!(
                "Latency runs: fresh input and output topics per run; the system copies one probe record first (start-up excluded), then {} s warm-up and {} s measured at {} records/s of {} B, produced by an idempotent rust-rdkafka producer with linger.ms=5; rounds: {}.",
                o.latency_warmup_secs,
                o.latency_secs,
                report::thousands(o.latency_rate),
                o.latency_size,
                o.latency_rounds()
            ));
        }
        lines
    }

    /// Seeds `topic` (created with `partitions`) and notes how long it took.
    fn seed(
        &self,
        topic: &str,
        partitions: i32,
        records: u64,
        size: usize,
        values: Values,
        seeding: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        self.kafka.create_topic(topic, partitions)?;
        let took = self
            .kafka
            .seed(topic, partitions, records, size, values)
            .with_context(|| format!("seed {topic}"))?;
        let what = match values {
            Values::Text => String::new(),
            Values::Json => " (JSON objects)".to_string(),
            Values::Keyed { keys } => format!(" with {} keys", report::thousands(keys)),
        };
        let line = format!(
            "Seeded {} records of {size} B{what} into {partitions} partitions in {:.1} s ({} records/s).",
            report::thousands(records),
            took.as_secs_f64(),
            report::thousands((records as f64 / took.as_secs_f64().max(1e-9)) as u64)
        );
        log::info!("{line}");
        seeding.push(line);
        Ok(())
    }

    fn seed_and_run(
        &self,
        inputs: &mut Vec<String>,
        seeding: &mut Vec<String>,
        measured: &mut Measured,
    ) -> anyhow::Result<()> {
        let o = self.options;
        let any = |f: fn(&System) -> bool| o.systems.iter().any(f);
        // Per size: the unkeyed input of the copies and the keyed input of the counts.
        let mut topics = Vec::new();
        for &size in &o.sizes {
            let mut pair = (None, None);
            if any(|s| !s.stateful()) {
                let topic = format!("txform-bench-{}-in-{size}", self.run_id);
                inputs.push(topic.clone());
                self.seed(&topic, o.partitions, o.records, size, Values::Text, seeding)?;
                pair.0 = Some(topic);
            }
            if any(|s| s.stateful()) {
                let topic = format!("txform-bench-{}-in-{size}-keyed", self.run_id);
                inputs.push(topic.clone());
                let values = Values::Keyed { keys: o.keys };
                self.seed(&topic, o.partitions, o.records, size, values, seeding)?;
                pair.1 = Some(topic);
            }
            topics.push((size, pair));
        }

        for round in 1..=o.rounds {
            for (size, (plain, keyed)) in &topics {
                for system in rotated(&o.systems, (round - 1) as usize) {
                    let input = if system.stateful() { keyed } else { plain };
                    let Some(input) = input else { continue };
                    let run = self.throughput_run(round, *size, system, input);
                    log_throughput(&run);
                    measured.throughput.push(run);
                }
            }
        }

        let paced: Vec<System> = o
            .systems
            .iter()
            .copied()
            .filter(|s| s.continuous() && !s.stateful())
            .collect();
        if !o.no_latency {
            let load = Load {
                tag: "lat",
                rate: o.latency_rate,
                secs: o.latency_secs,
                warmup_secs: o.latency_warmup_secs,
                size: o.latency_size,
            };
            for round in 1..=o.latency_rounds() {
                for system in rotated(&paced, (round - 1) as usize) {
                    let run = self.latency_run(round, system, &load);
                    log_latency(&run);
                    measured.latency.push(run);
                }
            }
        }
        if o.steady_rate > 0 {
            // The target's subject and its floors (plain, and exactly-once).
            let load = Load {
                tag: "steady",
                rate: o.steady_rate,
                secs: o.steady_secs,
                warmup_secs: o.latency_warmup_secs,
                size: o.latency_size,
            };
            for system in paced.iter().copied().filter(|s| {
                matches!(
                    s,
                    System::TxformEos | System::Baseline | System::BaselineEos
                )
            }) {
                let run = self.latency_run(1, system, &load);
                log_latency(&run);
                measured.steady.push(run);
            }
        }
        Ok(())
    }

    /// The scaling sweep: every point of the asked axes, `--sweep-rounds` times.
    fn sweep(
        &self,
        inputs: &mut Vec<String>,
        seeding: &mut Vec<String>,
        measured: &mut Measured,
    ) -> anyhow::Result<()> {
        let o = self.options;
        let points = sweep::points(
            &o.sweep,
            o.partitions,
            o.commit_interval_ms,
            !o.sweep_no_baseline,
        );
        let mut topics = Vec::new();
        for (partitions, json) in sweep::inputs(&points) {
            let kind = if json { "json" } else { "text" };
            let topic = format!("txform-bench-{}-sweep-in-p{partitions}-{kind}", self.run_id);
            inputs.push(topic.clone());
            let values = if json { Values::Json } else { Values::Text };
            self.seed(
                &topic,
                partitions,
                o.sweep_records,
                o.sweep_size,
                values,
                seeding,
            )?;
            topics.push(((partitions, json), topic));
        }
        for round in 1..=o.sweep_rounds {
            for point in &points {
                let Some((_, input)) = topics.iter().find(|(key, _)| *key == point.input()) else {
                    bail!("no input seeded for {point:?}");
                };
                let id = format!("txform-bench-{}-r{round}-sweep-{}", self.run_id, point.id());
                let mut run =
                    ThroughputRun::new(round, o.sweep_size, point.system, o.sweep_records);
                log::info!(
                    "sweep round {round}: {} with {} = {}",
                    point.system.label(),
                    point.axis.label(),
                    point.value()
                );
                let result =
                    self.throughput_job(&mut run, input, point.partitions, &id, &|job| match point
                        .system
                    {
                        System::TxformEos => self.launcher.txform_chain(
                            job,
                            point.kind,
                            point.stages,
                            point.interval_ms,
                        ),
                        other => self.launcher.command(other, job),
                    });
                if let Err(error) = result {
                    run.error = Some(format!("{error:#}"));
                }
                log_throughput(&run);
                measured.sweep.push(SweepRun {
                    point: point.clone(),
                    run,
                });
            }
        }
        Ok(())
    }

    /// A fresh id for one job, and its scratch directory.
    fn job_dir(&self, id: &str) -> anyhow::Result<PathBuf> {
        let dir = self.dir.join(id);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(dir)
    }

    fn throughput_run(
        &self,
        round: u32,
        size: usize,
        system: System,
        input: &str,
    ) -> ThroughputRun {
        let id = format!("txform-bench-{}-r{round}-{system}-{size}", self.run_id);
        let mut run = ThroughputRun::new(round, size, system, self.options.records);
        log::info!(
            "round {round}: {} on {} records of {size} B",
            system.label(),
            report::thousands(self.options.records)
        );
        let partitions = self.options.partitions;
        let result = self.throughput_job(&mut run, input, partitions, &id, &|job| {
            self.launcher.command(system, job)
        });
        if let Err(error) = result {
            run.error = Some(format!("{error:#}"));
        }
        run
    }

    /// Runs one throughput job on a fresh output topic (deleted afterwards) and fills `run`.
    fn throughput_job(
        &self,
        run: &mut ThroughputRun,
        input: &str,
        partitions: i32,
        id: &str,
        command: &dyn Fn(&Job<'_>) -> anyhow::Result<Command>,
    ) -> anyhow::Result<()> {
        let output = format!("{id}-out");
        let result = self.measure_throughput(run, input, &output, partitions, id, command);
        self.kafka.delete_topics(&[&output]);
        result
    }

    fn measure_throughput(
        &self,
        run: &mut ThroughputRun,
        input: &str,
        output: &str,
        partitions: i32,
        id: &str,
        command: &dyn Fn(&Job<'_>) -> anyhow::Result<Command>,
    ) -> anyhow::Result<()> {
        let records = run.records;
        let dir = self.job_dir(id)?;
        self.kafka.create_topic(output, partitions)?;
        let job = Job {
            input,
            output,
            id,
            dir: &dir,
        };
        let mut child = Child::spawn(run.system.label(), command(&job)?, &dir.join("log.txt"))?;
        let window_start = (records / 100).max(1);
        let reader = Reader::start(
            &self.kafka,
            ReaderPlan {
                topic: output.to_string(),
                partitions,
                target: records,
                window_start,
                pid: Some(child.pid()),
                broker_pid: self.broker_pid,
            },
        )?;
        let deadline = child.spawned_at() + Duration::from_secs(self.options.run_timeout_secs);
        wait_for_reader(&reader, &child, deadline);
        let seen = reader.count();
        let report = reader.finish();
        let exit = child.terminate(STOP_GRACE)?;
        run.exit_code = Some(exit.code);
        run.cpu_total_secs = Some(exit.cpu_seconds);
        run.peak_rss_mib = exit.peak_rss_kib.map(|kib| kib as f64 / 1024.0);
        let report = report?;
        let (Some((start_at, start_cpu)), Some((done_at, done_cpu))) =
            (report.window_start, report.done)
        else {
            bail!(
                "only {seen} of {records} records visible (exit code {}, {:.0} s after start); last log lines of {}:\n{}",
                exit.code,
                child.spawned_at().elapsed().as_secs_f64(),
                child.log().display(),
                child.log_tail(15)
            );
        };
        let in_window = (records - window_start) as f64;
        let window = done_at.duration_since(start_at).as_secs_f64().max(1e-6);
        if window < MIN_TIMED_WINDOW_SECS && !self.options.smoke {
            // CPU sampled at the window's ends misses the work done before the first sample
            // (e.g. a 1.4 M records/s copier spends 0.36 s on 500,000 records).
            log::warn!(
                "{} {} B: timed over only {window:.2} s; its rate and CPU per record are rough (raise --records)",
                run.system.label(),
                run.size
            );
        }
        let rate = in_window / window;
        run.records_per_sec = Some(rate);
        run.mb_per_sec = Some(rate * run.size as f64 / 1e6);
        let used = |of: fn(&CpuSample) -> Option<f64>| Some(of(&done_cpu)? - of(&start_cpu)?);
        let per_million = |cpu: f64| cpu / in_window * 1e6;
        run.cpu_per_million = used(|s| s.system).map(per_million);
        if run.cpu_per_million.is_none() {
            log::warn!("no CPU sample of {} in the window", run.system.label());
        }
        run.broker_cpu_per_million = used(|s| s.broker).map(per_million);
        run.machine_busy_cores = used(|s| s.machine).map(|cpu| cpu / window);
        run.first_output_secs = report
            .first_at
            .map(|t| t.duration_since(child.spawned_at()).as_secs_f64());
        run.wall_secs = Some(done_at.duration_since(child.spawned_at()).as_secs_f64());
        if run.system.stateful() {
            // The count of key 0 so far: every one of its records was counted once.
            let counted = payload::records_of_key(0, records, self.options.keys)
                + self
                    .added_to_key0
                    .borrow()
                    .get(job.input)
                    .copied()
                    .unwrap_or(0);
            run.restart_local_secs =
                Some(self.restart(run.system, &job, partitions, counted + 1, false)?);
            run.restart_changelog_secs =
                Some(self.restart(run.system, &job, partitions, counted + 2, true)?);
        }
        Ok(())
    }

    /// Restarts a stopped stateful system on `job` (after deleting its local state when `wipe`)
    /// with one new record of key 0 waiting, and returns the seconds from spawning it to that
    /// record's count being visible. Fails unless the count is `expected`: a restore that lost or
    /// double-counted anything shows here.
    fn restart(
        &self,
        system: System,
        job: &Job<'_>,
        partitions: i32,
        expected: u64,
        wipe: bool,
    ) -> anyhow::Result<f64> {
        let what = if wipe {
            "state deleted"
        } else {
            "state intact"
        };
        if wipe {
            if let Some(dir) = state_dir(system, job) {
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)
                        .with_context(|| format!("delete {}", dir.display()))?;
                }
            }
        }
        let from = self.kafka.end_offsets(job.output, partitions)?;
        self.kafka.produce_key(job.input, partitions, 0)?;
        *self
            .added_to_key0
            .borrow_mut()
            .entry(job.input.to_string())
            .or_default() += 1;
        let log = job.dir.join(format!(
            "log-restart-{}.txt",
            if wipe { "wiped" } else { "intact" }
        ));
        let mut child = Child::spawn(system.label(), self.launcher.command(system, job)?, &log)?;
        let key = payload::key(0);
        let seen = self.kafka.await_key(
            job.output,
            &from,
            key.as_bytes(),
            child.spawned_at() + RESTART_TIMEOUT,
            &|| child.has_exited(),
        );
        let exit = child.terminate(STOP_GRACE)?;
        let Some((at, value)) = seen? else {
            bail!(
                "restart ({what}): no count of {key} within {} s (exit code {}); last log lines of {}:\n{}",
                RESTART_TIMEOUT.as_secs(),
                exit.code,
                child.log().display(),
                child.log_tail(15)
            );
        };
        let count = String::from_utf8_lossy(&value);
        if count.trim() != expected.to_string() {
            bail!("restart ({what}): {key} counted {count}, expected {expected}");
        }
        let secs = at.duration_since(child.spawned_at()).as_secs_f64();
        log::info!(
            "  {} restart, {what}: {secs:.1} s to the count of {key} ({expected})",
            system.label()
        );
        Ok(secs)
    }

    fn latency_run(&self, round: u32, system: System, load: &Load) -> LatencyRun {
        let id = format!("txform-bench-{}-{}{round}-{system}", self.run_id, load.tag);
        let input = format!("{id}-in");
        let output = format!("{id}-out");
        let expected = load.rate * load.secs;
        let mut run = LatencyRun {
            round,
            size: load.size,
            system,
            offered_rate: load.rate,
            error: None,
            expected,
            received: 0,
            p50_ms: None,
            p99_ms: None,
            max_ms: None,
            visible_rate: None,
            cpu_per_million: None,
            core_percent: None,
        };
        log::info!(
            "{} round {round}: {} at {} records/s of {} B for {} s",
            load.tag,
            system.label(),
            report::thousands(load.rate),
            load.size,
            load.secs
        );
        if let Err(error) = self.measure_latency(&mut run, load, &input, &output, &id) {
            run.error = Some(format!("{error:#}"));
        }
        self.kafka.delete_topics(&[&input, &output]);
        run
    }

    fn measure_latency(
        &self,
        run: &mut LatencyRun,
        load: &Load,
        input: &str,
        output: &str,
        id: &str,
    ) -> anyhow::Result<()> {
        let o = self.options;
        let dir = self.job_dir(id)?;
        self.kafka.create_topic(input, o.partitions)?;
        self.kafka.create_topic(output, o.partitions)?;
        let job = Job {
            input,
            output,
            id,
            dir: &dir,
        };
        let command = self.launcher.command(run.system, &job)?;
        let mut child = Child::spawn(run.system.label(), command, &dir.join("log.txt"))?;
        let warmup = load.rate * load.warmup_secs;
        let reader = Reader::start(
            &self.kafka,
            ReaderPlan {
                topic: output.to_string(),
                partitions: o.partitions,
                target: 1 + warmup + run.expected,
                window_start: 1,
                pid: None,
                broker_pid: None,
            },
        )?;
        let outcome = self.drive_latency(run, load, &reader, &child, input, warmup);
        let report = reader.finish();
        let exit = child.terminate(STOP_GRACE)?;
        let cost = outcome?;
        let report = report?;
        summarize_latency(run, &report);
        let records = (warmup + run.expected) as f64;
        run.cpu_per_million = Some(cost.cpu_seconds / records * 1e6);
        run.core_percent = Some(cost.cpu_seconds / cost.wall.as_secs_f64().max(1e-9) * 100.0);
        if run.received < run.expected {
            bail!(
                "only {} of {} measured records visible {} s after the load ended (saturated, or stalled; exit code {}); last log lines:\n{}",
                run.received,
                run.expected,
                DRAIN_TIMEOUT.as_secs(),
                exit.code,
                child.log_tail(10)
            );
        }
        Ok(())
    }

    /// Probe, paced load, drain; returns what the system spent from the first paced record until
    /// the reader had everything (start-up and the probe excluded).
    fn drive_latency(
        &self,
        run: &LatencyRun,
        load: &Load,
        reader: &Reader,
        child: &Child,
        input: &str,
        warmup: u64,
    ) -> anyhow::Result<LoadCost> {
        let o = self.options;
        self.kafka.probe(input)?;
        let deadline = Instant::now() + PROBE_TIMEOUT;
        while reader.count() < 1 {
            if child.has_exited() {
                bail!(
                    "{} exited before copying the probe record; last log lines:\n{}",
                    run.system.label(),
                    child.log_tail(15)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not copy the probe record within {} s",
                    run.system.label(),
                    PROBE_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let started = Instant::now();
        let cpu_before = cpu_seconds(child.pid())?;
        self.kafka.paced(
            input,
            o.partitions,
            load.size,
            load.rate,
            warmup,
            run.expected,
        )?;
        wait_for_reader(reader, child, Instant::now() + DRAIN_TIMEOUT);
        Ok(LoadCost {
            cpu_seconds: cpu_seconds(child.pid())? - cpu_before,
            wall: started.elapsed(),
        })
    }
}

/// CPU and wall time a system spent on a latency run's paced load.
struct LoadCost {
    cpu_seconds: f64,
    wall: Duration,
}

/// Waits until the reader has everything, the deadline passes, or the child exits (then a few
/// seconds more, for what it committed just before exiting to become visible).
fn wait_for_reader(reader: &Reader, child: &Child, deadline: Instant) {
    let mut exited_at: Option<Instant> = None;
    while !reader.is_finished() && Instant::now() < deadline {
        if exited_at.is_none() && child.has_exited() {
            exited_at = Some(Instant::now());
        }
        if exited_at.is_some_and(|t| t.elapsed() > Duration::from_secs(5)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn summarize_latency(run: &mut LatencyRun, report: &ReaderReport) {
    let mut latencies = report.latencies_us.clone();
    latencies.sort_unstable();
    let to_ms = |us: u64| us as f64 / 1000.0;
    run.received = latencies.len() as u64;
    run.p50_ms = quantile(&latencies, 0.50).map(to_ms);
    run.p99_ms = quantile(&latencies, 0.99).map(to_ms);
    run.max_ms = latencies.last().copied().map(to_ms);
    run.visible_rate = report.measured_span.and_then(|(first, last)| {
        let secs = last.duration_since(first).as_secs_f64();
        (secs > 0.0).then(|| run.received.saturating_sub(1) as f64 / secs)
    });
}

fn log_throughput(run: &ThroughputRun) {
    match (&run.error, run.records_per_sec) {
        (None, Some(rate)) => log::info!(
            "  {} {} B: {} records/s, {:.1} MB/s, CPU {} s per M records, peak RSS {:.0} MiB, first output after {:.1} s",
            run.system.label(),
            run.size,
            report::thousands(rate.round() as u64),
            run.mb_per_sec.unwrap_or(0.0),
            run.cpu_per_million.map_or_else(|| "n/a".to_string(), |c| format!("{c:.1}")),
            run.peak_rss_mib.unwrap_or(0.0),
            run.first_output_secs.unwrap_or(0.0)
        ),
        _ => log::error!(
            "  {} {} B failed: {}",
            run.system.label(),
            run.size,
            run.error.as_deref().unwrap_or("no measurement")
        ),
    }
}

fn log_latency(run: &LatencyRun) {
    match &run.error {
        None => log::info!(
            "  {}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} records",
            run.system.label(),
            run.p50_ms.unwrap_or(0.0),
            run.p99_ms.unwrap_or(0.0),
            run.max_ms.unwrap_or(0.0),
            run.received
        ),
        Some(error) => log::error!("  {} latency run failed: {error}", run.system.label()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation() {
        assert_eq!(rotated(&[1, 2, 3], 0), vec![1, 2, 3]);
        assert_eq!(rotated(&[1, 2, 3], 1), vec![2, 3, 1]);
        assert_eq!(rotated(&[1, 2, 3], 4), vec![2, 3, 1]);
        assert_eq!(rotated::<i32>(&[], 2), Vec::<i32>::new());
    }
}
