#!/bin/sh
# expect_failure.sh MAX_SECONDS PATTERN COMMAND... : passes when COMMAND exits non-zero within MAX_SECONDS and its
# output (stdout+stderr) contains PATTERN (grep -E).
max="$1"; pattern="$2"; shift 2
out=$(mktemp)
start=$(date +%s.%N)
timeout "$((max + 30))" "$@" >"$out" 2>&1
rc=$?
end=$(date +%s.%N)
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
cat "$out"
echo "expect_failure: exit status $rc after ${elapsed} s"
fail=0
if [ "$rc" -eq 0 ]; then echo "expect_failure: FAIL: command succeeded, expected a failure"; fail=1; fi
if [ "$rc" -eq 124 ]; then echo "expect_failure: FAIL: command hung (killed by timeout)"; fail=1; fi
if awk -v e="$elapsed" -v m="$max" 'BEGIN { exit !(e > m) }'; then echo "expect_failure: FAIL: took longer than ${max} s"; fail=1; fi
if ! grep -Eq "$pattern" "$out"; then echo "expect_failure: FAIL: output lacks /$pattern/"; fail=1; fi
rm -f "$out"
exit $fail
