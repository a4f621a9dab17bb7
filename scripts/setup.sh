#!/usr/bin/env bash
# Installs the build prerequisites on a fresh Debian machine: a C toolchain, make and zlib for
# librdkafka (built from source by rdkafka-sys), Java 17 and Maven for the Kafka broker, and the
# Rust components used by the checks. Idempotent: installs only what is missing.
set -euo pipefail

missing=()
command -v cc >/dev/null || missing+=(build-essential)
command -v make >/dev/null || missing+=(make)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v perl >/dev/null || missing+=(perl)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
[ -e /usr/include/zlib.h ] || missing+=(zlib1g-dev)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found; install Rust (rustup) first" >&2
    exit 1
fi
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done
echo "setup: ok ($(cargo --version), $(java -version 2>&1 | head -1))"
