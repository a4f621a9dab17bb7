#!/usr/bin/env bash
# Validates deploy/kubernetes/*.yaml against the Kubernetes API schemas (strict: unknown fields are
# errors), with kubernetes-validate from PyPI, which ships the schemas (no download at run time).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${TXFORM_VALIDATE_VENV:-$root/target/kubernetes-validate}"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'kubernetes-validate==1.37.0'
fi
status=0
for manifest in "$root"/deploy/kubernetes/*.yaml; do
    output="$("$venv/bin/kubernetes-validate" --strict "$manifest" 2>&1)" || status=1
    echo "$output"
    if grep -q '^ERROR' <<<"$output"; then status=1; fi
done
exit "$status"
