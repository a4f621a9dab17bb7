//! Running the fault plan: wait for each fault's progress threshold, inject it, wait until it is
//! recovered from; all the while restart instances that end by themselves, watch the deadline and
//! print progress.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::broker::Broker;
use crate::faults::{inject, Counts};
use crate::fleet::Fleet;
use crate::profile::{Event, Profile};
use crate::progress::Watcher;
use crate::reader::Concurrent;
use crate::recovery::Fault;
use crate::run::say;
use crate::INTERRUPTED;

/// Everything the plan acts on or watches.
pub struct Driver<'a> {
    pub profile: &'a Profile,
    pub fleet: &'a mut Fleet,
    pub broker: &'a mut Broker,
    pub watcher: &'a Watcher,
    pub reader: &'a Concurrent,
    /// The input's end offsets, by partition.
    pub ends: &'a [i64],
    pub started: Instant,
    pub deadline: Instant,
    pub counts: Counts,
    /// Every fault injected so far, recovered or not.
    pub faults: Vec<Fault>,
    last_line: Instant,
}

impl<'a> Driver<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        profile: &'a Profile,
        fleet: &'a mut Fleet,
        broker: &'a mut Broker,
        watcher: &'a Watcher,
        reader: &'a Concurrent,
        ends: &'a [i64],
        started: Instant,
        deadline: Instant,
    ) -> Driver<'a> {
        Driver {
            profile,
            fleet,
            broker,
            watcher,
            reader,
            ends,
            started,
            deadline,
            counts: Counts::default(),
            faults: Vec::new(),
            last_line: Instant::now(),
        }
    }

    /// Runs the fault plan, then waits for the copy to complete.
    pub fn run(&mut self) -> Result<()> {
        let profile = self.profile;
        let mut left: BTreeMap<usize, Instant> = BTreeMap::new();
        for (n, step) in profile.plan.iter().enumerate() {
            while self.fraction() < step.at && !self.done() {
                self.tick()?;
            }
            if let Event::Join { instance } = step.event {
                if let Some(since) = left.get(&instance) {
                    while since.elapsed() < profile.away && !self.done() {
                        self.tick()?;
                    }
                }
            }
            if self.done() {
                bail!(
                    "the copy finished before fault {} of {} ({}) could be injected: the profile needs \
                     more records or smaller batches",
                    n + 1,
                    profile.plan.len(),
                    step.event.describe()
                );
            }
            let label = format!("#{} {}", n + 1, step.event.describe());
            let mut fault = self
                .watcher
                .with(|p| Fault::new(label, Instant::now(), p, self.ends, String::new()));
            say(
                self.started,
                format!("fault {} at {:.1}%", fault.label, 100.0 * fault.progress),
            );
            let injected = inject(&step.event, self.fleet, self.broker, &mut self.counts)?;
            fault.at = injected.at;
            fault.note = injected.note;
            if let Event::Leave { instance } = step.event {
                left.insert(instance, injected.at);
            }
            self.faults.push(fault);
            self.wait_recovery()?;
        }
        while !self.done() {
            self.tick()?;
        }
        Ok(())
    }

    /// Waits until the last fault is recovered from, or fails after the profile's recovery time-out.
    fn wait_recovery(&mut self) -> Result<()> {
        let limit =
            self.faults.last().map_or(Instant::now(), |f| f.at) + self.profile.recovery_timeout;
        loop {
            let Some(fault) = self.faults.last_mut() else {
                return Ok(());
            };
            if self.watcher.with(|p| fault.check(p)) {
                say(
                    self.started,
                    format!(
                        "recovered from {} in {:.2}s (first commit after {:.2}s; {})",
                        fault.label,
                        fault.recovered.unwrap_or_default().as_secs_f64(),
                        fault.first_commit.unwrap_or_default().as_secs_f64(),
                        fault.note
                    ),
                );
                return Ok(());
            }
            if Instant::now() >= limit {
                let stuck: Vec<i32> = self.watcher.with(|p| {
                    fault
                        .waiting
                        .iter()
                        .copied()
                        .filter(|w| p.first_commit_after(*w, fault.at).is_none())
                        .collect()
                });
                bail!(
                    "no recovery from fault {} within {:?}: input partitions {stuck:?} committed nothing since",
                    fault.label,
                    self.profile.recovery_timeout
                );
            }
            self.tick()?;
        }
    }

    /// One round of watching: interruption, deadline, instances that ended by themselves, the
    /// reader, a progress line every few seconds. Sleeps a little.
    fn tick(&mut self) -> Result<()> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        if Instant::now() >= self.deadline {
            bail!("the run did not finish within its deadline");
        }
        let known = self.fleet.anomalies.len();
        if self.fleet.supervise()? > 0 {
            for anomaly in &self.fleet.anomalies[known..] {
                say(
                    self.started,
                    format!(
                        "instance {} {}; restarted it ({})",
                        anomaly.instance,
                        anomaly.what,
                        anomaly.log.display()
                    ),
                );
            }
        }
        if self.reader.failed() {
            bail!("the concurrent reader stopped");
        }
        if self.last_line.elapsed() >= Duration::from_secs(5) {
            self.last_line = Instant::now();
            let (copied, transactions) = self
                .watcher
                .with(|p| (p.committed_records(self.ends.len() as i32), p.transactions));
            say(
                self.started,
                format!(
                    "progress {:.1}% ({copied} committed, {transactions} transactions; reader saw {})",
                    100.0 * copied as f64 / self.total() as f64,
                    self.reader.seen()
                ),
            );
        }
        std::thread::sleep(Duration::from_millis(50));
        Ok(())
    }

    fn total(&self) -> i64 {
        self.ends.iter().sum::<i64>().max(1)
    }

    fn fraction(&self) -> f64 {
        self.watcher
            .with(|p| p.committed_records(self.ends.len() as i32)) as f64
            / self.total() as f64
    }

    fn done(&self) -> bool {
        self.watcher.with(|p| {
            self.ends
                .iter()
                .enumerate()
                .all(|(partition, end)| p.next_offset(partition as i32) >= *end)
        })
    }

    /// Prints where each partition's copy stands, for a run that failed.
    pub fn diagnose(&self) {
        let (ends, started) = (self.ends, self.started);
        self.watcher.with(|p| {
            let now = Instant::now();
            for (partition, end) in ends.iter().enumerate() {
                let partition = partition as i32;
                let last = p
                    .commits
                    .get(&partition)
                    .and_then(|c| c.iter().map(|c| c.at).max())
                    .map(|at| format!("{:.1}s ago", (now - at).as_secs_f64()))
                    .unwrap_or_else(|| "never".to_string());
                say(
                    started,
                    format!(
                        "input partition {partition}: committed up to {} of {end}; last commit {last}",
                        p.next_offset(partition)
                    ),
                );
            }
            for (file, errors) in &p.errors {
                say(
                    started,
                    format!("{}: {}", file.display(), errors.join(" | ")),
                );
            }
        });
    }
}
