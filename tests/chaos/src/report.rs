//! The end of a run as printed: the fault table, anomalies, the readers' verdicts and one summary
//! line, which is what CI logs and the README quote.

use std::time::Duration;

use crate::profile::Mode;
use crate::recovery::worst;
use crate::run::Report;
use crate::verify::Verdict;

/// The faults the profile injects that the run never saw fire: a run in which no transaction was
/// aborted, no plugin panicked or no SIGKILL landed inside an open transaction passed without meeting
/// the fault (a SIGKILL between transactions leaves nothing for the successor to abort).
pub fn unfired(report: &Report) -> Vec<&'static str> {
    let expected = report.expected;
    [
        (
            expected.aborts && report.aborts == 0,
            "no transaction was aborted",
        ),
        (
            expected.panics && report.panics == 0,
            "no plugin panic was caught",
        ),
        (
            expected.kills && report.kills_in_transaction == 0,
            "no SIGKILL landed inside an open transaction",
        ),
    ]
    .into_iter()
    .filter_map(|(missing, what)| missing.then_some(what))
    .collect()
}

/// Prints the fault table, any anomaly, and the one summary line; returns whether the run passed.
///
/// A run passes when it finished, every fault its profile injects fired (see [`unfired`]), and both
/// readers saw every input exactly once, in order, unaltered; with `strict`, also only when no
/// instance misbehaved (see [`crate::fleet::Anomaly`]).
pub fn print(name: &str, report: &Report, strict: bool) -> bool {
    println!("faults (recovery = until every input partition with records left committed again):");
    for fault in &report.faults {
        let seconds = |d: Option<Duration>, none: &str| {
            d.map_or(none.to_string(), |d| format!("{:.2}s", d.as_secs_f64()))
        };
        println!(
            "  {:<40} at {:5.1}%  recovery {:>13}{}  first commit {:>7}  ({})",
            fault.label,
            100.0 * fault.progress,
            seconds(fault.recovered, "NOT RECOVERED"),
            fault.slowest.map_or(String::new(), |p| format!(" (p{p})")),
            seconds(fault.first_commit, "none"),
            fault.note
        );
    }
    for anomaly in &report.anomalies {
        println!(
            "anomaly: instance {} {} (log {})",
            anomaly.instance,
            anomaly.what,
            anomaly.log.display()
        );
    }
    for (name, verdict) in [("concurrent", &report.concurrent), ("fresh", &report.fresh)] {
        if let Some(v) = verdict {
            println!("{name} read_committed reader: {}", v.describe());
            for example in &v.examples {
                println!("  {example}");
            }
        }
    }
    let worst = worst(&report.faults)
        .map(|f| {
            format!(
                "{:.2}s ({})",
                f.recovered.unwrap_or_default().as_secs_f64(),
                f.label
            )
        })
        .unwrap_or_else(|| "n/a".to_string());
    let concurrent_ok = report.concurrent.as_ref().is_some_and(Verdict::ok);
    let verified = report.fresh.as_ref().is_some_and(Verdict::ok) && concurrent_ok;
    let unexpected_exits = report
        .anomalies
        .iter()
        .filter(|a| a.ended_by_itself)
        .count();
    let unfired = unfired(report);
    for fault in &unfired {
        println!("fault never fired: {fault}; the run proves nothing about it");
    }
    let passed = report.failure.is_none()
        && verified
        && unfired.is_empty()
        && (!strict || report.anomalies.is_empty());
    if let Some(failure) = &report.failure {
        println!("run failed: {failure}");
    }
    if !report.anomalies.is_empty() && !strict {
        println!(
            "warning: {} instance anomalies (listed above); exactly-once is unaffected, --strict fails on them",
            report.anomalies.len()
        );
    }
    // Counts of a reader that never ran are unknown, not zero.
    let count = |f: fn(&Verdict) -> usize| {
        report
            .fresh
            .as_ref()
            .map_or("n/a".to_string(), |v| f(v).to_string())
    };
    println!(
        "txform-chaos summary: profile={name} records_in={} records_out={} duplicates={} missing={} \
         order_violations={} unexpected={} altered={} concurrent_reader={} instance_kills={} (SIGKILL {}, {} inside a transaction, SIGTERM {}) \
         broker_restarts={} aborted_transactions={} panics={} transactions={} unexpected_instance_exits={unexpected_exits} \
         anomalies={} worst_recovery={worst} copy_time={} duration={:.0}s{} result={}",
        report.records_in,
        count(|v| v.records_out),
        count(|v| v.duplicates),
        count(|v| v.missing),
        count(|v| v.order_violations),
        count(|v| v.unexpected),
        count(|v| v.altered),
        match &report.concurrent {
            Some(v) if v.ok() => "ok".to_string(),
            Some(v) => format!("FAILED({})", v.describe()),
            None => "n/a".to_string(),
        },
        report.kills + report.terms,
        report.kills,
        report.kills_in_transaction,
        report.terms,
        report.broker_restarts,
        report.aborts,
        report.panics,
        report.transactions,
        report.anomalies.len(),
        report
            .copy_time
            .map_or("n/a".to_string(), |d| format!("{:.0}s", d.as_secs_f64())),
        report.duration.as_secs_f64(),
        stateful(report),
        if passed { "PASS" } else { "FAIL" }
    );
    passed
}

/// ` stateful: keys=K counts_exact=yes|no|n/a` for a count (yes: both readers saw exactly 1..n per
/// key), else nothing.
fn stateful(report: &Report) -> String {
    let Mode::Count { keys } = report.mode else {
        return String::new();
    };
    let readers = [&report.fresh, &report.concurrent];
    let exact = if readers.iter().any(|v| v.is_none()) {
        "n/a"
    } else if readers.iter().all(|v| v.as_ref().is_some_and(Verdict::ok)) {
        "yes"
    } else {
        "no"
    };
    let keys = report
        .fresh
        .as_ref()
        .and_then(|v| v.keys)
        .unwrap_or(keys as usize);
    format!(" stateful: keys={keys} counts_exact={exact}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Expected;

    fn report(aborts: u64, panics: u64, kills_in_transaction: u32) -> Report {
        Report {
            aborts,
            panics,
            kills: 1,
            kills_in_transaction,
            expected: Expected {
                aborts: true,
                panics: true,
                kills: true,
            },
            ..Report::default()
        }
    }

    #[test]
    fn every_expected_fault_must_have_fired() {
        assert_eq!(unfired(&report(3, 2, 1)), Vec::<&str>::new());
        assert_eq!(
            unfired(&report(0, 0, 0)),
            [
                "no transaction was aborted",
                "no plugin panic was caught",
                "no SIGKILL landed inside an open transaction"
            ]
        );
        assert_eq!(unfired(&report(5, 0, 1)), ["no plugin panic was caught"]);
    }

    #[test]
    fn a_count_reports_its_keys_and_whether_both_readers_saw_exact_counts() {
        let exact = Verdict {
            keys: Some(60),
            ..Verdict::default()
        };
        let mut report = Report {
            mode: Mode::Count { keys: 60 },
            fresh: Some(exact.clone()),
            ..Report::default()
        };
        assert_eq!(stateful(&report), " stateful: keys=60 counts_exact=n/a");
        report.concurrent = Some(Verdict {
            duplicates: 1,
            ..exact.clone()
        });
        assert_eq!(stateful(&report), " stateful: keys=60 counts_exact=no");
        report.concurrent = Some(exact);
        assert_eq!(stateful(&report), " stateful: keys=60 counts_exact=yes");
        assert_eq!(stateful(&Report::default()), "");
    }

    #[test]
    fn faults_a_profile_does_not_inject_are_not_required() {
        let quiet = Report::default();
        assert_eq!(unfired(&quiet), Vec::<&str>::new());
    }
}
