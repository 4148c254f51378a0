#!/usr/bin/env bash
# Run every test against one build folder and print one closing line
# "N passed, N failed". Unit tests are the cmocka binaries in BUILD/tests/;
# integration tests are the scripts tests/integration/*.sh, which get the
# build folder in MLC_BUILD. TESTS_ONLY="name1 name2" restricts the run.
set -u
build=${1:?usage: tests/run.sh BUILD}
cd "$(dirname "$0")/.."
export MLC_BUILD=$build
export MLC_ROOT=$PWD
# Sanitizer builds: fail on the first report, keep leak checking on.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

pass=0 fail=0 failed=()
logdir=$build/test-logs
mkdir -p "$logdir"

wanted() {
  [ -z "${TESTS_ONLY:-}" ] && return 0
  local t
  for t in $TESTS_ONLY; do [ "$t" = "$1" ] && return 0; done
  return 1
}

run_one() {
  local name=$1; shift
  wanted "$name" || return 0
  local start end
  start=$(date +%s.%N)
  if timeout 600 "$@" >"$logdir/$name.log" 2>&1; then
    pass=$((pass + 1)); end=$(date +%s.%N)
    printf 'PASS %-28s %6.1fs\n' "$name" "$(awk -v a="$start" -v b="$end" 'BEGIN{print b-a}')"
  else
    fail=$((fail + 1)); failed+=("$name")
    printf 'FAIL %s (log: %s)\n' "$name" "$logdir/$name.log"
    tail -n 40 "$logdir/$name.log" | sed 's/^/    /'
  fi
}

for t in "$build"/tests/test_*; do
  [ -x "$t" ] || continue
  run_one "$(basename "$t")" "$t"
done
for t in tests/integration/*.sh; do
  [ "$(basename "$t")" = lib.sh ] && continue
  [ -f "$t" ] || continue
  run_one "$(basename "$t" .sh)" bash "$t"
done

echo
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
