//! Reading txform's log lines: the per-transaction debug line and the error line.

/// Totals over every `committed N in, M out ...` debug line of a log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    pub transactions: u64,
    pub records_in: u64,
    pub records_out: u64,
}

/// `(N, M)` from a line containing `committed N in, M out`.
pub fn parse_committed(line: &str) -> Option<(u64, u64)> {
    let rest = &line[line.find("committed ")? + "committed ".len()..];
    let (records_in, rest) = rest.split_once(" in, ")?;
    let (records_out, _) = rest.split_once(" out")?;
    Some((
        records_in.trim().parse().ok()?,
        records_out.trim().parse().ok()?,
    ))
}

/// Sums the `committed N in, M out` debug lines of `log` (one per committed transaction). Panics on a
/// commit line of another form, which would make the sums silently wrong.
pub fn committed_totals(log: &str) -> Committed {
    let mut totals = Committed::default();
    for line in log.lines().filter(|l| l.contains("] committed ")) {
        let (records_in, records_out) = parse_committed(line).unwrap_or_else(|| {
            panic!("a commit log line without the `committed N in, M out ...` form of the contract: {line}")
        });
        totals.transactions += 1;
        totals.records_in += records_in;
        totals.records_out += records_out;
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_lines_are_parsed() {
        let line = "[2026-01-01T00:00:00Z DEBUG txform::pipeline::runner] committed 100 in, 98 out in 12.3ms: t/0 offsets 0..=99";
        assert_eq!(parse_committed(line), Some((100, 98)));
        assert_eq!(parse_committed("transactions initialised in 1s"), None);
        let log = format!("{line}\nother: committed nothing\n{line}\n");
        assert_eq!(
            committed_totals(&log),
            Committed {
                transactions: 2,
                records_in: 200,
                records_out: 196
            }
        );
    }
}
