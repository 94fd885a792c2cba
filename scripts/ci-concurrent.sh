#!/usr/bin/env bash
# ci-concurrent.sh: run the whole test suite twice at once on this machine,
# as CI does on a busy runner with another build beside it, and report the
# result and duration of each copy.
#
#   scripts/ci-concurrent.sh            one round: two copies side by side
#   ROUNDS=5 scripts/ci-concurrent.sh   five rounds, one after the other
#
# Each copy is `go test -count=1 ./...` of the service's module and of
# the modules beside it (tools/bffload, deploy). The copies share Postgres and Redis: every test creates its
# own Postgres schema and Redis key prefix (internal/testenv), and tests that
# stop Redis start a private redis-server on a free port, so the copies
# never see each other's data. Logs go to $OUT (default bin/ci-concurrent).
# The exit status is 0 when every copy of every round passed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-1}
OUT=${OUT:-bin/ci-concurrent}
GO=${GO:-go}
mkdir -p "$OUT"
bash scripts/services.sh >/dev/null || { echo "ci-concurrent: Postgres/Redis not available"; exit 2; }

suite() { # suite LOG: the whole suite, exit status of the first failure
	local log=$1 rc=0
	{
		$GO test -count=1 -timeout 30m ./... || rc=$?
		for m in $(git ls-files '*/go.mod' | xargs -n1 dirname); do
			(cd "$m" && $GO test -count=1 ./...) || rc=1
		done
		exit $rc
	} >"$log" 2>&1
}

failed=0
for round in $(seq 1 "$ROUNDS"); do
	start=$(date +%s)
	pids=()
	for copy in a b; do
		suite "$OUT/round$round-$copy.log" &
		pids+=($!)
	done
	results=()
	for i in 0 1; do
		if wait "${pids[$i]}"; then results+=(pass); else results+=(FAIL); failed=1; fi
	done
	secs=$(( $(date +%s) - start ))
	echo "round $round: copy a ${results[0]}, copy b ${results[1]} ($(date -u +%H:%M:%S) UTC, ${secs}s)"
	for i in 0 1; do
		copy=$([ "$i" = 0 ] && echo a || echo b)
		if [ "${results[$i]}" = FAIL ]; then
			grep -E '^(--- FAIL|FAIL|panic:)|_test\.go:[0-9]+:' "$OUT/round$round-$copy.log" | head -20 | sed "s/^/    $copy: /"
		fi
	done
done
exit $failed
