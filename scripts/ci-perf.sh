#!/usr/bin/env bash
# CI performance-regression gate: builds evbench at two git revisions, runs
# the same small loopback scenario with each build, the repeats interleaved
# (base, head, base, head, ...) so that drift on the machine hits both alike,
# then lets HEAD's `evbench compare` give the verdict. Usage:
#   scripts/ci-perf.sh BASE HEAD [-- extra evbench run flags]
# e.g. scripts/ci-perf.sh HEAD~1 HEAD
#      scripts/ci-perf.sh origin/main HEAD -- --transports tcp,ws --clients 50
# A flag given after -- replaces the default of the same name (default:
# --transports tcp,udp,ws,quic --clients 20 --rooms 4 --rate 50
# --duration 2s --warmup 500ms). --count, -o, --format and --server are
# the script's own and refused there: the server is always evbench run's
# in-process one on 127.0.0.1.
# Environment:
#   OUT_DIR        where results go (default: a new temp dir), printed at the end
#   REPS           repeats per build (default 8), each an `evbench run --count 1`
#   COMPARE_FLAGS  extra flags for evbench compare, split on whitespace
#                  (e.g. "--threshold ... --alpha 0.05")
# Writes to OUT_DIR: BASE.jsonl and HEAD.jsonl (the rows, JSON Lines),
# BASE.txt and HEAD.txt (Go benchmark format: benchstat BASE.txt HEAD.txt),
# the per-repeat CSVs and logs under runs/, and compare.txt.
# Every row's repeat column is 0 (each invocation is --count 1); compare
# groups rows by scenario and transport, so the REPS rows of a side are its
# repeats.
# Exit status: that of evbench compare (0 no regression, 1 regression or too
# few repeats, 2 bad input); 2 for a usage error here; 3 when HEAD's build
# has no compare command (after writing the results); other non-zero when a
# build or a run fails.
set -euo pipefail
export LC_ALL=C

usage() {
	echo "usage: scripts/ci-perf.sh BASE HEAD [-- extra evbench run flags]" >&2
	exit 2
}
log() { echo "ci-perf: $*" >&2; }

[ "$#" -ge 2 ] || usage
base_rev=$1
head_rev=$2
shift 2
extra=()
if [ "$#" -gt 0 ]; then
	[ "$1" = "--" ] || usage
	shift
	extra=("$@")
fi
for a in ${extra[@]+"${extra[@]}"}; do
	case $a in
	--count | --count=* | -o | -o* | --out | --out=* | --format | --format=* | --server | --server=*)
		log "flag $a is set by the script itself; not allowed after --"
		exit 2
		;;
	esac
done

reps=${REPS:-8}
case $reps in
'' | *[!0-9]* | 0)
	log "REPS must be a positive integer, not '$reps'"
	exit 2
	;;
esac
compare_flags=()
if [ -n "${COMPARE_FLAGS:-}" ]; then
	read -r -a compare_flags <<<"$COMPARE_FLAGS"
fi

# The default scenario; a default is dropped when extra names the same flag.
defaults=(
	--transports tcp,udp,ws,quic
	--clients 20
	--rooms 4
	--rate 50
	--duration 2s
	--warmup 500ms
)
run_flags=()
i=0
while [ "$i" -lt "${#defaults[@]}" ]; do
	name=${defaults[$i]}
	value=${defaults[$((i + 1))]}
	given=0
	for a in ${extra[@]+"${extra[@]}"}; do
		case $a in
		"$name" | "$name"=*) given=1 ;;
		esac
	done
	if [ "$given" -eq 0 ]; then
		run_flags+=("$name" "$value")
	fi
	i=$((i + 2))
done
run_flags+=(${extra[@]+"${extra[@]}"})

repo=$(git rev-parse --show-toplevel)
base_commit=$(git -C "$repo" rev-parse --verify --quiet "${base_rev}^{commit}") ||
	{ log "BASE '$base_rev' is not a commit"; exit 2; }
head_commit=$(git -C "$repo" rev-parse --verify --quiet "${head_rev}^{commit}") ||
	{ log "HEAD '$head_rev' is not a commit"; exit 2; }

out=${OUT_DIR:-$(mktemp -d)}
mkdir -p "$out/runs"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d)
worktrees=()
cleanup() {
	local wt
	for wt in ${worktrees[@]+"${worktrees[@]}"}; do
		git -C "$repo" worktree remove --force "$wt" >/dev/null 2>&1 || true
	done
	git -C "$repo" worktree prune >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start=$(date +%s)
for side in base head; do
	if [ "$side" = base ]; then commit=$base_commit; else commit=$head_commit; fi
	wt="$tmp/wt-$side"
	log "building $side ($commit)"
	git -C "$repo" worktree add --detach --quiet "$wt" "$commit"
	worktrees+=("$wt")
	(cd "$wt" && go build -o "$tmp/evbench-$side" ./cmd/evbench)
done
base_bin="$tmp/evbench-base"
head_bin="$tmp/evbench-head"
log "built both in $(($(date +%s) - start)) s"

# One invocation: run_one SIDE REP; a failed run prints its log and stops
# the script.
run_one() {
	local side=$1 rep=$2 bin
	if [ "$side" = base ]; then bin=$base_bin; else bin=$head_bin; fi
	local csv="$out/runs/$side-$rep.csv" runlog="$out/runs/$side-$rep.log"
	log "run $side, repeat $((rep + 1))/$reps"
	if ! "$bin" run "${run_flags[@]}" --count 1 -o "$csv" >"$runlog" 2>&1; then
		log "evbench run ($side, repeat $((rep + 1))) failed; its output:"
		cat "$runlog" >&2
		exit 1
	fi
}

log "scenario: evbench run ${run_flags[*]} --count 1, $reps times per build, interleaved"
runs_start=$(date +%s)
base_csvs=()
head_csvs=()
for ((rep = 0; rep < reps; rep++)); do
	run_one base "$rep"
	base_csvs+=("$out/runs/base-$rep.csv")
	run_one head "$rep"
	head_csvs+=("$out/runs/head-$rep.csv")
done
log "runs took $(($(date +%s) - runs_start)) s"

# Each side's rows, merged with HEAD's report (so BASE need not know JSON
# Lines or gobench: it only wrote CSV).
"$head_bin" report --format json "${base_csvs[@]}" >"$out/BASE.jsonl"
"$head_bin" report --format json "${head_csvs[@]}" >"$out/HEAD.jsonl"
"$head_bin" report --format gobench "${base_csvs[@]}" >"$out/BASE.txt"
"$head_bin" report --format gobench "${head_csvs[@]}" >"$out/HEAD.txt"
log "wrote $out/BASE.jsonl, $out/HEAD.jsonl, $out/BASE.txt, $out/HEAD.txt"

if ! "$head_bin" help compare >/dev/null 2>&1; then
	log "evbench compare not available in HEAD's build ($head_commit); no verdict"
	log "results in $out (benchstat $out/BASE.txt $out/HEAD.txt)"
	exit 3
fi

rc=0
"$head_bin" compare ${compare_flags[@]+"${compare_flags[@]}"} \
	"$out/BASE.jsonl" "$out/HEAD.jsonl" 2>&1 | tee "$out/compare.txt" || rc=${PIPESTATUS[0]}
case $rc in
0) verdict="PASS: no regression" ;;
1) verdict="FAIL: regression (or too few repeats)" ;;
2) verdict="ERROR: compare refused its input" ;;
*) verdict="ERROR: compare exited $rc" ;;
esac
echo
echo "ci-perf: verdict: $verdict (exit $rc) - base $base_rev ($base_commit), head $head_rev ($head_commit)"
echo "ci-perf: results in $out (benchstat $out/BASE.txt $out/HEAD.txt); total $(($(date +%s) - start)) s"
exit "$rc"
