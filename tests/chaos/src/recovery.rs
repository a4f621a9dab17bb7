//! Recovery times: for each fault, how long until every input partition that still had records to
//! copy committed a transaction again.
//!
//! "Any instance committed something" would say little: after an instance crash the others go on
//! committing their own partitions. What a downstream consumer notices is the slowest partition
//! getting going again, so that is what is measured.

use std::time::{Duration, Instant};

use crate::progress::Progress;

/// One injected fault and what became of it.
#[derive(Debug, Clone)]
pub struct Fault {
    pub label: String,
    pub at: Instant,
    /// Copy progress when it was injected, 0.0..=1.0.
    pub progress: f64,
    /// Input partitions with records left to copy at that moment.
    pub waiting: Vec<i32>,
    /// e.g. how long the broker was down.
    pub note: String,
    pub recovered: Option<Duration>,
    /// The time until any partition committed after the fault (0 when it did not stop everything).
    pub first_commit: Option<Duration>,
    /// The partition that took longest to commit again.
    pub slowest: Option<i32>,
}

impl Fault {
    /// The partitions of `ends` (input end offsets by partition) not fully committed per `progress`.
    pub fn new(
        label: String,
        at: Instant,
        progress: &Progress,
        ends: &[i64],
        note: String,
    ) -> Fault {
        let committed: i64 = ends.iter().sum();
        let waiting = (0..ends.len() as i32)
            .filter(|p| progress.next_offset(*p) < ends[*p as usize])
            .collect();
        Fault {
            label,
            at,
            progress: progress.committed_records(ends.len() as i32) as f64
                / committed.max(1) as f64,
            waiting,
            note,
            recovered: None,
            first_commit: None,
            slowest: None,
        }
    }

    /// Sets `recovered` once every waiting partition has committed after the fault; true then.
    pub fn check(&mut self, progress: &Progress) -> bool {
        if self.first_commit.is_none() {
            self.first_commit = self
                .waiting
                .iter()
                .filter_map(|p| progress.first_commit_after(*p, self.at))
                .min()
                .map(|first| first - self.at);
        }
        if self.recovered.is_none() {
            if let Some((time, partition)) = recovery(progress, self.at, &self.waiting) {
                self.recovered = Some(time);
                self.slowest = partition;
            }
        }
        self.recovered.is_some()
    }
}

/// The time from `at` until each of `waiting` had a commit after `at`, and the partition that took
/// longest; `None` while one has not committed yet.
pub fn recovery(
    progress: &Progress,
    at: Instant,
    waiting: &[i32],
) -> Option<(Duration, Option<i32>)> {
    let mut worst = (Duration::ZERO, None);
    for partition in waiting {
        let took = progress.first_commit_after(*partition, at)? - at;
        if worst.1.is_none() || took > worst.0 {
            worst = (took, Some(*partition));
        }
    }
    Some(worst)
}

/// The fault that took longest to recover from.
pub fn worst(faults: &[Fault]) -> Option<&Fault> {
    faults
        .iter()
        .filter(|f| f.recovered.is_some())
        .max_by_key(|f| f.recovered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Commit;

    #[test]
    fn recovery_waits_for_the_slowest_partition() {
        let t0 = Instant::now();
        let mut progress = Progress::default();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        progress.commits.insert(
            0,
            vec![
                Commit {
                    at: at(10),
                    next: 5,
                },
                Commit {
                    at: at(300),
                    next: 9,
                },
            ],
        );
        progress.commits.insert(
            1,
            vec![Commit {
                at: at(20),
                next: 10,
            }],
        );
        let mut fault = Fault::new("x".into(), at(100), &progress, &[20, 10], String::new());
        assert_eq!(fault.waiting, vec![0]);
        assert!(fault.check(&progress));
        assert_eq!(fault.recovered, Some(Duration::from_millis(200)));
        assert_eq!(fault.slowest, Some(0));
        assert_eq!(recovery(&progress, at(100), &[0, 1]), None);
    }
}
