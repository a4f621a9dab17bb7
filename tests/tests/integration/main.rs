//! Integration tests of the `txform` binary against the real Kafka broker (`scripts/kafka.sh start`;
//! `TXFORM_BOOTSTRAP` names it). Build the workspace first (`cargo build --workspace`): the tests run
//! `target/debug/txform` and load the plugin libraries from `target/debug`. `scripts/test.sh` does both.
//!
//! Every test uses its own topics, group and transactional ids (see `txform_tests::TestEnv`), so tests
//! run in parallel. Assertions are exact: counts, contents, order per partition, exit codes and
//! messages. Time bounds only guard against hangs, except where a bound is the protocol property under
//! test (a restarted instance fences its predecessor instead of waiting for its transaction to time out).

mod aborted_output;
mod at_least_once;
mod bad_config;
mod chain;
mod dead_letter_refused;
mod deploy_manifest;
mod error_policies;
mod exit_codes;
mod fencing;
mod forward;
mod happy_path;
mod harness;
mod inspect;
mod kill_restart;
mod metrics;
mod missing_topics;
mod offline_test;
mod out_of_range;
mod plugin_failure;
mod prefetch;
mod rebalance;
mod reject;
mod retry_time;
mod round_trip;
mod scaffold;
mod secured;
mod state;
mod stop;
mod survival;
mod topology;
mod transient;
mod zombie;

use std::time::Duration;

/// Upper bound for `txform` to start and commit what a test produced (a hang guard, not a measure).
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(120);
/// Upper bound for `txform` to stop after SIGTERM or to give up after its retries.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The end of a run whose inputs are all produced: waits until the group has committed the whole of
/// `input`, then stops `txform` with SIGTERM, which must exit 0.
pub fn stop_when_consumed(
    txform: &mut txform_tests::Txform,
    pipeline: &txform_tests::PipelineConfig,
    input: &txform_tests::Topic,
) {
    txform_tests::wait_for_group_at_end(&pipeline.group_id, input, PROCESS_TIMEOUT);
    txform.terminate();
    txform.expect_exit_code(0, EXIT_TIMEOUT);
}
