#!/usr/bin/env bash
# Prepares vendor/rdkafka-sys: the rdkafka-sys crate (which builds librdkafka from its bundled source)
# as published on crates.io, with the patches in scripts/librdkafka/ applied. The workspace's
# Cargo.toml uses it in place of the registry's copy ([patch.crates-io]), so run this (setup.sh and
# test.sh do) before building. Each patch file says what it fixes and how it was measured.
# Idempotent: does nothing when vendor/rdkafka-sys already holds this version with these patches.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The version Cargo.lock pins; the patches are made against its bundled librdkafka.
VERSION="4.10.0+2.12.1"
VENDOR=vendor/rdkafka-sys
PATCHES=(scripts/librdkafka/*.patch)

stamp="rdkafka-sys $VERSION; $(cat "${PATCHES[@]}" | sha256sum | cut -d' ' -f1)"
if [ -f "$VENDOR/.txform-patched" ] && [ "$(cat "$VENDOR/.txform-patched")" = "$stamp" ]; then
    exit 0
fi

echo "librdkafka: preparing $VENDOR (rdkafka-sys $VERSION with ${#PATCHES[@]} patch(es))"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A throwaway crate that depends on exactly this version makes Cargo download and verify it.
mkdir -p "$work/fetch/src"
touch "$work/fetch/src/lib.rs"
cat >"$work/fetch/Cargo.toml" <<EOF
[package]
name = "txform-fetch-rdkafka-sys"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
rdkafka-sys = "=${VERSION%%+*}"
EOF
cargo fetch --quiet --manifest-path "$work/fetch/Cargo.toml"
source_dir="$(
    cargo metadata --format-version 1 --manifest-path "$work/fetch/Cargo.toml" |
        python3 -c '
import json, os, sys
version = sys.argv[1]
packages = json.load(sys.stdin)["packages"]
found = [p for p in packages if p["name"] == "rdkafka-sys" and p["version"] == version]
if not found:
    sys.exit("librdkafka: Cargo did not resolve rdkafka-sys " + version)
print(os.path.dirname(found[0]["manifest_path"]))
' "$VERSION"
)"

mkdir -p "$(dirname "$VENDOR")"
rm -rf "$VENDOR.tmp"
cp -R "$source_dir" "$VENDOR.tmp"
for patch_file in "${PATCHES[@]}"; do
    if ! patch --quiet --forward --batch -p1 -d "$VENDOR.tmp" <"$patch_file"; then
        echo "librdkafka: $patch_file does not apply to rdkafka-sys $VERSION" >&2
        exit 1
    fi
done
echo "$stamp" >"$VENDOR.tmp/.txform-patched"
rm -rf "$VENDOR"
mv "$VENDOR.tmp" "$VENDOR"
# rdkafka-sys's build script copies librdkafka into its OUT_DIR only when that has no copy yet, so
# an earlier build's copy would be compiled again, without the patches that changed since: remove
# those copies (Cargo reruns the build script anyway, the package's files having changed).
rm -rf "${CARGO_TARGET_DIR:-target}"/*/build/rdkafka-sys-*/out
echo "librdkafka: $VENDOR ready"
