#!/usr/bin/env bash
# Smoke test of the main job: every registered transport (the default of
# `evbench run`), one after another on loopback, at the load of the README's
# measured table, then `evbench check` on the results file. Usage:
#   scripts/smoke.sh [OUT.csv]
# Exits non-zero when the run fails or a row breaks an invariant. Forces
# LC_ALL=C so that nothing downstream parses numbers with a locale.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
out=${1:-"$(mktemp -d)/smoke.csv"}
mkdir -p "$(dirname "$out")"
go build -o "$(dirname "$out")/evbench" ./cmd/evbench
start=$(date +%s)
"$(dirname "$out")/evbench" run \
	--clients 50 --rooms 5 --rate 50 --payload 128 --duration 5s --warmup 1s -o "$out"
echo "smoke: run took $(( $(date +%s) - start )) s, wrote $out"
"$(dirname "$out")/evbench" check --reliable-zero-missed "$out"
