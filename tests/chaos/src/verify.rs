//! The exactly-once verdict: what a read_committed reader saw against what was seeded.
//!
//! Exactly once with order means: the output of partition p is exactly the input of partition p, in
//! order, each with the key, value and headers it was seeded with. The verdict splits failures into
//! duplicates, missing ids, unexpected records, altered records and order violations, so a summary
//! line says which guarantee broke.

use std::collections::HashMap;

use crate::reader::Out;

/// How many example problems a verdict keeps for the report.
const EXAMPLES: usize = 10;

#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub records_in: usize,
    pub records_out: usize,
    /// Output records beyond the first of their id.
    pub duplicates: usize,
    /// Input ids with no output.
    pub missing: usize,
    /// Output records with no id or an id that was never input.
    pub unexpected: usize,
    /// Among first occurrences: records in another partition than their input, or not after the
    /// previous record of their partition in input order.
    pub order_violations: usize,
    /// Among first occurrences: records whose key, value or headers are not those seeded for
    /// their id.
    pub altered: usize,
    /// For a count: how many keys were counted (see [`crate::counts`]).
    pub keys: Option<usize>,
    pub examples: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.duplicates == 0
            && self.missing == 0
            && self.unexpected == 0
            && self.order_violations == 0
            && self.altered == 0
            && self.records_in == self.records_out
    }

    pub fn describe(&self) -> String {
        format!(
            "out={} duplicates={} missing={} unexpected={} order_violations={} altered={}",
            self.records_out,
            self.duplicates,
            self.missing,
            self.unexpected,
            self.order_violations,
            self.altered
        )
    }

    pub fn example(&mut self, text: impl FnOnce() -> String) {
        if self.examples.len() < EXAMPLES {
            self.examples.push(text());
        }
    }
}

/// Compares `output` with `input`: the ids of each input partition, in offset order.
pub fn verify(input: &[Vec<u64>], output: &[Out]) -> Verdict {
    let mut verdict = Verdict {
        records_in: input.iter().map(Vec::len).sum(),
        records_out: output.len(),
        ..Verdict::default()
    };
    // id -> (input partition, index in that partition)
    let mut position: HashMap<u64, (i32, usize)> = HashMap::with_capacity(verdict.records_in);
    for (partition, ids) in input.iter().enumerate() {
        for (index, id) in ids.iter().enumerate() {
            position.insert(*id, (partition as i32, index));
        }
    }
    let mut sorted: Vec<Out> = output.to_vec();
    sorted.sort_by_key(|o| (o.partition, o.offset));
    let mut count: HashMap<u64, usize> = HashMap::with_capacity(sorted.len());
    let mut last_index: HashMap<i32, usize> = HashMap::new();
    for out in &sorted {
        let Some((id, (partition, index))) =
            out.id.and_then(|id| position.get(&id).map(|p| (id, *p)))
        else {
            verdict.unexpected += 1;
            verdict.example(|| {
                format!(
                    "unexpected record at {}@{}: id {:?}",
                    out.partition, out.offset, out.id
                )
            });
            continue;
        };
        let n = count.entry(id).or_insert(0);
        *n += 1;
        if *n > 1 {
            verdict.duplicates += 1;
            verdict.example(|| format!("duplicate of id {id} at {}@{}", out.partition, out.offset));
            continue;
        }
        if !out.intact {
            verdict.altered += 1;
            verdict.example(|| {
                format!(
                    "id {id} at {}@{}: key, value or headers differ from the seeded ones",
                    out.partition, out.offset
                )
            });
        }
        if partition != out.partition {
            verdict.order_violations += 1;
            verdict.example(|| {
                format!(
                    "id {id} from input partition {partition} found at {}@{}",
                    out.partition, out.offset
                )
            });
            continue;
        }
        if let Some(previous) = last_index.get(&partition) {
            if index <= *previous {
                verdict.order_violations += 1;
                verdict.example(|| {
                    format!(
                        "id {id} (input {partition}#{index}) at {}@{} comes after input {partition}#{previous}",
                        out.partition, out.offset
                    )
                });
            }
        }
        last_index.insert(partition, index);
    }
    for (partition, ids) in input.iter().enumerate() {
        for (index, id) in ids.iter().enumerate() {
            if !count.contains_key(id) {
                verdict.missing += 1;
                verdict.example(|| format!("id {id} (input {partition}#{index}) missing"));
            }
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(partition: i32, offset: i64, id: u64) -> Out {
        Out {
            partition,
            offset,
            id: Some(id),
            intact: true,
            key: String::new(),
            value: String::new(),
        }
    }

    /// Duplicates, missing, unexpected, order violations, altered.
    fn counts(v: &Verdict) -> (usize, usize, usize, usize, usize) {
        (
            v.duplicates,
            v.missing,
            v.unexpected,
            v.order_violations,
            v.altered,
        )
    }

    #[test]
    fn exact_copy_passes() {
        let input = vec![vec![0, 2], vec![1, 3]];
        let output = [out(1, 5, 3), out(0, 0, 0), out(1, 2, 1), out(0, 9, 2)];
        let v = verify(&input, &output);
        assert!(v.ok(), "{v:?}");
    }

    #[test]
    fn each_failure_is_counted_once() {
        let input = vec![vec![0, 2, 4], vec![1, 3]];
        let output = [
            out(0, 0, 2),
            out(0, 1, 0), // order
            out(0, 2, 2), // duplicate
            out(0, 3, 1), // wrong partition
            out(1, 0, 3),
            Out {
                partition: 1,
                offset: 1,
                id: None,
                intact: false,
                key: String::new(),
                value: String::new(),
            }, // unexpected
        ];
        let v = verify(&input, &output);
        assert_eq!(counts(&v), (1, 1, 1, 2, 0), "{v:?}");
        assert!(!v.ok());
    }

    #[test]
    fn a_record_with_other_content_is_altered_even_when_its_id_is_right() {
        let input = vec![vec![0, 2], vec![1]];
        let altered = Out {
            intact: false,
            ..out(0, 1, 2)
        };
        let v = verify(&input, &[out(0, 0, 0), altered, out(1, 0, 1)]);
        assert_eq!(counts(&v), (0, 0, 0, 0, 1), "{v:?}");
        assert!(!v.ok());
        assert!(v.describe().ends_with("altered=1"), "{}", v.describe());
    }
}
