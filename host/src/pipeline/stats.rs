//! Counters of the pipeline and the periodic throughput line.

use std::time::{Duration, Instant};

use super::attempt::Committed;

/// Totals since start, plus the snapshot of the last report for rates.
#[derive(Debug)]
pub struct Stats {
    pub records_in: u64,
    pub records_out: u64,
    pub transactions: u64,
    pub aborts: u64,
    pub retries: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
    interval: Duration,
    last_report: Instant,
    last_in: u64,
    last_out: u64,
}

impl Stats {
    pub fn new(interval: Duration) -> Self {
        Stats {
            records_in: 0,
            records_out: 0,
            transactions: 0,
            aborts: 0,
            retries: 0,
            dead_lettered: 0,
            skipped: 0,
            interval,
            last_report: Instant::now(),
            last_in: 0,
            last_out: 0,
        }
    }

    /// Counts a committed attempt.
    pub fn committed(&mut self, done: Committed) {
        self.records_in += done.records_in as u64;
        self.records_out += done.produced as u64;
        self.dead_lettered += done.dead_lettered as u64;
        self.skipped += done.skipped as u64;
        self.transactions += 1;
    }

    /// Logs the throughput line at info when the interval has passed.
    pub fn maybe_report(&mut self) {
        let elapsed = self.last_report.elapsed();
        if elapsed >= self.interval {
            log::info!("{}", self.line(elapsed));
            self.last_report = Instant::now();
            self.last_in = self.records_in;
            self.last_out = self.records_out;
        }
    }

    /// The final totals, logged at shutdown.
    pub fn summary(&self) -> String {
        format!(
            "totals: records in={} out={} transactions={} aborts={} retries={} dead_lettered={} skipped={}",
            self.records_in,
            self.records_out,
            self.transactions,
            self.aborts,
            self.retries,
            self.dead_lettered,
            self.skipped
        )
    }

    fn line(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(1e-3);
        format!(
            "stats: records in={} ({:.0}/s) out={} ({:.0}/s) transactions={} aborts={} retries={} dead_lettered={} skipped={}",
            self.records_in,
            (self.records_in - self.last_in) as f64 / secs,
            self.records_out,
            (self.records_out - self.last_out) as f64 / secs,
            self.transactions,
            self.aborts,
            self.retries,
            self.dead_lettered,
            self.skipped
        )
    }
}
