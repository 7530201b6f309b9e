#!/usr/bin/env bash
# Runs every fuzz target of the module (each func FuzzXxx(*testing.F) in a
# _test.go file), one after another, for a bounded time in total. Usage:
#   scripts/fuzz.sh
# Settings, from the environment:
#   FUZZ_BUDGET    seconds the whole script may take, builds included,
#                  split evenly across the targets (default 240): each
#                  target gets an even share of what is left when it starts,
#                  so time spent building is taken from the fuzzing
#   FUZZ_MIN       the least seconds any one target gets (default 5)
#   FUZZ_PARALLEL  fuzzing processes per target (default 2)
#   FUZZ_MINIMIZE  -fuzzminimizetime: how long each input that finds new
#                  coverage, or fails, is minimized (default 1000x, a
#                  thousand runs: the default of 60s would stall a slow
#                  target for most of its time)
#   FUZZ_MATCH     only targets whose name matches this extended regular
#                  expression (default: all)
# It prints one line per target (package, target, time, result) and exits 1
# when any target fails: a crasher, a failing seed or a build error. A
# crasher is written under the package's testdata/fuzz/<target>/, as the
# line says; committed there it runs as a regular test with `go test`.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

budget=${FUZZ_BUDGET:-240}
least=${FUZZ_MIN:-5}
parallel=${FUZZ_PARALLEL:-2}
match=${FUZZ_MATCH:-.}
minimize=${FUZZ_MINIMIZE:-1000x}
for v in budget least parallel; do
	if ! [[ ${!v} =~ ^[0-9]+$ ]] || ((${!v} == 0)); then
		echo "fuzz: ${v} must be a positive whole number, got '${!v}'" >&2
		exit 2
	fi
done

# Candidate packages: those with a test file declaring a fuzz target. go
# test -list then confirms each target, in one build of those packages.
candidates=()
while read -r dir pkg files; do
	for f in $files; do
		if grep -q '^func Fuzz[A-Z0-9_a-z]*(' "$dir/$f"; then
			candidates+=("$pkg")
			break
		fi
	done
done < <(go list -f '{{.Dir}} {{.ImportPath}} {{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}' ./...)
if ((${#candidates[@]} == 0)); then
	echo "fuzz: no fuzz targets in the module"
	exit 0
fi

# go test -list prints a package's matching names, then "ok <pkg> <time>".
pkgs=() names=() dirs=()
listing=$(go test -list '^Fuzz' "${candidates[@]}")
pending=()
while read -r first second _; do
	case $first in
	Fuzz*) pending+=("$first") ;;
	ok)
		dir=$(go list -f '{{.Dir}}' "$second")
		for name in ${pending[@]+"${pending[@]}"}; do
			if [[ $name =~ $match ]]; then
				pkgs+=("$second") names+=("$name") dirs+=("$dir")
			fi
		done
		pending=()
		;;
	esac
done <<<"$listing"
n=${#names[@]}
if ((n == 0)); then
	echo "fuzz: no fuzz targets match '${match}'"
	exit 0
fi

# share is an even share of the budget left for the targets not yet run,
# and at least $least seconds.
share() {
	local s=$(((budget - SECONDS) / $1))
	((s >= least)) || s=$least
	echo "$s"
}
echo "fuzz: ${n} targets, about $(share "$n")s each (budget ${budget}s), -parallel ${parallel}, -fuzzminimizetime ${minimize}"

logdir=$(mktemp -d)
trap 'rm -rf "$logdir"' EXIT
failed=0
start=$SECONDS
for i in "${!names[@]}"; do
	pkg=${pkgs[$i]} name=${names[$i]} dir=${dirs[$i]}
	log="$logdir/$i.log"
	per=$(share $((n - i)))
	t0=$SECONDS
	if go test -run '^$' -fuzz "^${name}\$" -fuzztime "${per}s" \
		-fuzzminimizetime "$minimize" -parallel "$parallel" "$pkg" >"$log" 2>&1; then
		result=ok
	else
		result=FAIL
		failed=1
	fi
	execs=$(grep -o 'execs: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2 || true)
	echo "fuzz: ${pkg} ${name} $((SECONDS - t0))s (fuzzing ${per}s) ${result}${execs:+ (${execs} execs)}"
	if [[ $result == FAIL ]]; then
		sed 's/^/    /' "$log" | tail -n 40
		written=$(sed -n 's/.*Failing input written to \(testdata\/fuzz\/[^ ]*\).*/\1/p' "$log" | head -n 1)
		if [[ -n $written ]]; then
			echo "fuzz: crasher written to ${dir#"$PWD"/}/${written}; commit it to keep it as a regular test"
		fi
	fi
done
echo "fuzz: ${n} targets in $((SECONDS - start))s ($((SECONDS))s with discovery): $( ((failed)) && echo FAIL || echo ok)"
exit "$failed"
