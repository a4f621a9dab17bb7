#!/usr/bin/env bash
# Installs the build prerequisites on a fresh Debian machine: a C toolchain, make, zlib, OpenSSL and
# libcurl for librdkafka (built from source by rdkafka-sys with TLS, SASL SCRAM/PLAIN/OAUTHBEARER and
# OIDC's HTTP client), a Java 17 JDK (keytool for the secured test broker's certificates, the
# source launcher for its set-up program) and Maven for the Kafka broker, and the Rust components
# used by the checks. Idempotent: installs only what is missing.
set -euo pipefail

missing=()
command -v cc >/dev/null || missing+=(build-essential)
command -v make >/dev/null || missing+=(make)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v perl >/dev/null || missing+=(perl)
# Applies scripts/librdkafka/*.patch (scripts/librdkafka.sh).
command -v patch >/dev/null || missing+=(patch)
# The OIDC test's token endpoint (scripts/kafka/oidc-token-server.py).
command -v python3 >/dev/null || missing+=(python3)
command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || missing+=(maven)
[ -e /usr/include/zlib.h ] || missing+=(zlib1g-dev)
# System OpenSSL (rdkafka feature `ssl`) and libcurl (feature `curl`, for OIDC token requests).
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
pkg-config --exists libcurl 2>/dev/null || missing+=(libcurl4-openssl-dev)
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
# librdkafka with txform's patches, used by the workspace in place of the crates.io copy.
bash "$(dirname "${BASH_SOURCE[0]}")/librdkafka.sh"
echo "setup: ok ($(cargo --version), $(java -version 2>&1 | head -1))"
