//! What one run does: how many records, instances and faults, and when the faults come.
//!
//! Faults are scheduled by copy progress (the share of input records whose offsets are committed), like
//! Kafka's transactions system test bounces its copiers once they made 20% progress: a fault injected
//! before the copy starts or after it ends proves nothing. Events run one after the other, each once
//! its progress threshold is passed and the previous fault has recovered, so every recovery time
//! measures one fault.

use std::time::Duration;

use clap::ValueEnum;

/// The named profiles of the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileName {
    /// A few minutes: part of the test command (`scripts/test.sh`).
    Ci,
    /// Kafka's transactions system test at its own scale: 100,000 records, 3 bounce rounds, 2 broker
    /// kills, rebalances; then the stateful pass.
    Full,
    /// The ci faults on a running count per key (plugins/count): exact counts prove the state
    /// committed with the outputs.
    Stateful,
}

impl ProfileName {
    /// The passes a profile runs, one after the other, each with its name in the summary line.
    pub fn passes(self) -> Vec<(&'static str, Profile)> {
        match self {
            ProfileName::Ci => vec![("ci", Profile::new(ProfileName::Ci))],
            ProfileName::Stateful => vec![("stateful", Profile::new(ProfileName::Stateful))],
            ProfileName::Full => vec![
                ("full", Profile::new(ProfileName::Full)),
                ("full-stateful", Profile::new(ProfileName::Stateful)),
            ],
        }
    }
}

/// What the pipeline does to the input, and so how the output is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Copy every record (passthrough): the output is the input, record for record.
    #[default]
    Copy,
    /// Count per key (plugins/count) over `keys` keys: the output of each key is 1, 2, ..., n.
    Count { keys: u64 },
}

/// How an instance is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A clean stop: the batch in flight is finished or aborted first.
    Term,
    /// A crash: the open transaction is left for the restarted instance to abort.
    Kill,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Kill => "SIGKILL",
        }
    }
}

/// One fault of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Stop instance `instance` with `signal` and start it again at once (same instance id, so the
    /// new process fences the old one and, with static membership, takes its partitions back).
    Bounce { instance: usize, signal: Signal },
    /// SIGKILL the broker, then start it again on the same data.
    BrokerKill,
    /// Stop instance `instance` cleanly and keep it stopped: once its session times out the group
    /// rebalances its partitions to the others.
    Leave { instance: usize },
    /// Start instance `instance` (again): the group rebalances to include it.
    Join { instance: usize },
}

impl Event {
    pub fn describe(&self) -> String {
        match self {
            Event::Bounce { instance, signal } => {
                format!("{} instance {instance} + restart", signal.name())
            }
            Event::BrokerKill => "SIGKILL broker + restart".to_string(),
            Event::Leave { instance } => format!("instance {instance} leaves (SIGTERM)"),
            Event::Join { instance } => format!("instance {instance} joins"),
        }
    }
}

/// An event and the copy progress (0.0..1.0) it waits for.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at: f64,
    pub event: Event,
}

/// Everything a run is parameterised by.
#[derive(Debug, Clone)]
pub struct Profile {
    pub mode: Mode,
    pub records: u64,
    pub partitions: i32,
    /// Instances started at the beginning (ids `0..instances`); the plan may add more.
    pub instances: usize,
    /// Records per transaction. Small on purpose: a transaction costs about 100 ms here whatever its
    /// size, so this sets the copy rate (about 3 x max_records x 10 records/s), and the copy must
    /// outlast the faults. With 200-record batches 3 instances copy 3,000 records/s and 20,000 records
    /// are copied before the first broker restart is over.
    pub max_records: i64,
    pub max_wait_ms: i64,
    /// Probability that a batch fails with an error, and (a second fault stage) with a panic.
    pub error_probability: f64,
    pub panic_probability: f64,
    pub max_retries: i64,
    pub plan: Vec<Step>,
    /// The whole run, seeding to verification, must end within this.
    pub deadline: Duration,
    /// A fault not recovered from within this fails the run.
    pub recovery_timeout: Duration,
    /// How long a left instance stays away before joining again.
    pub away: Duration,
}

impl Profile {
    pub fn new(name: ProfileName) -> Profile {
        match name {
            ProfileName::Ci => Profile {
                mode: Mode::Copy,
                records: 30_000,
                partitions: 6,
                instances: 3,
                max_records: 12,
                max_wait_ms: 100,
                error_probability: 0.025,
                panic_probability: 0.025,
                max_retries: 20,
                plan: vec![
                    step(
                        0.15,
                        Event::Bounce {
                            instance: 0,
                            signal: Signal::Kill,
                        },
                    ),
                    step(0.25, Event::BrokerKill),
                    step(
                        0.40,
                        Event::Bounce {
                            instance: 1,
                            signal: Signal::Term,
                        },
                    ),
                    step(0.50, Event::Leave { instance: 2 }),
                    step(0.60, Event::Join { instance: 2 }),
                ],
                deadline: Duration::from_secs(300),
                recovery_timeout: Duration::from_secs(60),
                away: Duration::from_secs(8),
            },
            ProfileName::Full => {
                let mut plan = Vec::new();
                // Three rounds of bounces, alternating crash and clean stop, like Kafka's test.
                let rounds = [0.20, 0.40, 0.62];
                for (round, start) in rounds.iter().enumerate() {
                    for instance in 0..3 {
                        let signal = if (round + instance) % 2 == 0 {
                            Signal::Kill
                        } else {
                            Signal::Term
                        };
                        plan.push(step(
                            start + 0.01 * instance as f64,
                            Event::Bounce { instance, signal },
                        ));
                    }
                }
                plan.extend([
                    step(0.30, Event::BrokerKill),
                    step(0.48, Event::Leave { instance: 1 }),
                    step(0.52, Event::Join { instance: 1 }),
                    step(0.56, Event::Join { instance: 3 }),
                    step(0.70, Event::BrokerKill),
                    step(0.78, Event::Leave { instance: 3 }),
                ]);
                plan.sort_by(|a, b| a.at.total_cmp(&b.at));
                Profile {
                    mode: Mode::Copy,
                    records: 100_000,
                    partitions: 6,
                    instances: 3,
                    max_records: 20,
                    max_wait_ms: 100,
                    error_probability: 0.025,
                    panic_probability: 0.025,
                    max_retries: 20,
                    plan,
                    deadline: Duration::from_secs(1200),
                    recovery_timeout: Duration::from_secs(90),
                    away: Duration::from_secs(10),
                }
            }
            // The ci faults on fewer records: a count costs a changelog write per key and batch.
            // 60 keys over 6 partitions (key k in partition k % 6): each key repeats ~330 times.
            ProfileName::Stateful => Profile {
                mode: Mode::Count { keys: 60 },
                records: 20_000,
                ..Profile::new(ProfileName::Ci)
            },
        }
    }
}

fn step(at: f64, event: Event) -> Step {
    Step { at, event }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every plan must be executable: joins only of absent instances, leaves and bounces only of
    /// present ones, thresholds increasing and inside the copy.
    fn check(profile: &Profile) {
        let mut present: Vec<bool> = (0..8).map(|i| i < profile.instances).collect();
        let mut last = 0.0;
        for step in &profile.plan {
            assert!(step.at >= last && step.at < 0.9, "{step:?}");
            last = step.at;
            match step.event {
                Event::Bounce { instance, .. } => assert!(present[instance], "{step:?}"),
                Event::Leave { instance } => {
                    assert!(present[instance], "{step:?}");
                    present[instance] = false;
                }
                Event::Join { instance } => {
                    assert!(!present[instance], "{step:?}");
                    present[instance] = true;
                }
                Event::BrokerKill => {}
            }
        }
    }

    #[test]
    fn plans_are_consistent() {
        let ci = Profile::new(ProfileName::Ci);
        check(&ci);
        assert_eq!(ci.records, 30_000);
        let full = Profile::new(ProfileName::Full);
        check(&full);
        assert_eq!(full.records, 100_000);
        let bounces = full
            .plan
            .iter()
            .filter(|s| matches!(s.event, Event::Bounce { .. }))
            .count();
        assert_eq!(bounces, 9);
        let broker = full
            .plan
            .iter()
            .filter(|s| s.event == Event::BrokerKill)
            .count();
        assert_eq!(broker, 2);
    }

    #[test]
    fn the_stateful_profile_has_the_ci_faults_and_full_runs_it_too() {
        let ci = Profile::new(ProfileName::Ci);
        let stateful = Profile::new(ProfileName::Stateful);
        check(&stateful);
        assert_eq!(stateful.mode, Mode::Count { keys: 60 });
        assert_eq!(stateful.plan, ci.plan);
        assert_eq!(ci.mode, Mode::Copy);
        let names = |p: ProfileName| -> Vec<&str> { p.passes().iter().map(|(n, _)| *n).collect() };
        assert_eq!(names(ProfileName::Ci), ["ci"]);
        assert_eq!(names(ProfileName::Stateful), ["stateful"]);
        assert_eq!(names(ProfileName::Full), ["full", "full-stateful"]);
    }
}
