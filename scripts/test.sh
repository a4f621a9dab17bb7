#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests against a real local Kafka broker, which this
# script starts (and assembles from Maven Central the first time). Usage: scripts/test.sh [cargo test args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/kafka.sh start
export TXFORM_BOOTSTRAP="$(scripts/kafka.sh bootstrap)"

# The integration tests run the txform binary and load the plugin libraries, so build them all first.
cargo build --workspace --locked
cargo test --workspace --locked "$@"
