//! One chaos run, start to finish: broker, topics, seed, instances, fault plan, verification.
//!
//! Everything the run starts is owned by a guard that undoes it on every exit path: the instances
//! ([`Fleet`], SIGKILLed when dropped) are dropped before the broker ([`Broker`], stopped when
//! dropped). Every wait is bounded, by its own time-out and by the profile's overall deadline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use txform_tests::{committed_offsets, create_topic, unique_name};

use crate::broker::Broker;
use crate::catch;
use crate::counts::verify_counts;
use crate::fleet::{Anomaly, Fleet};
use crate::pipeline::pipeline;
use crate::plan::Driver;
use crate::profile::{Event, Mode, Profile, Signal};
use crate::progress::Watcher;
use crate::reader::Out;
use crate::reader::{self, Concurrent};
use crate::recovery::Fault;
use crate::seed;
use crate::verify::{verify, Verdict};

/// Where a run's broker, binaries and files are.
#[derive(Debug, Clone)]
pub struct Setup {
    pub workspace: PathBuf,
    pub kafka_dir: PathBuf,
    pub kafka_port: u16,
    /// Pipeline file, instance logs and the broker script's output go here.
    pub run_dir: PathBuf,
}

/// What a run found; filled in as far as the run got.
#[derive(Debug, Default)]
pub struct Report {
    pub mode: Mode,
    pub records_in: usize,
    pub fresh: Option<Verdict>,
    pub concurrent: Option<Verdict>,
    pub faults: Vec<Fault>,
    pub kills: u32,
    /// SIGKILLs sent while the instance was held in a transform call, i.e. inside an open transaction.
    pub kills_in_transaction: u32,
    pub terms: u32,
    pub broker_restarts: u32,
    pub aborts: u64,
    pub transactions: u64,
    /// Plugin panics the instances caught.
    pub panics: u64,
    /// Which injected faults the profile makes certain to fire, so the verdict can require them.
    pub expected: Expected,
    pub anomalies: Vec<Anomaly>,
    pub copy_time: Option<Duration>,
    pub duration: Duration,
    /// Why the run did not finish, if it did not.
    pub failure: Option<String>,
}

/// The faults a profile injects, which a run that proves anything must have seen fire.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// Batches fail (error or panic): aborted transactions.
    pub aborts: bool,
    pub panics: bool,
    /// The plan bounces instances with SIGKILL.
    pub kills: bool,
}

impl Expected {
    pub fn of(profile: &Profile) -> Expected {
        Expected {
            aborts: profile.error_probability > 0.0 || profile.panic_probability > 0.0,
            panics: profile.panic_probability > 0.0,
            kills: profile.plan.iter().any(|step| {
                matches!(
                    step.event,
                    Event::Bounce {
                        signal: Signal::Kill,
                        ..
                    }
                )
            }),
        }
    }
}

/// Runs `profile` and reports; the report carries the failure when the run could not finish.
pub fn run(profile: &Profile, setup: &Setup) -> Report {
    let started = Instant::now();
    let mut report = Report {
        mode: profile.mode,
        expected: Expected::of(profile),
        ..Report::default()
    };
    if let Err(error) = execute(profile, setup, started, &mut report) {
        report.failure = Some(format!("{error:#}"));
    }
    report.duration = started.elapsed();
    report
}

/// Prints a progress line prefixed with the time since the start.
pub fn say(started: Instant, message: impl AsRef<str>) {
    println!(
        "[{:7.1}s] {}",
        started.elapsed().as_secs_f64(),
        message.as_ref()
    );
}

fn execute(profile: &Profile, setup: &Setup, started: Instant, report: &mut Report) -> Result<()> {
    let deadline = started + profile.deadline;
    std::fs::create_dir_all(&setup.run_dir)
        .with_context(|| format!("create {}", setup.run_dir.display()))?;
    say(
        started,
        format!("run directory {}", setup.run_dir.display()),
    );

    let mut broker = Broker::new(
        &setup.workspace,
        &setup.kafka_dir,
        setup.kafka_port,
        &setup.run_dir.join("broker-ops.log"),
    )?;
    say(
        started,
        format!(
            "resetting and starting the harness broker at {}",
            broker.bootstrap()
        ),
    );
    broker.reset()?;
    broker.start()?;

    let input = catch("create the input topic", || {
        create_topic(&unique_name("chaos-in"), profile.partitions, &[])
    })?;
    let output = catch("create the output topic", || {
        create_topic(&unique_name("chaos-out"), profile.partitions, &[])
    })?;
    let seeded = seed::seed(
        &input.name,
        profile.partitions,
        profile.records,
        profile.mode,
    )?;
    report.records_in = seeded.len();
    let seed::Input { ids, ends } = seeded;
    say(
        started,
        format!(
            "seeded {} records into {} ({} partitions)",
            report.records_in, input.name, profile.partitions
        ),
    );

    let pause_file = setup.run_dir.join("pause-calls");
    let state_dir = setup.run_dir.join("state");
    let pipeline = pipeline(profile, &input, &output, &pause_file, &state_dir)?;
    let config = setup.run_dir.join("pipeline.toml");
    std::fs::write(&config, pipeline.to_toml())
        .with_context(|| format!("write {}", config.display()))?;

    let mut watcher = Watcher::start(&setup.run_dir, &input.name);
    let reader = Concurrent::start(&output.name, profile.partitions);
    let mut fleet = Fleet::new(&config, &setup.run_dir, &pause_file);
    let copy_started = Instant::now();
    for instance in 0..profile.instances {
        fleet.start(&instance.to_string())?;
    }
    say(
        started,
        format!(
            "started {} instances; copying {} records",
            profile.instances, report.records_in
        ),
    );

    let mut driver = Driver::new(
        profile,
        &mut fleet,
        &mut broker,
        &watcher,
        &reader,
        &ends,
        started,
        deadline,
    );
    let outcome = driver.run();
    if outcome.is_err() {
        driver.diagnose();
    }
    report.faults = std::mem::take(&mut driver.faults);
    report.broker_restarts = driver.counts.broker_restarts;
    report.kills = fleet.kills;
    report.kills_in_transaction = fleet.kills_in_transaction;
    report.terms = fleet.terms;
    report.anomalies = fleet.anomalies.clone();
    // Also for a failed run: the totals the logs show so far.
    watcher.with(|p| {
        report.aborts = p.aborts();
        report.transactions = p.transactions;
        report.panics = p.panics;
    });
    outcome?;
    report.copy_time = Some(copy_started.elapsed());
    say(
        started,
        "every input offset committed; stopping the instances (SIGTERM)",
    );
    fleet.stop_all()?;
    watcher.finish();
    report.anomalies = fleet.anomalies.clone();
    watcher.with(|p| {
        report.aborts = p.aborts();
        report.transactions = p.transactions;
        report.panics = p.panics;
    });

    reader::wait_stable(&output, deadline)?;
    let group_offsets = catch("read the group's committed offsets", || {
        committed_offsets(&pipeline.group_id, &input)
    })?;
    let expected: Vec<Option<i64>> = ends.iter().copied().map(Some).collect();
    if group_offsets != expected {
        bail!(
            "the group committed {group_offsets:?}, expected the input's end offsets {expected:?}"
        );
    }
    say(
        started,
        format!(
            "concurrent reader saw {} records so far; reading to the end",
            reader.seen()
        ),
    );
    let concurrent = reader
        .finish()
        .context("concurrent read_committed reader")?;
    report.concurrent = Some(judge(profile.mode, &ids, &concurrent));
    say(
        started,
        "reading the output with a fresh read_committed reader",
    );
    let fresh = reader::read_fresh(&output.name, profile.partitions)
        .context("fresh read_committed reader")?;
    report.fresh = Some(judge(profile.mode, &ids, &fresh));
    if Instant::now() > deadline {
        bail!(
            "the run took longer than its deadline of {:?}",
            profile.deadline
        );
    }
    Ok(())
}

/// The verdict on what a reader saw: a copy record for record, or exact counts per key.
fn judge(mode: Mode, ids: &[Vec<u64>], output: &[Out]) -> Verdict {
    match mode {
        Mode::Copy => verify(ids, output),
        Mode::Count { keys } => verify_counts(ids, keys, output),
    }
}

/// The default run directory: `<workspace>/target/chaos/<profile>-<unix time>`.
pub fn default_run_dir(workspace: &Path, profile: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    workspace
        .join("target")
        .join("chaos")
        .join(format!("{profile}-{secs}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileName;

    #[test]
    fn the_ci_profile_expects_aborts_panics_and_sigkills() {
        let profile = Profile::new(ProfileName::Ci);
        assert_eq!(
            Expected::of(&profile),
            Expected {
                aborts: true,
                panics: true,
                kills: true
            }
        );
        let quiet = Profile {
            error_probability: 0.0,
            panic_probability: 0.0,
            plan: Vec::new(),
            ..profile
        };
        assert_eq!(Expected::of(&quiet), Expected::default());
    }
}
