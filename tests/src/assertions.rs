//! Comparisons with short, precise failure messages (a 5000-record `assert_eq!` dump helps nobody).

use std::collections::{BTreeMap, BTreeSet};

use crate::read::{read_topic, Isolation};
use crate::records::{HeaderList, Record};
use crate::topics::Topic;

/// Key, value and headers: what a passthrough must preserve.
pub type Content = (Option<Vec<u8>>, Option<Vec<u8>>, HeaderList);

pub fn content_of(record: &Record) -> Content {
    (
        record.key.clone(),
        record.value.clone(),
        record.headers.clone(),
    )
}

/// `records` split by partition (`0..partitions`), each in the given order.
pub fn by_partition(records: &[Record], partitions: i32) -> Vec<Vec<Record>> {
    let mut split = vec![Vec::new(); partitions as usize];
    for record in records {
        assert!(
            record.partition >= 0 && record.partition < partitions,
            "record at {} outside partitions 0..{partitions}",
            record.position()
        );
        split[record.partition as usize].push(record.clone());
    }
    split
}

/// The test ids of `records`, in order. Panics on a record without one.
pub fn ids_of(records: &[Record]) -> Vec<u64> {
    records
        .iter()
        .map(|r| {
            r.test_id()
                .unwrap_or_else(|| panic!("record at {} has no test id: {r:?}", r.position()))
        })
        .collect()
}

fn show(record: &Record) -> String {
    let mut value = record.value_str();
    if value.len() > 120 {
        value.truncate(120);
        value.push_str("...");
    }
    let headers: Vec<String> = record
        .headers
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                k.escape_ascii(),
                v.as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default()
            )
        })
        .collect();
    format!(
        "{} key={:?} value={value:?} headers=[{}] timestamp={:?}",
        record.position(),
        record.key.as_deref().map(|k| k.escape_ascii().to_string()),
        headers.join(", "),
        record.timestamp
    )
}

/// [`assert_same_content`] for each of `partitions` partitions of `expected` and `actual`.
pub fn assert_same_by_partition(expected: &[Record], actual: &[Record], partitions: i32) {
    let expected = by_partition(expected, partitions);
    let actual = by_partition(actual, partitions);
    for p in 0..partitions as usize {
        assert_same_content(&expected[p], &actual[p], &format!("output partition {p}"));
    }
}

/// Asserts that `actual` has exactly the records of `expected`, in the same order, with the same
/// partition, key, value, headers and timestamp (offsets may differ). `what` names the comparison.
pub fn assert_same_content(expected: &[Record], actual: &[Record], what: &str) {
    let first_difference = expected.iter().zip(actual).position(|(e, a)| {
        e.partition != a.partition || e.timestamp != a.timestamp || content_of(e) != content_of(a)
    });
    if let Some(i) = first_difference {
        panic!(
            "{what}: record {i} differs (expected {} records, got {}):\n  expected {}\n  actual   {}",
            expected.len(),
            actual.len(),
            show(&expected[i]),
            show(&actual[i])
        );
    }
    if expected.len() != actual.len() {
        let (longer, name) = if actual.len() > expected.len() {
            (actual, "unexpected")
        } else {
            (expected, "missing")
        };
        let common = expected.len().min(actual.len());
        let extra: Vec<String> = longer[common..].iter().take(5).map(show).collect();
        panic!(
            "{what}: expected {} records, got {}; the first {} are equal; {name} from there:\n  {}",
            expected.len(),
            actual.len(),
            common,
            extra.join("\n  ")
        );
    }
}

/// Asserts that every id of `expected` appears exactly once among the test ids of `outputs`, and no
/// other id appears: exactly-once delivery, independent of order and partitioning.
pub fn assert_exactly_once_by_id(
    expected: impl IntoIterator<Item = u64>,
    outputs: &[Record],
    what: &str,
) {
    let expected: BTreeSet<u64> = expected.into_iter().collect();
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for id in ids_of(outputs) {
        *counts.entry(id).or_default() += 1;
    }
    let missing: Vec<u64> = expected
        .iter()
        .copied()
        .filter(|id| !counts.contains_key(id))
        .collect();
    let duplicated: Vec<(u64, usize)> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, n)| (*id, *n))
        .collect();
    let unexpected: Vec<u64> = counts
        .keys()
        .copied()
        .filter(|id| !expected.contains(id))
        .collect();
    if missing.is_empty() && duplicated.is_empty() && unexpected.is_empty() {
        return;
    }
    let first = |v: &[u64]| {
        v.iter()
            .take(20)
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    panic!(
        "{what}: not exactly once: {} outputs for {} expected ids; {} missing (first: {}), {} duplicated \
         (first: {:?}), {} unexpected (first: {})",
        outputs.len(),
        expected.len(),
        missing.len(),
        first(&missing),
        duplicated.len(),
        duplicated.iter().take(20).collect::<Vec<_>>(),
        unexpected.len(),
        first(&unexpected)
    );
}

/// The output, read_committed, is exactly `expected` in every partition, in order. read_uncommitted
/// readers also see the outputs of aborted transactions (a streamed batch produces each chunk's
/// outputs before it knows it will commit), and nothing else: they see the committed output in the
/// same order, and every other record they see is a copy of one of `expected`.
pub fn assert_output(expected: &[Record], output: &Topic) {
    let committed = read_committed_output(expected, output);
    let uncommitted = read_topic(output, Isolation::ReadUncommitted);
    if let Some(problem) =
        uncommitted_problem(expected, &committed, &uncommitted, output.partitions)
    {
        panic!("read_uncommitted output: {problem}");
    }
}

/// What is wrong with `uncommitted` as the read_uncommitted view of `committed`: a committed
/// record missing or out of order in its partition, or another record that is no copy of one of
/// `expected`.
fn uncommitted_problem(
    expected: &[Record],
    committed: &[Record],
    uncommitted: &[Record],
    partitions: i32,
) -> Option<String> {
    let committed = by_partition(committed, partitions);
    let uncommitted = by_partition(uncommitted, partitions);
    let known: BTreeSet<_> = expected
        .iter()
        .map(|r| (r.partition, r.timestamp, content_of(r)))
        .collect();
    for p in 0..partitions as usize {
        let mut next = 0;
        for record in &uncommitted[p] {
            let matches = committed[p].get(next).is_some_and(|c| {
                c.timestamp == record.timestamp && content_of(c) == content_of(record)
            });
            if matches {
                next += 1;
            } else if !known.contains(&(record.partition, record.timestamp, content_of(record))) {
                return Some(format!("partition {p}: no input's copy: {}", show(record)));
            }
        }
        if let Some(missing) = committed[p].get(next) {
            return Some(format!("partition {p} lacks committed {}", show(missing)));
        }
    }
    None
}

/// [`assert_output`] for a run in which no transaction was aborted: read_uncommitted readers see
/// exactly the committed output.
pub fn assert_output_without_aborts(expected: &[Record], output: &Topic) {
    let committed = read_committed_output(expected, output);
    let uncommitted = read_topic(output, Isolation::ReadUncommitted);
    assert_same_content(
        &committed,
        &uncommitted,
        "read_uncommitted output vs read_committed output",
    );
}

/// Reads `output` read_committed and asserts it is exactly `expected` in every partition, in order.
fn read_committed_output(expected: &[Record], output: &Topic) -> Vec<Record> {
    let committed = read_topic(output, Isolation::ReadCommitted);
    let expected = by_partition(expected, output.partitions);
    let actual = by_partition(&committed, output.partitions);
    for p in 0..output.partitions as usize {
        assert_same_content(
            &expected[p],
            &actual[p],
            &format!("read_committed output partition {p}"),
        );
    }
    committed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64, value: &str) -> Record {
        Record {
            partition,
            offset,
            key: None,
            value: Some(value.as_bytes().to_vec()),
            headers: Vec::new(),
            timestamp: Some(1),
        }
    }

    #[test]
    fn read_uncommitted_may_add_aborted_copies_of_inputs_only() {
        let inputs = [record(0, 0, "a"), record(0, 1, "b"), record(0, 2, "c")];
        let committed = inputs.clone();
        // Aborted copies of a and b before the committed ones: fine.
        let uncommitted = [
            record(0, 0, "a"),
            record(0, 1, "b"),
            record(0, 2, "a"),
            record(0, 3, "b"),
            record(0, 4, "c"),
        ];
        assert_eq!(
            uncommitted_problem(&inputs, &committed, &uncommitted, 1),
            None
        );
        let garbage = [
            record(0, 0, "a"),
            record(0, 1, "x"),
            record(0, 2, "b"),
            record(0, 3, "c"),
        ];
        assert!(uncommitted_problem(&inputs, &committed, &garbage, 1)
            .is_some_and(|p| p.contains("no input's copy")));
        let reordered = [record(0, 0, "b"), record(0, 1, "a"), record(0, 2, "c")];
        assert!(uncommitted_problem(&inputs, &committed, &reordered, 1)
            .is_some_and(|p| p.contains("lacks committed")));
    }
}
