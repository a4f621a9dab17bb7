//! `txform test`: runs a transform chain offline, through the host's own chain code, on records from a
//! JSONL file, and prints what it produced in the same format; with `--expect`, compares.

pub mod jsonl;

use std::path::Path;

use serde_json::{json, Value};
use txform_plugin_api::{with_views, Record, TestRecord};

use crate::config::TransformSpec;
use crate::plugin::Chain;
use crate::state::MemoryState;

/// What to run: a pipeline file's chain, or one plugin library with a JSON configuration.
pub enum Target<'a> {
    Pipeline(&'a Path),
    Plugin { path: &'a Path, config_json: String },
}

/// Loads the chain of `target`. A pipeline file is fully validated first, as `txform validate` does.
pub fn load_chain(target: &Target<'_>) -> anyhow::Result<Chain> {
    Ok(match target {
        Target::Pipeline(path) => {
            let pipeline = crate::config::load(path)?;
            Chain::load(&pipeline.transforms, |line| pipeline.location(line))?
        }
        Target::Plugin { path, config_json } => {
            let spec = TransformSpec {
                name: path
                    .file_stem()
                    .map(|s| s.to_string_lossy().trim_start_matches("lib").to_string())
                    .unwrap_or_else(|| "plugin".to_string()),
                plugin: path.to_path_buf(),
                config_json: config_json.clone(),
                line: 0,
            };
            Chain::load(&[spec], |_| "--config".to_string())?
        }
    })
}

/// Runs the records through `chain` as one batch: the lines of its outputs and rejections, or the
/// one line of the call's error (then nothing of the batch is output, as in a real run). State
/// stores start empty and live for the run.
pub fn run(chain: &mut Chain, records: &[TestRecord]) -> Vec<Value> {
    let mut state = MemoryState::default();
    // A forwarded input is shown as the record it produces, so the lines are what a run produces.
    let run = |views: &[Record<'_>]| {
        chain.run_with(views, &mut state).map(|output| {
            let lines: Vec<Value> = output
                .records
                .iter()
                .map(|out| jsonl::output_line(&out.to_record(views)))
                .collect();
            (lines, output)
        })
    };
    match with_views(records, run) {
        Ok((mut lines, output)) => {
            lines.extend(output.rejected.iter().map(|r| {
                json!({"rejected": {"input": r.input, "transform": r.stage, "reason": r.reason}})
            }));
            lines
        }
        Err(failure) => vec![json!({"error": {
            "transform": failure.stage,
            "message": failure.error.message.as_str(),
            "panicked": failure.error.panicked,
        }})],
    }
}

/// A readable diff of `actual` against the expected lines, or `None` when they are equal.
pub fn diff(expected: &[Value], actual: &[Value]) -> Option<String> {
    let mut report = String::new();
    for i in 0..expected.len().max(actual.len()) {
        match (expected.get(i), actual.get(i)) {
            (Some(e), Some(a)) if e == a => {}
            (Some(e), Some(a)) => report.push_str(&format!("line {}:\n- {e}\n+ {a}\n", i + 1)),
            (Some(e), None) => report.push_str(&format!("line {}: missing\n- {e}\n", i + 1)),
            (None, Some(a)) => report.push_str(&format!("line {}: unexpected\n+ {a}\n", i + 1)),
            (None, None) => {}
        }
    }
    (!report.is_empty()).then_some(report)
}

/// The lines of an expectation file, each parsed as JSON (blank lines skipped).
pub fn parse_expected(text: &str, origin: &str) -> Result<Vec<Value>, jsonl::LineError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| jsonl::LineError {
                origin: origin.to_string(),
                line: i + 1,
                message: format!("not JSON: {e}"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_each_differing_line() {
        let expected = [json!({"a": 1}), json!({"b": 2})];
        assert_eq!(diff(&expected, &expected), None);
        assert_eq!(
            diff(
                &expected,
                &[json!({"a": 1}), json!({"b": 3}), json!({"c": 4})]
            )
            .unwrap(),
            "line 2:\n- {\"b\":2}\n+ {\"b\":3}\nline 3: unexpected\n+ {\"c\":4}\n"
        );
    }
}
