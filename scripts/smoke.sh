#!/usr/bin/env bash
# Smoke test of the main job: all seven transports on loopback at the load
# issue #3 names, then the results file's invariants. Usage:
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
"$(dirname "$out")/evbench" run --transports tcp,tcp+tls,udp,ws,wss,quic,quic-dgram \
	--clients 50 --rooms 5 --rate 50 --payload 128 --duration 5s --warmup 1s -o "$out"
echo "smoke: run took $(( $(date +%s) - start )) s, wrote $out"
check=../shared/checks/csv-invariants.py
if [ -f "$check" ] && command -v python3 >/dev/null; then
	python3 "$check" "$out" --reliable-zero-missed
else
	# Without the shared checks, the same invariants in awk: field counts,
	# delivered + missed = expected > 0, non-decreasing positive percentiles.
	awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; n = NF; next }
	{
		t = $col["transport"]
		if (NF != n) { print t ": field count differs from the header"; bad = 1; next }
		if ($col["expected"] <= 0) { print t ": expected is " $col["expected"]; bad = 1 }
		if ($col["delivered"] + $col["missed"] != $col["expected"]) { print t ": delivered + missed != expected"; bad = 1 }
		split("lat_p50_us lat_p90_us lat_p99_us lat_p999_us lat_max_us", p, " ")
		for (i = 1; i <= 5; i++) { v = $col[p[i]] + 0; if (v <= 0 || (i > 1 && v < prev)) { print t ": percentiles not positive and non-decreasing"; bad = 1; break } prev = v }
		if (t ~ /^(tcp|tcp\+tls|ws|wss|quic)$/ && $col["missed"] != 0) { print t ": a reliable transport missed " $col["missed"]; bad = 1 }
		rows++
	}
	END { if (!bad) print rows " rows hold"; exit bad }' "$out"
fi
