//! Secured clusters (`scripts/kafka-secure.sh`): SASL_SSL with SCRAM and mutual TLS, as principals
//! that hold exactly the ACLs a pipeline needs (or one fewer), credentials kept out of the file, and
//! no secret in anything txform writes.

use std::time::Duration;

use toml::{Table, Value};
use txform_tests::secure::{self, SecureEnv, APP_PASSWORD, CLIENT_KEY_PASSWORD};
use txform_tests::{
    assert_same_content, by_partition, committed_offsets, passthrough_config, produce,
    read_topic, standard_inputs, wait_for_committed, Isolation, Plugin, Txform,
};

use crate::{EXIT_TIMEOUT, PROCESS_TIMEOUT};

const N: u64 = 2000;
const PARTITIONS: i32 = 2;

/// Copies [`N`] records as the env's principal with `security` as `[kafka.common]` and checks the
/// output and the group's offsets exactly; returns the stopped instance (for its log).
fn copies_exactly_once(mut env: SecureEnv, security: Table) -> (SecureEnv, Txform) {
    let input = env.create_topic("in", PARTITIONS);
    let output = env.create_topic("out", PARTITIONS);
    let produced = produce(&input, &standard_inputs(N, PARTITIONS));
    let mut pipeline =
        env.pipeline(&input, &output)
            .transform("copy", Plugin::passthrough(), passthrough_config());
    pipeline.common.extend(security);
    let mut txform = env.env.spawn(&pipeline, "0");
    wait_for_committed(&output, N as usize, PROCESS_TIMEOUT);
    txform.terminate();
    txform.expect_exit_code(0, EXIT_TIMEOUT);

    let committed = read_topic(&output, Isolation::ReadCommitted);
    let expected = by_partition(&produced, PARTITIONS);
    let actual = by_partition(&committed, PARTITIONS);
    for p in 0..PARTITIONS as usize {
        assert_same_content(&expected[p], &actual[p], &format!("output partition {p}"));
    }
    let ends: Vec<Option<i64>> = expected.iter().map(|p| Some(p.len() as i64)).collect();
    assert_eq!(committed_offsets(&pipeline.group_id, &input), ends);
    (env, txform)
}

#[test]
fn scram_sha_512_least_privilege_copies_exactly_once() {
    let env = SecureEnv::new("sec-scram", "app");
    copies_exactly_once(env, secure::scram("app", APP_PASSWORD));
}

#[test]
fn mutual_tls_least_privilege_copies_exactly_once() {
    let env = SecureEnv::new("sec-mtls", "mtls-app");
    copies_exactly_once(env, secure::mutual_tls());
}
