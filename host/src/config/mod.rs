//! The pipeline file (`pipeline.toml`): reading it, validating it, and the [`Pipeline`] it becomes.
//!
//! This module owns the file format. Nothing else in the host sees TOML: the Kafka clients get
//! property strings, plugins get their `config` table as JSON, and every problem with the file is
//! reported here, all at once, as `file:line: message`, before anything connects to a broker or
//! loads a plugin.
//!
//! Layout: `schema` is the file as serde reads it (strict: unknown keys are errors); `validate`
//! turns that into a [`Pipeline`] while collecting semantic problems, with `properties` (the
//! librdkafka tables, each property checked by librdkafka itself in `librdkafka`: no client, no
//! broker), `topic_name` (Kafka's rule for topic names, public because plugin-chosen topics are
//! checked with it at run time) and `plugin_config` (a transform's `config` as JSON); `error`
//! renders the problems; `types` holds the public, validated types.

mod error;
mod features;
mod librdkafka;
mod plugin_config;
mod properties;
mod schema;
mod secrets;
mod topic_name;
mod types;
mod validate;

#[cfg(test)]
pub(crate) mod tests;

use std::path::Path;

pub use error::ConfigError;
pub use topic_name::{topic_name_problem, MAX_TOPIC_NAME_LENGTH};
pub use types::{
    Batch, ConfiguredTopic, ErrorPolicy, FailureAction, Guarantee, KafkaProperties, LogSettings,
    MetricsSettings, ParseGuaranteeError, Pipeline, Secrets, Sink, Source, StateSettings,
    TopicLines, Transaction, TransformSpec,
};

use error::Problems;
use schema::RawPipeline;

/// Reads and validates the pipeline file at `path`. Relative plugin paths are resolved against the
/// file's directory, so the pipeline means the same thing whatever the working directory is.
pub fn load(path: &Path) -> Result<Pipeline, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, &e))?;
    let base_dir = path.parent().unwrap_or_else(|| Path::new(""));
    parse(&text, path, base_dir)
}

/// Validates pipeline text. `origin` names the text in messages (and becomes
/// [`Pipeline::origin`]); relative plugin paths are resolved against `base_dir`.
///
/// A TOML syntax or type error is reported alone (serde stops there); once the file has the right
/// shape, every semantic problem is reported.
pub fn parse(text: &str, origin: &Path, base_dir: &Path) -> Result<Pipeline, ConfigError> {
    let mut problems = Problems::new(origin, text);
    let raw = match toml::from_str::<RawPipeline>(text) {
        Ok(raw) => raw,
        Err(error) => {
            // The span is missing only for errors about the document as a whole: blame line 1.
            let span = error.span().unwrap_or(0..0);
            problems.at(span, one_line(error.message()));
            return Err(problems.into_error());
        }
    };
    match validate::pipeline(raw, origin, base_dir, &mut problems) {
        Some(pipeline) if problems.is_empty() => Ok(pipeline),
        // No pipeline means a required table is missing, which is a recorded problem.
        _ => Err(problems.into_error()),
    }
}

/// toml's message without line breaks (syntax errors come as "invalid array\nexpected `]`"), so
/// that each problem stays one line of output.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}
