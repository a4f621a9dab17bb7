//! Results of a benchmark run: every measurement (results.json) and the markdown tables of
//! docs/benchmarks.md (medians per system, ratios against Kafka Streams from the same run, and
//! which targets hold).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use crate::machine::Machine;
use crate::stats::median;
use crate::sweep::{self, SweepRun};
use crate::systems::System;

/// The markers around generated section `section` of a docs page.
fn markers(section: &str) -> (String, String) {
    (
        format!("<!-- bench:{section}:begin -->"),
        format!("<!-- bench:{section}:end -->"),
    )
}

/// One throughput run: one system copying one seeded input topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThroughputRun {
    pub round: u32,
    pub size: usize,
    pub system: System,
    pub records: u64,
    /// Why the run failed; the measurements are then `None`.
    pub error: Option<String>,
    /// Records per second between 1% and 100% of the records becoming visible.
    pub records_per_sec: Option<f64>,
    /// `records_per_sec` × value size, in 10^6 bytes per second.
    pub mb_per_sec: Option<f64>,
    /// User + system CPU seconds of the system's process over the same window, per million records.
    pub cpu_per_million: Option<f64>,
    /// The broker's CPU seconds over the same window, per million records (`None` when the broker
    /// is not a local process): what the system's way of producing and committing costs it.
    #[serde(default)]
    pub broker_cpu_per_million: Option<f64>,
    /// The whole machine's busy CPU seconds over the same window per second: how many of its cores
    /// were in use (every process, the broker and the benchmark's reader included).
    #[serde(default)]
    pub machine_busy_cores: Option<f64>,
    /// User + system CPU seconds over the process's whole life (wait4), start-up and shutdown included.
    pub cpu_total_secs: Option<f64>,
    /// Peak resident set size (the last VmHWM read while the process was alive), MiB.
    pub peak_rss_mib: Option<f64>,
    /// From spawning the process to the first output record visible.
    pub first_output_secs: Option<f64>,
    /// From spawning the process to the last record visible.
    pub wall_secs: Option<f64>,
    pub exit_code: Option<i32>,
    /// Stateful systems: from restarting the stopped system, its local state intact, to the
    /// correct count of one new record visible (start-up and the restore of what it missed).
    #[serde(default)]
    pub restart_local_secs: Option<f64>,
    /// The same after deleting the local state: start-up and a full restore from the changelog.
    #[serde(default)]
    pub restart_changelog_secs: Option<f64>,
}

impl ThroughputRun {
    /// A run not measured yet.
    pub fn new(round: u32, size: usize, system: System, records: u64) -> ThroughputRun {
        ThroughputRun {
            round,
            size,
            system,
            records,
            error: None,
            records_per_sec: None,
            mb_per_sec: None,
            cpu_per_million: None,
            broker_cpu_per_million: None,
            machine_busy_cores: None,
            cpu_total_secs: None,
            peak_rss_mib: None,
            first_output_secs: None,
            wall_secs: None,
            exit_code: None,
            restart_local_secs: None,
            restart_changelog_secs: None,
        }
    }
}

/// One latency run: one system copying a paced input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyRun {
    pub round: u32,
    pub size: usize,
    pub system: System,
    pub offered_rate: u64,
    pub error: Option<String>,
    /// Measured records produced and seen by the reader.
    pub expected: u64,
    pub received: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Measured records over the time between the first and the last of them becoming visible.
    pub visible_rate: Option<f64>,
    /// CPU seconds of the system per million records while the paced load (warm-up included) ran
    /// and drained: at a steady rate, what each record costs.
    #[serde(default)]
    pub cpu_per_million: Option<f64>,
    /// The same CPU over the same wall time, as a percentage of one core.
    #[serde(default)]
    pub core_percent: Option<f64>,
}

/// Everything one benchmark run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub run_id: String,
    pub started_utc: String,
    pub command: String,
    pub elapsed_secs: f64,
    pub machine: Machine,
    pub records: u64,
    pub partitions: i32,
    pub sizes: Vec<usize>,
    pub rounds: u32,
    pub systems: Vec<System>,
    pub settings: Vec<String>,
    pub seeding: Vec<String>,
    pub throughput: Vec<ThroughputRun>,
    pub latency: Vec<LatencyRun>,
    /// The transaction / commit interval of the run, ms.
    #[serde(default)]
    pub commit_interval_ms: Option<u64>,
    /// Paced runs at a low steady rate: what a record costs when the broker is not the limit.
    #[serde(default)]
    pub steady: Vec<LatencyRun>,
    /// The distinct keys of the stateful systems' input.
    #[serde(default)]
    pub keys: Option<u64>,
    /// The scaling sweep (`--sweep`), and its record count, record size and batch.max_records.
    #[serde(default)]
    pub sweep: Vec<SweepRun>,
    #[serde(default)]
    pub sweep_records: u64,
    #[serde(default)]
    pub sweep_size: usize,
    #[serde(default)]
    pub max_records: u64,
}

impl Results {
    pub fn failures(&self) -> usize {
        self.throughput.iter().filter(|r| r.error.is_some()).count()
            + self.latency.iter().filter(|r| r.error.is_some()).count()
            + self.steady.iter().filter(|r| r.error.is_some()).count()
            + self.sweep.iter().filter(|r| r.run.error.is_some()).count()
    }

    fn runs(&self, size: usize, system: System) -> impl Iterator<Item = &ThroughputRun> {
        self.throughput
            .iter()
            .filter(move |r| r.size == size && r.system == system && r.error.is_none())
    }

    /// Median of one throughput metric over the successful rounds.
    fn median_of(
        &self,
        size: usize,
        system: System,
        metric: fn(&ThroughputRun) -> Option<f64>,
    ) -> Option<f64> {
        let values: Vec<f64> = self.runs(size, system).filter_map(metric).collect();
        median(&values)
    }

    fn latency_median(
        &self,
        system: System,
        metric: fn(&LatencyRun) -> Option<f64>,
    ) -> Option<f64> {
        paced_median(&self.latency, system, metric)
    }

    fn stateless(&self) -> Vec<System> {
        self.systems
            .iter()
            .copied()
            .filter(|s| !s.stateful())
            .collect()
    }

    fn stateful(&self) -> Vec<System> {
        self.systems
            .iter()
            .copied()
            .filter(|s| s.stateful())
            .collect()
    }
}

/// Median of one metric of `system`'s successful paced runs.
fn paced_median(
    runs: &[LatencyRun],
    system: System,
    metric: fn(&LatencyRun) -> Option<f64>,
) -> Option<f64> {
    {
        let values: Vec<f64> = runs
            .iter()
            .filter(|r| r.system == system && r.error.is_none())
            .filter_map(metric)
            .collect();
        median(&values)
    }
}

impl Results {
    /// The markdown that goes between the markers of docs/benchmarks.md.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(
            md,
            "Run `{}`, started {} UTC, {:.1} min in total.\n",
            self.run_id,
            self.started_utc,
            self.elapsed_secs / 60.0
        );
        let _ = writeln!(md, "Command: `{}`\n", self.command);
        let _ = writeln!(
            md,
            "Machine: {} × {}, {:.1} GiB RAM, Linux {}; {}; {}. Broker: Apache Kafka 4.1.1, single KRaft node on the same machine (scripts/kafka.sh), shared by every system.\n",
            m.nproc, m.cpu_model, m.ram_gib, m.kernel, m.jdk, m.rustc
        );
        let _ = writeln!(md, "Settings:\n");
        for line in &self.settings {
            let _ = writeln!(md, "- {line}");
        }
        for line in &self.seeding {
            let _ = writeln!(md, "- {line}");
        }
        md.push('\n');

        let has = |system: System| self.throughput.iter().any(|r| r.system == system);
        for &size in &self.sizes {
            if self.stateless().into_iter().any(has) {
                self.throughput_table(&mut md, size);
            }
            if self.stateful().into_iter().any(has) {
                self.stateful_table(&mut md, size);
            }
        }
        if !self.latency.is_empty() {
            self.latency_table(&mut md);
        }
        if !self.steady.is_empty() {
            self.steady_table(&mut md);
        }
        if !self.sweep.is_empty() {
            md.push_str(&sweep::table(
                &self.sweep,
                self.sweep_records,
                self.sweep_size,
                self.max_records,
            ));
        }
        let copies = self.throughput.iter().any(|r| !r.system.stateful());
        if copies || !self.latency.is_empty() {
            self.targets(&mut md);
        }
        if self.systems.contains(&System::BaselineEos) {
            self.protocol_and_host(&mut md);
        }
        self.every_run(&mut md);
        md
    }

    fn stateful_table(&self, md: &mut String, size: usize) {
        let _ = writeln!(
            md,
            "### Stateful: running count per key, {size} B records

{} records over {} keys, {} partitions (each key in one partition); every input emits its key's count; median of {} round(s); ratios are \"this system / Kafka Streams count\". Restart times run from spawning the stopped system again to the correct count of one new record being visible: with its local state intact, then with it deleted (a full restore from the changelog); both include start-up and the group join.\n",
            thousands(self.records),
            thousands(self.keys.unwrap_or(0)),
            self.partitions,
            self.rounds
        );
        md.push_str("| system | records/s | CPU s per M records | peak RSS MiB | first output s | restart, state intact s | restart, state deleted s | throughput vs Streams | CPU/record vs Streams | RSS vs Streams |\n");
        md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let of = |system, metric| self.median_of(size, system, metric);
        for system in self.stateful() {
            let rate = of(system, |r| r.records_per_sec);
            let cpu = of(system, |r| r.cpu_per_million);
            let rss = of(system, |r| r.peak_rss_mib);
            let streams = System::StreamsCount;
            let _ = writeln!(
                md,
                "| {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                system.label(),
                self.failed_note(size, system),
                opt(rate, |v| thousands(v.round() as u64)),
                opt(cpu, |v| format!("{v:.1}")),
                opt(rss, |v| format!("{v:.0}")),
                opt(of(system, |r| r.first_output_secs), |v| format!("{v:.1}")),
                opt(of(system, |r| r.restart_local_secs), |v| format!("{v:.1}")),
                opt(of(system, |r| r.restart_changelog_secs), |v| format!(
                    "{v:.1}"
                )),
                opt(
                    ratio(rate, of(streams, |r| r.records_per_sec)),
                    |v| format!("{v:.2}x")
                ),
                opt(ratio(cpu, of(streams, |r| r.cpu_per_million)), |v| format!(
                    "{v:.2}x"
                )),
                opt(ratio(rss, of(streams, |r| r.peak_rss_mib)), |v| format!(
                    "{v:.3}x"
                )),
            );
        }
        md.push('\n');
    }

    /// " (n of m runs failed)" for a table row, or nothing.
    fn failed_note(&self, size: usize, system: System) -> String {
        let ok = self.runs(size, system).count();
        let failed = self
            .throughput
            .iter()
            .filter(|r| r.size == size && r.system == system && r.error.is_some())
            .count();
        if failed > 0 {
            format!(" ({failed} of {} runs failed)", ok + failed)
        } else {
            String::new()
        }
    }

    fn steady_table(&self, md: &mut String) {
        let first = &self.steady[0];
        let _ = writeln!(
            md,
            "### At a low steady rate: {} records/s of {} B\n\nCPU of the system from the first paced record until the reader had everything (warm-up included), per million records and as a share of one core; the median over the run(s).\n",
            thousands(first.offered_rate),
            first.size
        );
        md.push_str("| system | CPU s per M records | % of a core | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|\n");
        for system in self.stateless() {
            if !self.steady.iter().any(|r| r.system == system) {
                continue;
            }
            let m = |metric| paced_median(&self.steady, system, metric);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                system.label(),
                opt(m(|r| r.cpu_per_million), |v| format!("{v:.1}")),
                opt(m(|r| r.core_percent), |v| format!("{v:.1}")),
                opt(m(|r| r.p50_ms), ms),
                opt(m(|r| r.p99_ms), ms),
            );
        }
        md.push('\n');
    }

    fn throughput_table(&self, md: &mut String, size: usize) {
        let _ = writeln!(
            md,
            "### Throughput, {size} B records\n\n{} records, {} partitions; median of {} round(s); ratios are \"this system / Kafka Streams\" of this run's medians (below 1 is better for CPU and RSS). The broker's CPU and the machine's busy cores are over the same window: where they share the cores, work a system makes the broker do slows it too.\n",
            thousands(self.records),
            self.partitions,
            self.rounds
        );
        md.push_str("| system | records/s | MB/s | CPU s per M records | broker CPU s per M records | machine cores busy | peak RSS MiB | first output s | throughput vs Streams | CPU/record vs Streams | RSS vs Streams |\n");
        md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let streams_rate = self.median_of(size, System::Streams, |r| r.records_per_sec);
        let streams_cpu = self.median_of(size, System::Streams, |r| r.cpu_per_million);
        let streams_rss = self.median_of(size, System::Streams, |r| r.peak_rss_mib);
        for system in self.stateless() {
            let rate = self.median_of(size, system, |r| r.records_per_sec);
            let cpu = self.median_of(size, system, |r| r.cpu_per_million);
            let rss = self.median_of(size, system, |r| r.peak_rss_mib);
            let note = self.failed_note(size, system);
            let _ = writeln!(
                md,
                "| {}{note} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                system.label(),
                opt(rate, |v| thousands(v.round() as u64)),
                opt(self.median_of(size, system, |r| r.mb_per_sec), |v| format!(
                    "{v:.1}"
                )),
                opt(cpu, |v| format!("{v:.1}")),
                opt(
                    self.median_of(size, system, |r| r.broker_cpu_per_million),
                    |v| format!("{v:.1}")
                ),
                opt(
                    self.median_of(size, system, |r| r.machine_busy_cores),
                    |v| format!("{v:.2}")
                ),
                opt(rss, |v| format!("{v:.0}")),
                opt(
                    self.median_of(size, system, |r| r.first_output_secs),
                    |v| format!("{v:.1}")
                ),
                opt(ratio(rate, streams_rate), |v| format!("{v:.2}x")),
                opt(ratio(cpu, streams_cpu), |v| format!("{v:.2}x")),
                opt(ratio(rss, streams_rss), |v| format!("{v:.3}x")),
            );
        }
        md.push('\n');
    }

    fn latency_table(&self, md: &mut String) {
        let first = &self.latency[0];
        let rounds = self.latency.iter().map(|r| r.round).max().unwrap_or(0);
        let _ = writeln!(
            md,
            "### End-to-end latency, {} B records at {} records/s offered\n\nInput stamp (scheduled send time) to visibility for a read_committed reader; median over {rounds} round(s) of each run's percentile. TransactionalMessageCopier is absent: it copies the backlog present at its start and exits.\n",
            first.size,
            thousands(first.offered_rate)
        );
        md.push_str(
            "| system | p50 ms | p99 ms | max ms | visible records/s | CPU s per M | % of a core |\n",
        );
        md.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
        for system in self.stateless().into_iter().filter(|s| s.continuous()) {
            let failed = self
                .latency
                .iter()
                .filter(|r| r.system == system && r.error.is_some())
                .count();
            let note = if failed > 0 {
                format!(" ({failed} run(s) failed or saturated)")
            } else {
                String::new()
            };
            let _ = writeln!(
                md,
                "| {}{note} | {} | {} | {} | {} | {} | {} |",
                system.label(),
                opt(self.latency_median(system, |r| r.p50_ms), ms),
                opt(self.latency_median(system, |r| r.p99_ms), ms),
                opt(self.latency_median(system, |r| r.max_ms), ms),
                opt(self.latency_median(system, |r| r.visible_rate), |v| {
                    thousands(v.round() as u64)
                }),
                opt(self.latency_median(system, |r| r.cpu_per_million), |v| {
                    format!("{v:.1}")
                }),
                opt(self.latency_median(system, |r| r.core_percent), |v| {
                    format!("{v:.1}")
                }),
            );
        }
        md.push('\n');
    }

    /// Issue 13's targets: each with its bound, this run's measured value and whether it is met.
    fn targets(&self, md: &mut String) {
        md.push_str("### Issue 13's targets, from this run's medians\n\n| target | bound | measured | met |\n|---|---:|---:|---|\n");
        let mut row = |target: String,
                       bound: &str,
                       value: Option<f64>,
                       fmt: &dyn Fn(f64) -> String,
                       holds: &dyn Fn(f64) -> bool| {
            let (measured, verdict) = match value {
                Some(v) => (fmt(v), if holds(v) { "yes" } else { "**no**" }),
                None => ("n/a".to_string(), "n/a (not measured)"),
            };
            let _ = writeln!(md, "| {target} | {bound} | {measured} | {verdict} |");
        };
        let eos_vs = |size: usize, other: System, metric: fn(&ThroughputRun) -> Option<f64>| {
            ratio(
                self.median_of(size, System::TxformEos, metric),
                self.median_of(size, other, metric),
            )
        };
        // Three decimals: a verdict must not contradict its rounded figure (0.849 is "no").
        let ratio_fmt = |v: f64| format!("{v:.3}x");
        for &size in &self.sizes {
            row(
                format!("exactly-once throughput / plain copier's, {size} B"),
                ">= 0.85x",
                eos_vs(size, System::Baseline, |r| r.records_per_sec),
                &ratio_fmt,
                &|v| v >= 0.85,
            );
            row(
                format!("exactly-once CPU per record / plain copier's, {size} B"),
                "<= 1.5x",
                eos_vs(size, System::Baseline, |r| r.cpu_per_million),
                &ratio_fmt,
                &|v| v <= 1.5,
            );
            row(
                format!("exactly-once CPU per record / Kafka Streams', {size} B"),
                "<= 0.25x",
                eos_vs(size, System::Streams, |r| r.cpu_per_million),
                &ratio_fmt,
                &|v| v <= 0.25,
            );
            row(
                format!("exactly-once peak RSS / Kafka Streams', {size} B"),
                "<= 0.1x",
                eos_vs(size, System::Streams, |r| r.peak_rss_mib),
                &ratio_fmt,
                &|v| v <= 0.1,
            );
        }
        // Stated for one instance at 8,000 records/s of 1 KiB.
        let steady = self.steady.first();
        row(
            match steady {
                Some(r) if (r.offered_rate, r.size) != (8_000, 1024) => format!(
                    "exactly-once CPU per million records at a low steady rate ({} records/s of {} B; stated for 8,000 of 1024 B)",
                    thousands(r.offered_rate),
                    r.size
                ),
                _ => "exactly-once CPU per million records at a low steady rate (8,000 records/s of 1024 B)".to_string(),
            },
            "<= 3 s",
            paced_median(&self.steady, System::TxformEos, |r| r.cpu_per_million),
            &|v| format!("{v:.1} s"),
            &|v| v <= 3.0,
        );
        let conditions = match self.latency.first() {
            Some(first)
                if (first.offered_rate, first.size, self.commit_interval_ms)
                    != (20_000, 1024, Some(100)) =>
            {
                format!(
                    "{} records/s of {} B, {} ms interval; stated for 20,000 of 1024 B, 100 ms",
                    thousands(first.offered_rate),
                    first.size,
                    self.commit_interval_ms
                        .map_or_else(|| "?".to_string(), |ms| ms.to_string())
                )
            }
            _ => "20,000 records/s of 1024 B, 100 ms interval".to_string(),
        };
        let eos =
            |metric: fn(&LatencyRun) -> Option<f64>| self.latency_median(System::TxformEos, metric);
        let streams =
            |metric: fn(&LatencyRun) -> Option<f64>| self.latency_median(System::Streams, metric);
        let ms_fmt = |v: f64| format!("{v:.0} ms");
        row(
            format!("exactly-once latency p50 ({conditions})"),
            "<= 60 ms",
            eos(|r| r.p50_ms),
            &ms_fmt,
            &|v| v <= 60.0,
        );
        row(
            format!("exactly-once latency p99 ({conditions})"),
            "<= 120 ms",
            eos(|r| r.p99_ms),
            &ms_fmt,
            &|v| v <= 120.0,
        );
        row(
            "exactly-once latency p50 / Kafka Streams', same load".to_string(),
            "< 1x",
            ratio(eos(|r| r.p50_ms), streams(|r| r.p50_ms)),
            &ratio_fmt,
            &|v| v < 1.0,
        );
        row(
            "exactly-once latency p99 / Kafka Streams', same load".to_string(),
            "< 1x",
            ratio(eos(|r| r.p99_ms), streams(|r| r.p99_ms)),
            &ratio_fmt,
            &|v| v < 1.0,
        );
        md.push('\n');
    }

    /// Splits exactly-once's cost against the plain copier in two: the transaction protocol's (the
    /// minimal exactly-once copier against the plain one) and the host's (txform against the
    /// minimal exactly-once copier). A target the protocol alone misses is out of the host's reach.
    fn protocol_and_host(&self, md: &mut String) {
        md.push_str("### Where exactly-once's cost goes: the protocol, then the host\n\n\"protocol\" is the minimal exactly-once copier against the plain copier (both without a transform), \"host\" is txform against the minimal exactly-once copier; the two multiply to txform against the plain copier. Medians of this run.\n\n| measure | protocol: minimal EOS / plain | host: txform / minimal EOS | txform / plain |\n|---|---:|---:|---:|\n");
        // The three ratios of one measure, `of` giving each system's median.
        let ratios = |of: &dyn Fn(System) -> Option<f64>| {
            let (txform, floor, plain) = (
                of(System::TxformEos),
                of(System::BaselineEos),
                of(System::Baseline),
            );
            [
                ratio(floor, plain),
                ratio(txform, floor),
                ratio(txform, plain),
            ]
            .map(|r| opt(r, |v| format!("{v:.3}x")))
        };
        let mut line = |measure: String, [protocol, host, total]: [String; 3]| {
            let _ = writeln!(md, "| {measure} | {protocol} | {host} | {total} |");
        };
        type Metric = fn(&ThroughputRun) -> Option<f64>;
        let metrics: [(&str, Metric); 3] = [
            ("records/s", |r| r.records_per_sec),
            ("CPU s per M records", |r| r.cpu_per_million),
            ("broker CPU s per M records", |r| r.broker_cpu_per_million),
        ];
        for &size in &self.sizes {
            for (name, metric) in metrics {
                let of = |system| self.median_of(size, system, metric);
                line(format!("{name}, {size} B"), ratios(&of));
            }
        }
        type Paced = fn(&LatencyRun) -> Option<f64>;
        let paced: [(&str, Paced); 2] =
            [("latency p50", |r| r.p50_ms), ("latency p99", |r| r.p99_ms)];
        for (name, metric) in paced {
            let of = |system| self.latency_median(system, metric);
            line(format!("{name}, paced load"), ratios(&of));
        }
        let of = |system| paced_median(&self.steady, system, |r| r.cpu_per_million);
        line(
            "CPU s per M records, low steady rate".to_string(),
            ratios(&of),
        );
        md.push('\n');
    }

    fn every_run(&self, md: &mut String) {
        md.push_str("<details><summary>Every run</summary>\n\n");
        md.push_str("| round | size B | system | records/s | CPU s per M | broker CPU s per M | machine cores busy | CPU s whole life | peak RSS MiB | first output s | wall s | restart s, state intact / deleted | exit | error |\n");
        md.push_str("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        let throughput = self
            .throughput
            .iter()
            .chain(self.sweep.iter().map(|r| &r.run));
        for r in throughput {
            let restart = if r.system.stateful() {
                format!(
                    "{} / {}",
                    opt(r.restart_local_secs, |v| format!("{v:.1}")),
                    opt(r.restart_changelog_secs, |v| format!("{v:.1}"))
                )
            } else {
                "-".to_string()
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {restart} | {} | {} |",
                r.round,
                r.size,
                r.system.label(),
                opt(r.records_per_sec, |v| thousands(v.round() as u64)),
                opt(r.cpu_per_million, |v| format!("{v:.1}")),
                opt(r.broker_cpu_per_million, |v| format!("{v:.1}")),
                opt(r.machine_busy_cores, |v| format!("{v:.2}")),
                opt(r.cpu_total_secs, |v| format!("{v:.1}")),
                opt(r.peak_rss_mib, |v| format!("{v:.0}")),
                opt(r.first_output_secs, |v| format!("{v:.1}")),
                opt(r.wall_secs, |v| format!("{v:.1}")),
                r.exit_code
                    .map_or_else(|| "-".to_string(), |c| c.to_string()),
                r.error.as_deref().map(one_line).unwrap_or_default(),
            );
        }
        if !self.latency.is_empty() || !self.steady.is_empty() {
            md.push_str("\n| round | system | offered records/s | p50 ms | p99 ms | max ms | received / expected | visible records/s | CPU s per M | % of a core | error |\n");
            md.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
            for r in self.latency.iter().chain(&self.steady) {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} |",
                    r.round,
                    r.system.label(),
                    thousands(r.offered_rate),
                    opt(r.p50_ms, ms),
                    opt(r.p99_ms, ms),
                    opt(r.max_ms, ms),
                    r.received,
                    r.expected,
                    opt(r.visible_rate, |v| thousands(v.round() as u64)),
                    opt(r.cpu_per_million, |v| format!("{v:.1}")),
                    opt(r.core_percent, |v| format!("{v:.1}")),
                    r.error.as_deref().map(one_line).unwrap_or_default(),
                );
            }
        }
        md.push_str("\n</details>\n");
    }
}

/// Replaces the text between the markers of section `name` of `path` with `content`.
pub fn write_docs(path: &Path, name: &str, content: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let (begin_marker, end_marker) = markers(name);
    let (Some(begin), Some(end)) = (text.find(&begin_marker), text.find(&end_marker)) else {
        bail!(
            "{} has no `{begin_marker}` ... `{end_marker}` section to replace",
            path.display()
        );
    };
    if end < begin {
        bail!(
            "{}: the end marker comes before the begin marker",
            path.display()
        );
    }
    let updated = format!(
        "{}{begin_marker}\n{content}{}",
        &text[..begin],
        &text[end..]
    );
    std::fs::write(path, updated).with_context(|| format!("write {}", path.display()))
}

pub(crate) fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

pub(crate) fn opt(value: Option<f64>, fmt: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "n/a".to_string(), fmt)
}

fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

/// 1234567 -> "1,234,567".
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An error message fit for a table cell.
fn one_line(text: &str) -> String {
    let line = text.replace('|', "/").replace('\n', " ");
    if line.len() > 160 {
        let mut cut = 160;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &line[..cut])
    } else {
        line
    }
}

/// "YYYY-MM-DD HH:MM" of a UNIX time, UTC (no date crate for one timestamp).
pub fn utc(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(1_709_210_096), "2024-02-29 12:34");
    }

    #[test]
    fn docs_section_is_replaced() {
        let dir = std::env::temp_dir().join(format!("txform-bench-docs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("b.md");
        let (begin, end) = markers("results");
        std::fs::write(&file, format!("# T\nintro\n{begin}\nold\n{end}\nafter\n")).expect("write");
        write_docs(&file, "results", "new\n").expect("replace");
        let text = std::fs::read_to_string(&file).expect("read");
        assert_eq!(text, format!("# T\nintro\n{begin}\nnew\n{end}\nafter\n"));
        assert!(write_docs(&file, "other", "x").is_err());
        std::fs::write(&file, "no markers").expect("write");
        assert!(write_docs(&file, "results", "x").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn throughput(system: System, rate: f64, cpu: f64, rss: f64) -> ThroughputRun {
        ThroughputRun {
            records_per_sec: Some(rate),
            cpu_per_million: Some(cpu),
            peak_rss_mib: Some(rss),
            exit_code: Some(0),
            ..ThroughputRun::new(1, 1024, system, 1_000)
        }
    }

    fn latency(system: System, p50: f64, p99: f64, cpu: f64) -> LatencyRun {
        LatencyRun {
            round: 1,
            size: 1024,
            system,
            offered_rate: 20_000,
            error: None,
            expected: 10,
            received: 10,
            p50_ms: Some(p50),
            p99_ms: Some(p99),
            max_ms: None,
            visible_rate: None,
            cpu_per_million: Some(cpu),
            core_percent: None,
        }
    }

    #[test]
    fn targets_are_judged_against_the_plain_copier_and_kafka_streams() {
        let results = Results {
            run_id: "t".into(),
            started_utc: "now".into(),
            command: "c".into(),
            elapsed_secs: 1.0,
            machine: Machine {
                nproc: 2,
                cpu_model: "cpu".into(),
                ram_gib: 1.0,
                kernel: "k".into(),
                jdk: "j".into(),
                rustc: "r".into(),
            },
            records: 1_000,
            partitions: 6,
            sizes: vec![1024],
            rounds: 1,
            systems: vec![System::TxformEos, System::Streams, System::Baseline],
            settings: vec![],
            seeding: vec![],
            throughput: vec![
                throughput(System::TxformEos, 85.0, 3.0, 10.0),
                throughput(System::Baseline, 100.0, 2.0, 5.0),
                throughput(System::Streams, 50.0, 10.0, 101.0),
            ],
            latency: vec![
                latency(System::TxformEos, 60.0, 121.0, 3.5),
                latency(System::Streams, 70.0, 120.0, 20.0),
            ],
            commit_interval_ms: Some(100),
            steady: vec![
                LatencyRun {
                    offered_rate: 8_000,
                    ..latency(System::TxformEos, 50.0, 90.0, 3.0)
                },
                LatencyRun {
                    offered_rate: 8_000,
                    ..latency(System::Baseline, 5.0, 9.0, 2.0)
                },
            ],
            keys: None,
            sweep: vec![],
            sweep_records: 0,
            sweep_size: 0,
            max_records: 10_000,
        };
        let mut md = String::new();
        results.targets(&mut md);
        // (bound, measured, met) of the row starting with `target`.
        let row = |target: &str| -> (String, String, String) {
            let line = md
                .lines()
                .find(|l| l.starts_with(&format!("| {target}")))
                .unwrap_or_else(|| panic!("no row {target:?} in\n{md}"));
            let cells: Vec<String> = line.split('|').map(|c| c.trim().to_string()).collect();
            (cells[2].clone(), cells[3].clone(), cells[4].clone())
        };
        let row_of = |bound: &str, measured: &str, met: &str| {
            (bound.to_string(), measured.to_string(), met.to_string())
        };
        assert_eq!(
            row("exactly-once throughput / plain copier's, 1024 B"),
            row_of(">= 0.85x", "0.850x", "yes")
        );
        assert_eq!(
            row("exactly-once CPU per record / plain copier's, 1024 B"),
            row_of("<= 1.5x", "1.500x", "yes")
        );
        assert_eq!(
            row("exactly-once CPU per record / Kafka Streams', 1024 B"),
            row_of("<= 0.25x", "0.300x", "**no**")
        );
        assert_eq!(
            row("exactly-once peak RSS / Kafka Streams', 1024 B"),
            row_of("<= 0.1x", "0.099x", "yes")
        );
        assert_eq!(
            row("exactly-once CPU per million records at a low steady rate (8,000 records/s of 1024 B"),
            row_of("<= 3 s", "3.0 s", "yes")
        );
        assert_eq!(
            row("exactly-once latency p50 (20,000 records/s of 1024 B, 100 ms interval"),
            row_of("<= 60 ms", "60 ms", "yes")
        );
        assert_eq!(
            row("exactly-once latency p99 (20,000 records/s of 1024 B, 100 ms interval"),
            row_of("<= 120 ms", "121 ms", "**no**")
        );
        assert_eq!(
            row("exactly-once latency p50 / Kafka Streams'"),
            row_of("< 1x", "0.857x", "yes")
        );
        assert_eq!(
            row("exactly-once latency p99 / Kafka Streams'"),
            row_of("< 1x", "1.008x", "**no**")
        );
        // Nine targets, each once.
        assert_eq!(
            md.lines()
                .filter(|l| l.starts_with("| exactly-once"))
                .count(),
            9
        );
    }
}
