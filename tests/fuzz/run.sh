#!/bin/sh
# tests/fuzz/run.sh - run each libFuzzer target for a while on its corpus
# (CI job (d) of STYLE.md; doc/FUZZING.md has the long runs).
#
# Build first: ./configure CC=clang --enable-fuzzing && make fuzz
# (`make fuzz-run` does both steps and calls this script).
#
# Environment:
#   FUZZ_BIN      directory holding the built targets (default: the
#                 tests/fuzz directory of the current build tree, ./tests/fuzz)
#   FUZZ_SECONDS  seconds per target (default 60); 0 only replays the
#                 corpus once (a quick regression check)
#   FUZZ_TARGETS  targets to run (default: fuzz_frame fuzz_message
#                 fuzz_request fuzz_secure fuzz_udp fuzz_discovery)
#   FUZZ_JOBS     targets run at once (default 1)
#   FUZZ_OUT      work directory for new inputs, crash artifacts and logs
#                 (default: a new directory under ${TMPDIR:-/tmp})
#   FUZZ_ARGS     more libFuzzer flags, e.g. "-seed=1 -use_value_profile=1"
#
# The corpora in the source tree are only read: what a run adds goes to
# $FUZZ_OUT/<target>/corpus, crashes to $FUZZ_OUT/<target>/crash-* (and
# leak-*, timeout-*, oom-*). The exit status is 0 when every target ran
# clean, 1 when one found something (its log tail is printed), 2 on a
# usage error.
set -u

here=$(cd "$(dirname "$0")" && pwd)
bin=${FUZZ_BIN:-$(pwd)/tests/fuzz}
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-fuzz_frame fuzz_message fuzz_request fuzz_secure fuzz_udp fuzz_discovery}
jobs=${FUZZ_JOBS:-1}
out=${FUZZ_OUT:-}
extra=${FUZZ_ARGS:-}

case $seconds in
'' | *[!0-9]*) echo "run.sh: FUZZ_SECONDS must be a number" >&2; exit 2 ;;
esac
case $jobs in
'' | *[!0-9]* | 0) echo "run.sh: FUZZ_JOBS must be 1 or more" >&2; exit 2 ;;
esac
if [ -z "$out" ]; then
    out=$(mktemp -d "${TMPDIR:-/tmp}/sockchat-fuzz.XXXXXX") || exit 2
fi

# The longest input each target may build: room for a 4096-byte text with
# escapes in a message, a few frames of it for the request path.
max_len_of() {
    case $1 in
    fuzz_frame) echo 16384 ;;
    fuzz_message) echo 16384 ;;
    fuzz_request) echo 16384 ;;
    fuzz_secure | fuzz_udp | fuzz_discovery) echo 4096 ;;
    *) echo 4096 ;;
    esac
}

run_one() {
    t=$1
    exe=$bin/$t
    dir=$out/$t
    mkdir -p "$dir/corpus"
    if [ ! -x "$exe" ]; then
        echo "run.sh: $exe is not built (make fuzz)" >&2
        return 2
    fi
    if [ ! -d "$here/corpus/$t" ]; then
        echo "run.sh: no corpus $here/corpus/$t" >&2
        return 2
    fi
    set -- -max_len="$(max_len_of "$t")" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$dir/"
    case $t in
    fuzz_message | fuzz_request) set -- "$@" -dict="$here/sockchat.dict" ;;
    esac
    if [ "$seconds" -eq 0 ]; then
        set -- "$@" -runs=0
    else
        set -- "$@" -max_total_time="$seconds"
    fi
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    "$exe" "$@" $extra "$dir/corpus" "$here/corpus/$t" >"$dir/log" 2>&1
    rc=$?
    # The last status line carries the coverage (cov:) and features (ft:).
    last=$(grep -E '^#[0-9]+' "$dir/log" | tail -n 1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log")
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log")
    if [ $rc -eq 0 ]; then
        echo "PASS $t: ${execs:-?} execs (${speed:-?}/s) in ${seconds}s: $last"
    else
        echo "FAIL $t (exit $rc): log $dir/log"
        ls "$dir" | grep -E '^(crash|leak|timeout|oom|slow-unit)-' |
            sed "s|^|  artifact: $dir/|"
        tail -n 40 "$dir/log" | sed 's/^/  | /'
    fi
    return $rc
}

echo "run.sh: ${seconds}s per target, output in $out"
status=0
running=0
pids=""
for t in $targets; do
    if [ "$jobs" -le 1 ]; then
        run_one "$t" || status=1
        continue
    fi
    run_one "$t" >"$out/$t.summary" 2>&1 &
    pids="$pids $!"
    running=$((running + 1))
    if [ $running -ge "$jobs" ]; then
        for p in $pids; do
            wait "$p" || status=1
        done
        pids=""
        running=0
    fi
done
for p in $pids; do
    wait "$p" || status=1
done
if [ "$jobs" -gt 1 ]; then
    for t in $targets; do
        cat "$out/$t.summary"
    done
fi
exit $status
