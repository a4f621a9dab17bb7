#!/usr/bin/env bash
# Runs every test: unit tests, integration tests against a real local Kafka broker and a secured one
# (which this script starts, assembling them from Maven Central the first time), the exactly-once chaos harness (CI profile,
# on a broker of its own that it kills and restarts) and a smoke run of the benchmark.
# Usage: scripts/test.sh [cargo test args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# librdkafka with txform's patches (a no-op when already prepared).
bash scripts/librdkafka.sh

scripts/kafka.sh start
export TXFORM_BOOTSTRAP="$(scripts/kafka.sh bootstrap)"
# The secured broker (SASL_SSL, mutual TLS, ACLs) of the `secured` integration tests.
scripts/kafka-secure.sh start

# The integration tests run the txform binary and load the plugin libraries, so build them all first.
cargo build --workspace --locked
cargo test --workspace --locked "$@"

# Kafka's transactions system test, replayed against txform: crashes, rebalances, broker restarts.
cargo run --locked -p txform-chaos -- --profile ci --strict

# The benchmark still works end to end (no timing is asserted).
# A debug build is enough for that (timings mean nothing here), and reusing the binaries built above
# saves CI a whole release build.
cargo run --locked -p txform-bench -- --smoke --txform-dir "${CARGO_TARGET_DIR:-target}/debug"
