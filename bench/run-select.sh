#!/bin/sh
# run-select.sh - sockchatd throughput and latency on the select backend,
# following doc/BENCHMARKS.md: a fresh server per measurement, loopback
# only, every run bounded. Prints a Markdown table of medians (min-max).
#
#   make server/sockchatd bench/loadgen && bench/run-select.sh
#
# Environment: REPS (default 3), RELAY=0 to skip the raw-relay ceiling,
# SOCKCHATD and LOADGEN (binaries), OUT (directory for the raw JSON lines;
# default a new temporary directory, kept).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
SOCKCHATD=${SOCKCHATD:-$top/server/sockchatd}
LOADGEN=${LOADGEN:-$top/bench/loadgen}
REPS=${REPS:-3}
RELAY=${RELAY:-1}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/sockchat-bench.XXXXXX")}
MAXS=30 # per loadgen run; it aborts with an error past this

die() { printf 'run-select: %s\n' "$*" >&2; exit 1; }
[ -x "$SOCKCHATD" ] || die "no $SOCKCHATD (make server/sockchatd)"
[ -x "$LOADGEN" ] || die "no $LOADGEN (make bench/loadgen)"
. "$top/bench/stale.sh"
stale_check_programs
command -v jq >/dev/null || die "jq is needed for the table"
mkdir -p "$OUT"
# N=900 needs 900 descriptors on each side; select's FD_SETSIZE is 1024.
ulimit -n 4096 2>/dev/null || die "cannot raise the descriptor limit to 4096"

# name|loadgen options. Messages per sender are sized for a few seconds each.
WORKLOADS='n100-w8|-n 100 -s 10 -w 8 -m 5000
n100-w128|-n 100 -s 10 -w 128 -m 5000
n900-w8|-n 900 -s 10 -w 8 -m 500
n900-w128|-n 900 -s 10 -w 128 -m 500
n100-rate100|-n 100 -s 10 -w 128 --rate 100 -m 300'

SP=""
cleanup() {
    if [ -n "$SP" ] && kill -0 "$SP" 2>/dev/null; then
        kill "$SP" 2>/dev/null || true
        wait "$SP" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

# Stop the server we started (by PID): SIGTERM, then SIGKILL after 3 s.
stop_server() {
    i=0
    kill "$SP" 2>/dev/null || true
    while kill -0 "$SP" 2>/dev/null && [ $i -lt 30 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    kill -9 "$SP" 2>/dev/null || true
    wait "$SP" 2>/dev/null || true
    SP=""
}

# run_one TARGET WORKLOAD REP OPTIONS...: one fresh server, one loadgen run,
# one JSON line appended to $OUT/results.jsonl.
run_one() {
    target=$1 wl=$2 rep=$3
    shift 3
    tag="$target-$wl-$rep"
    pf="$OUT/$tag.port"
    rm -f "$pf"
    if [ "$target" = sockchatd ]; then
        "$SOCKCHATD" --io select --listen tcp://127.0.0.1:0 --port-file "$pf" \
            --rate 0 --max-clients 2000 --max-queue 8388608 -q \
            >"$OUT/$tag.server.log" 2>&1 &
    else
        "$LOADGEN" --relay --url tcp://127.0.0.1:0 -n 2000 --max-seconds 60 \
            >"$pf" 2>"$OUT/$tag.server.log" &
    fi
    SP=$!
    i=0
    while [ ! -s "$pf" ] && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    [ -s "$pf" ] || die "$tag: server did not start (see $OUT/$tag.server.log)"
    url=$(head -n 1 "$pf")
    rc=0
    timeout $((MAXS + 15)) "$LOADGEN" --url "$url" --server-pid "$SP" \
        --max-seconds $MAXS --json "$@" >"$OUT/$tag.json" \
        2>"$OUT/$tag.loadgen.log" || rc=$?
    alive=true
    kill -0 "$SP" 2>/dev/null || alive=false
    stop_server
    [ -s "$OUT/$tag.json" ] || echo '{"ok":false}' >"$OUT/$tag.json"
    jq -c --arg t "$target" --arg w "$wl" --argjson r "$rep" \
        --argjson rc "$rc" --argjson alive "$alive" \
        --arg slog "$(head -c 300 "$OUT/$tag.server.log" | tr '\n' ' ')" \
        '. + {target: $t, workload: $w, rep: $r, rc: $rc,
              server_alive: $alive, server_log: $slog}' \
        "$OUT/$tag.json" >>"$OUT/results.jsonl"
    printf '%s: rc %s, %s deliveries/s, p50 %s us, p99 %s us%s\n' "$tag" \
        "$rc" "$(jq -r '.deliveries_per_s // 0 | floor' "$OUT/$tag.json")" \
        "$(jq -r '.lat_p50_us // "-"' "$OUT/$tag.json")" \
        "$(jq -r '.lat_p99_us // "-"' "$OUT/$tag.json")" \
        "$($alive || echo ', SERVER DIED')" >&2
}

targets=sockchatd
[ "$RELAY" = 1 ] && targets="sockchatd relay"
: >"$OUT/results.jsonl"
rep=1
while [ $rep -le "$REPS" ]; do
    # Interleaved: every workload on every target within one repetition.
    while IFS='|' read -r wl opts; do
        for t in $targets; do
            # shellcheck disable=SC2086 # opts are words on purpose
            run_one "$t" "$wl" "$rep" $opts </dev/null
        done
    done <<EOF
$WORKLOADS
EOF
    rep=$((rep + 1))
done

printf '\nresults: %s/results.jsonl\n\n' "$OUT"
order=$(echo "$WORKLOADS" | cut -d'|' -f1 | tr '\n' ' ')
jq -rs --arg order "$order" '
  def med: sort | .[(length - 1) / 2 | floor];
  def fmt(f; d): map(f) as $v
    | "\($v | med | . * d | round / d) (\($v | min | . * d | round / d)-\($v | max | . * d | round / d))";
  "| workload | target | deliveries/s | p50 us | p99 us | p99.9 us | server CPU s / M deliveries | server VmHWM kB | failed runs |",
  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  (group_by(.workload + " " + .target)
   | sort_by((.[0].workload as $w | $order | split(" ") | index($w)),
             .[0].target != "sockchatd")
   | .[]
   | "| \(.[0].workload) | \(.[0].target) | \(fmt(.deliveries_per_s // 0; 1))"
     + " | \(fmt(.lat_p50_us // 0; 1)) | \(fmt(.lat_p99_us // 0; 1))"
     + " | \(fmt(.lat_p999_us // 0; 1))"
     + " | \(fmt(.server_cpu_s_per_M // 0; 1000))"
     + " | \(fmt(.server_vmhwm_kb // 0; 1))"
     + " | \(map(select(.ok != true or .rc != 0 or .server_alive != true)) | length) of \(length) |")
' "$OUT/results.jsonl"

fails=$(jq -s 'map(select(.ok != true or .rc != 0 or .server_alive != true)) | length' \
    "$OUT/results.jsonl")
if [ "$fails" -ne 0 ]; then
    printf '\n%s failed run(s):\n' "$fails"
    jq -c 'select(.ok != true or .rc != 0 or .server_alive != true)
           | {target, workload, rep, rc, server_alive, errors, server_log}' \
        "$OUT/results.jsonl"
    exit 1
fi
