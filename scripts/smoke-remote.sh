#!/usr/bin/env bash
# Smoke test of a server in another process: `evbench serve` on loopback in
# the background, then `evbench run --server` against it at the load of the
# README's measured table, every transport, the TLS ones trusting the
# certificate serve wrote; then `evbench check` on the results, a check
# that every row says where its server was, and a clean stop of serve
# (SIGTERM, exit 0, its --stats-out written). Usage:
#   scripts/smoke-remote.sh [OUT.csv]
# Exits non-zero when anything fails. Forces LC_ALL=C.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
out=${1:-"$(mktemp -d)/smoke-remote.csv"}
dir=$(dirname "$out")
mkdir -p "$dir"
go build -o "$dir/evbench" ./cmd/evbench

"$dir/evbench" serve --listen 127.0.0.1:0 --cert-out "$dir/serve-cert.pem" \
	--stats-out "$dir/serve-stats.json" >"$dir/serve.out" 2>"$dir/serve.err" &
serve=$!
trap 'kill "$serve" 2>/dev/null || true' EXIT

# serve prints its "listening" lines to stdout, then "serving N transports"
# to stderr.
for _ in $(seq 1 300); do
	grep -q 'serving ' "$dir/serve.err" && break
	kill -0 "$serve" 2>/dev/null || { cat "$dir/serve.err" >&2; exit 1; }
	sleep 0.1
done
servers=$(awk '$1 == "listening" { sub("transport=", "", $2); sub("addr=", "", $3); printf "%s%s=%s", sep, $2, $3; sep = "," }' "$dir/serve.out")
[ -n "$servers" ] || { echo "smoke-remote: serve announced no listener" >&2; cat "$dir/serve.err" >&2; exit 1; }
echo "smoke-remote: --server $servers"

start=$(date +%s)
"$dir/evbench" run --server "$servers" --ca "$dir/serve-cert.pem" \
	--clients 50 --rooms 5 --rate 50 --payload 128 --duration 5s --warmup 1s -o "$out"
echo "smoke-remote: run took $(( $(date +%s) - start )) s, wrote $out"
"$dir/evbench" check --reliable-zero-missed "$out"

# Every row names the server it ran against, never "in-process".
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "server") col = i; next }
	{ if (!col || $col == "" || $col == "in-process") { print "smoke-remote: row " NR-1 " has server \"" $col "\"" > "/dev/stderr"; bad = 1 } }
	END { exit bad }' "$out"

kill -TERM "$serve"
code=0
wait "$serve" || code=$?
trap - EXIT
[ "$code" -eq 0 ] || { echo "smoke-remote: serve exited $code after SIGTERM" >&2; cat "$dir/serve.err" >&2; exit 1; }
[ -s "$dir/serve-stats.json" ] || { echo "smoke-remote: serve wrote no --stats-out" >&2; exit 1; }
tail -n 2 "$dir/serve.err"
