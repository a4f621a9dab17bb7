//! The scaling sweep (issue 13): how txform exactly-once's throughput and CPU per record change with
//! the number of source partitions, the chain length and the batch interval, one variable at a
//! time with the others at their default. This module is the pure part: which points are run, which
//! inputs they need, and the markdown table of the results. The runs themselves are in `run`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::pipeline::StageKind;
use crate::report::{opt, ratio, thousands, ThroughputRun};
use crate::stats::median;
use crate::systems::System;

/// The variable a sweep varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SweepAxis {
    /// Source (and sink) partitions: 6, 60, 600.
    Partitions,
    /// Chain length: 1, 3, 5 stages, all passthrough, then all json-transform.
    Chain,
    /// Batch interval (`batch.max_wait_ms`): 10, 100, 1000 ms.
    Interval,
}

impl SweepAxis {
    #[cfg(test)]
    pub const ALL: [SweepAxis; 3] = [SweepAxis::Partitions, SweepAxis::Chain, SweepAxis::Interval];

    pub fn label(self) -> &'static str {
        match self {
            SweepAxis::Partitions => "source partitions",
            SweepAxis::Chain => "chain",
            SweepAxis::Interval => "batch interval",
        }
    }
}

/// The values of issue 13.
pub const PARTITIONS: [i32; 3] = [6, 60, 600];
pub const STAGES: [usize; 3] = [1, 3, 5];
pub const INTERVALS_MS: [u64; 3] = [10, 100, 1000];

/// One measured configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    pub axis: SweepAxis,
    pub system: System,
    pub partitions: i32,
    pub kind: StageKind,
    pub stages: usize,
    pub interval_ms: u64,
    /// Every variable at its default: the row the others of its axis are compared with.
    pub default: bool,
}

impl Point {
    /// The varied variable's value, for the table.
    pub fn value(&self) -> String {
        match self.axis {
            SweepAxis::Partitions => self.partitions.to_string(),
            SweepAxis::Chain => format!("{} × {}", self.stages, self.kind.label()),
            SweepAxis::Interval => format!("{} ms", self.interval_ms),
        }
    }

    /// The input a point reads: (partitions, JSON values).
    pub fn input(&self) -> (i32, bool) {
        (self.partitions, self.kind == StageKind::Json)
    }

    /// A short id for topic and group names: unique within a sweep (the default point runs once
    /// per axis, each time with its own group and output).
    pub fn id(&self) -> String {
        format!(
            "{}-{}-p{}-{}{}-i{}",
            match self.axis {
                SweepAxis::Partitions => "p",
                SweepAxis::Chain => "c",
                SweepAxis::Interval => "i",
            },
            self.system.id(),
            self.partitions,
            self.kind.label(),
            self.stages,
            self.interval_ms
        )
    }
}

/// The points of `axes`, in order. The defaults are `partitions` and `interval_ms` (the run's
/// options) and one passthrough stage; with `baseline`, the partitions axis also runs the plain
/// copier at each count, to tell txform's cost from the broker's.
pub fn points(axes: &[SweepAxis], partitions: i32, interval_ms: u64, baseline: bool) -> Vec<Point> {
    let base = Point {
        axis: SweepAxis::Partitions,
        system: System::TxformEos,
        partitions,
        kind: StageKind::Passthrough,
        stages: 1,
        interval_ms,
        default: true,
    };
    let mut points = Vec::new();
    for &axis in axes {
        let at = |change: &dyn Fn(&mut Point)| {
            let mut p = Point {
                axis,
                ..base.clone()
            };
            change(&mut p);
            p.default = p.partitions == base.partitions
                && p.kind == base.kind
                && p.stages == base.stages
                && p.interval_ms == base.interval_ms;
            p
        };
        match axis {
            SweepAxis::Partitions => {
                let systems: &[System] = if baseline {
                    &[System::TxformEos, System::Baseline]
                } else {
                    &[System::TxformEos]
                };
                for &system in systems {
                    for n in PARTITIONS {
                        points.push(at(&|p| {
                            p.system = system;
                            p.partitions = n;
                        }));
                    }
                }
            }
            SweepAxis::Chain => {
                for kind in [StageKind::Passthrough, StageKind::Json] {
                    for n in STAGES {
                        points.push(at(&|p| {
                            p.kind = kind;
                            p.stages = n;
                        }));
                    }
                }
            }
            SweepAxis::Interval => {
                for ms in INTERVALS_MS {
                    points.push(at(&|p| p.interval_ms = ms));
                }
            }
        }
    }
    points
}

/// The distinct inputs `points` read, in first-use order.
pub fn inputs(points: &[Point]) -> Vec<(i32, bool)> {
    let mut inputs = Vec::new();
    for point in points {
        if !inputs.contains(&point.input()) {
            inputs.push(point.input());
        }
    }
    inputs
}

/// One point's measurement in one round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepRun {
    pub point: Point,
    pub run: ThroughputRun,
}

/// The markdown table of a sweep: one row per point (medians over rounds), grouped by axis, each
/// compared with its axis's default row of the same system.
pub fn table(runs: &[SweepRun], records: u64, size: usize, max_records: u64) -> String {
    let mut md = String::new();
    let rounds = runs.iter().map(|r| r.run.round).max().unwrap_or(0);
    let _ = writeln!(
        md,
        "### How cost grows: txform exactly-once, {} records of {size} B per point\n\nOne variable at a time, the others at their default (6 partitions, 1 passthrough stage, 100 ms batch interval; batch.max_records = {max_records}); median of {rounds} round(s). \"vs default\" is this row over its axis's default row of the same system.\n",
        thousands(records)
    );
    md.push_str("| variable | value | system | records/s | CPU s per M records | peak RSS MiB | records/s vs default | CPU/record vs default |\n");
    md.push_str("|---|---|---|---:|---:|---:|---:|---:|\n");
    let mut seen: Vec<&Point> = Vec::new();
    for r in runs {
        if seen.contains(&&r.point) {
            continue;
        }
        seen.push(&r.point);
    }
    let stat = |point: &Point, metric: fn(&ThroughputRun) -> Option<f64>| -> Option<f64> {
        let values: Vec<f64> = runs
            .iter()
            .filter(|r| &r.point == point && r.run.error.is_none())
            .filter_map(|r| metric(&r.run))
            .collect();
        median(&values)
    };
    for point in seen {
        let default = runs
            .iter()
            .map(|r| &r.point)
            .find(|p| p.axis == point.axis && p.system == point.system && p.default);
        let rate = stat(point, |r| r.records_per_sec);
        let cpu = stat(point, |r| r.cpu_per_million);
        let vs = |value: Option<f64>, metric: fn(&ThroughputRun) -> Option<f64>| {
            opt(ratio(value, default.and_then(|d| stat(d, metric))), |v| {
                format!("{v:.2}x")
            })
        };
        let failed = runs
            .iter()
            .filter(|r| &r.point == point && r.run.error.is_some())
            .count();
        let note = if failed > 0 {
            format!(" ({failed} run(s) failed)")
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| {} | {}{} | {}{note} | {} | {} | {} | {} | {} |",
            point.axis.label(),
            point.value(),
            if point.default { " (default)" } else { "" },
            point.system.label(),
            opt(rate, |v| thousands(v.round() as u64)),
            opt(cpu, |v| format!("{v:.1}")),
            opt(stat(point, |r| r.peak_rss_mib), |v| format!("{v:.0}")),
            vs(rate, |r| r.records_per_sec),
            vs(cpu, |r| r.cpu_per_million),
        );
    }
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_variable_at_a_time() {
        let points = points(&SweepAxis::ALL, 6, 100, true);
        // 3 partition counts × (txform, plain copier) + 3 lengths × 2 kinds + 3 intervals.
        assert_eq!(points.len(), 6 + 6 + 3);
        for p in &points {
            let changed = [
                p.partitions != 6,
                p.kind != StageKind::Passthrough || p.stages != 1,
                p.interval_ms != 100,
            ];
            assert!(changed.iter().filter(|c| **c).count() <= 1, "{p:?}");
            assert_eq!(p.default, !changed.iter().any(|c| *c), "{p:?}");
        }
        let values = |axis: SweepAxis| -> Vec<String> {
            points
                .iter()
                .filter(|p| p.axis == axis && p.system == System::TxformEos)
                .map(Point::value)
                .collect()
        };
        assert_eq!(values(SweepAxis::Partitions), ["6", "60", "600"]);
        assert_eq!(
            values(SweepAxis::Chain),
            [
                "1 × passthrough",
                "3 × passthrough",
                "5 × passthrough",
                "1 × json-transform",
                "3 × json-transform",
                "5 × json-transform"
            ]
        );
        assert_eq!(values(SweepAxis::Interval), ["10 ms", "100 ms", "1000 ms"]);
        assert_eq!(
            points
                .iter()
                .filter(|p| p.system == System::Baseline)
                .map(|p| p.partitions)
                .collect::<Vec<_>>(),
            [6, 60, 600]
        );
        assert_eq!(
            inputs(&points),
            [(6, false), (60, false), (600, false), (6, true)]
        );
        let mut ids: Vec<String> = points.iter().map(Point::id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), points.len(), "ids must be unique: {ids:?}");
    }

    #[test]
    fn only_the_asked_axes_and_no_baseline_unless_asked() {
        let intervals = points(&[SweepAxis::Interval], 12, 250, false);
        assert_eq!(intervals.len(), 3);
        assert!(intervals.iter().all(|p| p.partitions == 12 && !p.default));
        assert!(points(&[SweepAxis::Partitions], 6, 100, false)
            .iter()
            .all(|p| p.system == System::TxformEos));
    }

    fn run(point: &Point, round: u32, rate: f64, cpu: f64) -> SweepRun {
        SweepRun {
            point: point.clone(),
            run: ThroughputRun {
                records_per_sec: Some(rate),
                cpu_per_million: Some(cpu),
                peak_rss_mib: Some(50.0),
                exit_code: Some(0),
                ..ThroughputRun::new(round, 1024, point.system, 1_000)
            },
        }
    }

    #[test]
    fn table_rows_are_medians_against_the_default() {
        let points = points(&[SweepAxis::Interval], 6, 100, false);
        let mut runs = vec![
            run(&points[0], 1, 50.0, 8.0),
            run(&points[0], 2, 70.0, 6.0),
            run(&points[0], 3, 60.0, 7.0),
            run(&points[1], 1, 100.0, 4.0),
            run(&points[2], 1, 120.0, 3.0),
        ];
        let mut failed = run(&points[2], 2, 0.0, 0.0);
        failed.run.error = Some("boom".into());
        failed.run.records_per_sec = None;
        runs.push(failed);
        let md = table(&runs, 1_000, 1024, 10_000);
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| batch")).collect();
        assert_eq!(
            rows,
            [
                "| batch interval | 10 ms | txform exactly-once | 60 | 7.0 | 50 | 0.60x | 1.75x |",
                "| batch interval | 100 ms (default) | txform exactly-once | 100 | 4.0 | 50 | 1.00x | 1.00x |",
                "| batch interval | 1000 ms | txform exactly-once (1 run(s) failed) | 120 | 3.0 | 50 | 1.20x | 0.75x |",
            ]
        );
        assert!(md.contains("median of 3 round(s)"), "{md}");
    }
}
