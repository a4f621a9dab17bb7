//! The pipeline file every instance of a run shares.

use std::path::Path;

use anyhow::Result;
use toml::Value;
use txform_tests::{passthrough_config, table, unique_name, PipelineConfig, Plugin, Topic};

use crate::catch;
use crate::profile::{Mode, Profile};

/// The pipeline of every instance: passthrough (or, counting, plugins/count) keeping the partition,
/// then one fault stage that returns errors and one that panics, each in a share of batches. The
/// error stage also holds its calls of the process `pause_file` names, so the harness can SIGKILL an
/// instance inside an open transaction (see `Fleet::stop`). Being after the count, the faults abort
/// transactions whose batch already changed the counts.
///
/// A count keeps its state under `state_dir`, in one sub-directory per transactional id, so each
/// instance has its own store (a restarted instance reopens it; a partition that moves restores
/// from the changelog).
pub fn pipeline(
    profile: &Profile,
    input: &Topic,
    output: &Topic,
    pause_file: &Path,
    state_dir: &Path,
) -> Result<PipelineConfig> {
    let fault = |action: &str, probability: f64, seed: i64| {
        table(&[
            ("action", Value::String(action.to_string())),
            ("batch_probability", Value::Float(probability)),
            ("seed", Value::Integer(seed)),
            ("keep_partition", Value::Boolean(true)),
        ])
    };
    let base = unique_name("chaos");
    catch("write the pipeline", || {
        let mut pipeline = PipelineConfig::new(
            vec![input.name.clone()],
            output.name.clone(),
            format!("{base}-group"),
            format!("{base}-txn"),
        )
        .batch(profile.max_records, profile.max_wait_ms)
        .retries(profile.max_retries, 20, 500)
        // Short time-outs, like Kafka's group-mode transactions test, so faults are noticed fast.
        .consumer_property("session.timeout.ms", 6_000)
        .consumer_property("heartbeat.interval.ms", 1_000)
        .producer_property("transaction.timeout.ms", 10_000)
        // Fetch a few producer batches per partition at a time, so an instance owning several
        // partitions alternates between them (see seed.rs).
        .consumer_property("max.partition.fetch.bytes", 16_384);
        pipeline = match profile.mode {
            Mode::Copy => pipeline.transform("copy", Plugin::passthrough(), passthrough_config()),
            Mode::Count { .. } => {
                pipeline.state_dir = Some(state_dir.to_path_buf());
                pipeline.transform(
                    "count",
                    Plugin::count(),
                    table(&[("keep_partition", Value::Boolean(true))]),
                )
            }
        };
        pipeline
            .transform("fault-error", Plugin::fault(), {
                let mut config = fault("error", profile.error_probability, 1);
                config.insert(
                    "pause_file".to_string(),
                    Value::String(pause_file.display().to_string()),
                );
                config
            })
            .transform(
                "fault-panic",
                Plugin::fault(),
                fault("panic", profile.panic_probability, 2),
            )
    })
}
