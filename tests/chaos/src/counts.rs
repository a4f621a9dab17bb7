//! The exactly-once verdict of a running count per key (plugins/count), as a read_committed reader
//! saw it.
//!
//! A key lives in one input partition, and its count goes to the same output partition, so in
//! output order its counts must be exactly 1, 2, ..., n with n its number of inputs. A count seen
//! again (or above n) means a replayed batch was counted twice: the state change of an aborted
//! transaction survived. A count skipped means an update was lost. The verdict reuses the copy's
//! [`Verdict`] fields with these meanings, so the summary line reads the same.

use std::collections::HashMap;

use crate::reader::Out;
use crate::seed::key_of;
use crate::verify::Verdict;

/// Compares the counts in `output` with `input` (the ids of each partition, keyed by
/// [`key_of`] among `keys` keys).
pub fn verify_counts(input: &[Vec<u64>], keys: u64, output: &[Out]) -> Verdict {
    // Key -> (its input partition, its number of inputs).
    let mut expected: HashMap<String, (i32, u64)> = HashMap::new();
    for (partition, ids) in input.iter().enumerate() {
        for id in ids {
            expected
                .entry(key_of(*id, keys))
                .or_insert((partition as i32, 0))
                .1 += 1;
        }
    }
    let mut verdict = Verdict {
        records_in: input.iter().map(Vec::len).sum(),
        records_out: output.len(),
        keys: Some(expected.len()),
        ..Verdict::default()
    };
    let mut sorted: Vec<&Out> = output.iter().collect();
    sorted.sort_by_key(|o| (o.partition, o.offset));
    let mut last: HashMap<&str, u64> = HashMap::new();
    for out in sorted {
        let at = format!("{}@{}", out.partition, out.offset);
        let count = out.value.parse::<u64>().ok().filter(|c| *c > 0);
        let (Some(&(partition, n)), Some(count)) = (expected.get(&out.key), count) else {
            verdict.unexpected += 1;
            verdict.example(|| {
                format!(
                    "unexpected record at {at}: key {:?} value {:?}",
                    out.key, out.value
                )
            });
            continue;
        };
        let key = out.key.as_str();
        if partition != out.partition {
            verdict.order_violations += 1;
            verdict.example(|| {
                format!("key {key} of input partition {partition}: count {count} at {at}")
            });
            continue;
        }
        let previous = last.get(key).copied().unwrap_or(0);
        if count <= previous || count > n {
            verdict.duplicates += 1;
            verdict.example(|| {
                format!("key {key}: count {count} at {at} after {previous} of {n} (counted twice)")
            });
            continue;
        }
        if count > previous + 1 {
            verdict.missing += (count - previous - 1) as usize;
            verdict.example(|| {
                format!("key {key}: count {count} at {at} after {previous} (update lost)")
            });
        }
        last.insert(key, count);
    }
    let mut short: Vec<(&String, u64, u64)> = expected
        .iter()
        .map(|(key, (_, n))| (key, *n, last.get(key.as_str()).copied().unwrap_or(0)))
        .filter(|(_, n, reached)| reached < n)
        .collect();
    short.sort();
    for (key, n, reached) in short {
        verdict.missing += (n - reached) as usize;
        verdict.example(|| format!("key {key}: counted to {reached} of {n}"));
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys `c0`, `c1` over 2 partitions: ids 0, 2, 4 (key c0) in partition 0, ids 1, 3 in 1.
    fn input() -> Vec<Vec<u64>> {
        vec![vec![0, 2, 4], vec![1, 3]]
    }

    fn out(partition: i32, offset: i64, key: &str, count: &str) -> Out {
        Out {
            partition,
            offset,
            id: None,
            intact: false,
            key: key.to_string(),
            value: count.to_string(),
        }
    }

    fn counts(v: &Verdict) -> (usize, usize, usize, usize) {
        (v.duplicates, v.missing, v.unexpected, v.order_violations)
    }

    #[test]
    fn exact_counts_pass_in_any_reading_order() {
        let output = [
            out(1, 7, "c1", "2"),
            out(0, 0, "c0", "1"),
            out(1, 3, "c1", "1"),
            out(0, 1, "c0", "2"),
            out(0, 5, "c0", "3"),
        ];
        let v = verify_counts(&input(), 2, &output);
        assert!(v.ok(), "{v:?}");
        assert_eq!(v.keys, Some(2));
        assert_eq!(counts(&v), (0, 0, 0, 0));
    }

    #[test]
    fn a_count_replayed_skipped_misplaced_or_foreign_fails() {
        let output = [
            out(0, 0, "c0", "1"),
            out(0, 1, "c0", "1"), // counted twice
            out(0, 2, "c0", "3"), // 2 lost
            out(1, 0, "c1", "1"),
            out(0, 3, "c1", "2"), // wrong partition, so c1 stops at 1 of 2
            out(1, 1, "x", "1"),  // unexpected key
            out(1, 2, "c1", "0"), // not a count
        ];
        let v = verify_counts(&input(), 2, &output);
        assert_eq!(counts(&v), (1, 2, 2, 1), "{v:?}");
        assert!(!v.ok());
        assert!(
            v.examples.iter().any(|e| e.contains("counted twice")),
            "{:?}",
            v.examples
        );
        assert!(
            v.examples.iter().any(|e| e.contains("counted to 1 of 2")),
            "{:?}",
            v.examples
        );
    }

    #[test]
    fn a_count_beyond_the_inputs_is_counted_twice_and_a_short_key_is_missing() {
        let output = [
            out(0, 0, "c0", "1"),
            out(0, 1, "c0", "2"),
            out(0, 2, "c0", "3"),
            out(0, 3, "c0", "4"), // only 3 inputs
        ];
        let v = verify_counts(&input(), 2, &output);
        assert_eq!(counts(&v), (1, 2, 0, 0), "{v:?}");
    }
}
