#!/bin/sh
# transports.sh - the same chat workload over tcp, udp and unix, udp through
# a lossy relay, and tcp with secure sessions (issues 3 and 4), following
# doc/BENCHMARKS.md: loopback only, a fresh sockchatd for every run, the
# rows interleaved within a repetition (their order rotates by one each
# repetition), every run bounded in time. Prints two Markdown tables of
# medians (min-max), with ratios to tcp taken per repetition.
#
#   make server/sockchatd bench/loadgen tests/lossy && bench/transports.sh
#
# Every loadgen run goes through common/transport (loadgen --transport), so
# between rows only the URL changes; the secure row adds --secure.
#
# Rows:   tcp, udp, unix            sockchatd's own listeners
#         udp-relay                 udp through tests/lossy dropping nothing:
#                                   what the relay alone costs
#         udp-loss1/5/20            udp through tests/lossy dropping 1, 5 and
#                                   20% of the datagrams each way (--seed 42)
#         tcp-secure                tcp with encrypted sessions
# Workloads (the same as bench/compare's fanout-w128 and latency-100ps):
#         fanout   -n 100 -s 10 -w 128 --seconds T          deliveries/s
#         latency  -n 100 -s 10 -w 128 --rate 100 --seconds T
#                  (1,000 msg/s offered): p50, p99, p99.9
#
# Environment: REPS (default 3), T (measured seconds, default 2), MAXS
# (loadgen's --max-seconds, default 60; lossy rows get LOSSY_MAXS, default
# 180, because their 100 connects are one at a time through the loss),
# LOSSY_STALL (loadgen's --stall-seconds on lossy rows, default 30: at 20%
# loss a session's retransmission timer backs off past the default 5 s), ONLY
# (a grep -E pattern on row names), SOCKCHATD, LOADGEN, LOSSY (programs),
# OUT (directory for logs and the raw JSON lines; default a new temporary
# directory, kept), TABLE_ONLY=1 (print the tables again from OUT).
#
# A run that fails a check or does not finish in time is left out of the
# figures and counted in its cell with its first error; a row with no good
# run says so instead of a figure.
set -u

top=$(cd "$(dirname "$0")/.." && pwd)
SOCKCHATD=${SOCKCHATD:-$top/server/sockchatd}
LOADGEN=${LOADGEN:-$top/bench/loadgen}
LOSSY=${LOSSY:-$top/tests/lossy}
REPS=${REPS:-3}
T=${T:-2}
MAXS=${MAXS:-60}
LOSSY_MAXS=${LOSSY_MAXS:-180}
LOSSY_STALL=${LOSSY_STALL:-30}
ONLY=${ONLY:-.}
TABLE_ONLY=${TABLE_ONLY:-0}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/sockchat-transports.XXXXXX")}

die() { printf 'transports: %s\n' "$*" >&2; exit 1; }
note() { printf 'transports: %s\n' "$*" >&2; }
command -v jq >/dev/null || die "jq is needed for the tables"
mkdir -p "$OUT" || die "cannot create $OUT"
if [ "$TABLE_ONLY" != 1 ]; then
    [ -x "$SOCKCHATD" ] || die "no $SOCKCHATD (make server/sockchatd)"
    [ -x "$LOADGEN" ] || die "no $LOADGEN (make bench/loadgen)"
    [ -x "$LOSSY" ] || die "no $LOSSY (make tests/lossy)"
    . "$top/bench/stale.sh"
    stale_check_programs
fi

# name|listener (tcp, udp or unix)|drop probability through tests/lossy,
# or - for none|extra loadgen options
ROWS='tcp|tcp|-|
udp|udp|-|
unix|unix|-|
udp-relay|udp|0|
udp-loss1|udp|0.01|
udp-loss5|udp|0.05|
udp-loss20|udp|0.20|
tcp-secure|tcp|-|--secure'
WORKLOADS="fanout|-n 100 -s 10 -w 128 --seconds $T
latency|-n 100 -s 10 -w 128 --rate 100 --seconds $T"

SP="" LP=""
# Stop a process we started, by PID: SIGTERM, then SIGKILL after 3 s.
stop_pid() {
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null || true
    i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt 30 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    stop_pid "$LP"
    stop_pid "$SP"
    LP="" SP=""
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# wait_file FILE PID: true once FILE is not empty (5 s at most, while PID
# lives).
wait_file() {
    i=0
    while [ ! -s "$1" ] && [ $i -lt 50 ]; do
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
        i=$((i + 1))
    done
    [ -s "$1" ]
}

# run_one ROW LISTENER DROP EXTRA WORKLOAD REP OPTIONS...: a fresh server
# (and relay), one loadgen run, one JSON line in $OUT/results.jsonl.
run_one() {
    row=$1 lis=$2 drop=$3 extra=$4 wl=$5 rep=$6
    shift 6
    tag="$row-$wl-$rep"
    dir="$OUT/$tag.d"
    rm -rf "$dir"
    mkdir -p "$dir"
    rc=0 alive=true url="" maxs=$MAXS lossy_counts=""
    # Rate limits off and queues large, as bench/compare runs sockchatd; a
    # private identity key (secure sessions) in the run's directory.
    XDG_CONFIG_HOME="$dir/xdg" "$SOCKCHATD" --io epoll \
        --listen tcp://127.0.0.1:0 --listen udp://127.0.0.1:0 \
        --listen "unix://$dir/s" --port-file "$dir/ports" --rate 0 \
        --max-clients 20000 --max-queue 8388608 --room-cap 4096 \
        --idle-timeout 600 -q >"$OUT/$tag.server.log" 2>&1 &
    SP=$!
    if wait_file "$dir/ports" "$SP"; then
        url=$(grep "^$lis://" "$dir/ports" | head -n 1)
    fi
    if [ -n "$url" ] && [ "$drop" != - ]; then
        maxs=$LOSSY_MAXS
        extra="$extra --stall-seconds $LOSSY_STALL"
        "$LOSSY" --listen 127.0.0.1:0 --to "127.0.0.1:${url##*:}" \
            --drop "$drop" --seed 42 --port-file "$dir/lport" \
            --max-seconds $((maxs + 60)) >"$OUT/$tag.lossy.log" 2>&1 &
        LP=$!
        if wait_file "$dir/lport" "$LP"; then
            url="udp://127.0.0.1:$(cat "$dir/lport")"
        else
            url=""
        fi
    fi
    if [ -z "$url" ]; then
        note "$tag: server or relay did not start (see $OUT/$tag.*.log)"
        echo '{"ok":false,"errors":{"first":"server or relay did not start"}}' \
            >"$OUT/$tag.json"
        rc=9
    else
        # shellcheck disable=SC2086 # extra and the options are words
        timeout $((maxs + 15)) "$LOADGEN" --url "$url" --transport $extra \
            --server-pid "$SP" --max-seconds "$maxs" --json "$@" \
            >"$OUT/$tag.json" 2>"$OUT/$tag.loadgen.log" || rc=$?
        kill -0 "$SP" 2>/dev/null || alive=false
    fi
    if [ -n "$LP" ]; then
        stop_pid "$LP"
        LP=""
        lossy_counts=$(grep -E '^lossy: (client|server)' "$OUT/$tag.lossy.log" |
            sed 's/^lossy: //' | tr '\n' ';')
    fi
    stop_pid "$SP"
    SP=""
    [ -s "$OUT/$tag.json" ] || echo '{"ok":false}' >"$OUT/$tag.json"
    jq -c --arg row "$row" --arg w "$wl" --argjson r "$rep" \
        --argjson rc "$rc" --argjson alive "$alive" --arg lossy "$lossy_counts" \
        --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
        '. + {row: $row, workload: $w, rep: $r, rc: $rc, server_alive: $alive,
              lossy: $lossy, loadavg: $load}' \
        "$OUT/$tag.json" >>"$OUT/results.jsonl"
    printf '%s: rc %s; %s\n' "$tag" "$rc" "$(jq -r '
        "\(.deliveries_per_s // 0 | floor) deliveries/s, p50 \(.lat_p50_us // "-") us, p99 \(.lat_p99_us // "-") us, connect \(.connect_s // "-" | tostring | .[0:5]) s, others \(.others_cpu_s // "-" | tostring | .[0:5]) s"
        + (if .ok != true then " FAILED: \(.errors.first // "")" else "" end)' \
        "$OUT/$tag.json")$($alive || echo ', SERVER DIED')" >&2
}

if [ "$TABLE_ONLY" = 1 ]; then
    [ -s "$OUT/results.jsonl" ] || die "no $OUT/results.jsonl"
else
    : >"$OUT/results.jsonl"
    {
        echo "machine: $(nproc) CPUs,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
        echo "kernel: $(uname -sr)"
        echo "sockchatd: $("$SOCKCHATD" --version 2>&1 | head -n 1)"
        echo "REPS=$REPS T=$T MAXS=$MAXS LOSSY_MAXS=$LOSSY_MAXS LOSSY_STALL=$LOSSY_STALL ONLY=$ONLY"
        echo "start: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
    } >"$OUT/machine.txt"
    names=$(echo "$ROWS" | cut -d'|' -f1 | grep -E -- "$ONLY" | tr '\n' ' ')
    [ -n "$names" ] || die "no row matches ONLY=$ONLY"
    t0=$(date +%s)
    rep=1
    while [ $rep -le "$REPS" ]; do
        # Interleaved: every row within one repetition, their order rotated
        # by one each repetition.
        # shellcheck disable=SC2086 # a list of words on purpose
        set -- $names
        k=$(((rep - 1) % $#))
        while [ $k -gt 0 ]; do
            first=$1
            shift
            set -- "$@" "$first"
            k=$((k - 1))
        done
        order="$*"
        while IFS='|' read -r wl opts; do
            for name in $order; do
                line=$(echo "$ROWS" | grep "^$name|")
                lis=$(echo "$line" | cut -d'|' -f2)
                drop=$(echo "$line" | cut -d'|' -f3)
                extra=$(echo "$line" | cut -d'|' -f4)
                # shellcheck disable=SC2086 # opts are words on purpose
                run_one "$name" "$lis" "$drop" "$extra" "$wl" "$rep" $opts \
                    </dev/null
            done
        done <<EOF
$WORKLOADS
EOF
        rep=$((rep + 1))
    done
    echo "elapsed: $(($(date +%s) - t0)) s" >>"$OUT/machine.txt"
fi

cat "$OUT/machine.txt"
printf '\nresults: %s/results.jsonl\n\n' "$OUT"
jq -rs --arg rows "$(echo "$ROWS" | cut -d'|' -f1 | tr '\n' ' ')" \
    -f /dev/stdin "$OUT/results.jsonl" <<'JQ'
def med: sort | .[(length - 1) / 2 | floor];
def r($d): . * pow(10; $d) | round / pow(10; $d);
def good: .ok == true and .rc == 0 and .server_alive == true;
def span($v; $s; $d; $u):
  ($v | map(. * $s)) as $x
  | "\($x | med | r($d))\($u) (\($x | min | r($d))-\($x | max | r($d)))";
# One figure of row $row, workload $wl: median (min-max) of the good runs,
# then how many failed and why (the first failure's error).
def cell($runs; $row; $wl; $f; $s; $d; $u):
  ($runs | map(select(.row == $row and .workload == $wl))) as $all
  | ($all | map(select(good) | .[$f]) | map(select(type == "number"))) as $v
  | ($all | map(select(good | not))) as $bad
  | if ($all | length) == 0 then "-"
    elif ($v | length) == 0 then
      "did not complete: \($bad | length) of \($all | length) failed (\($bad[0].errors.first // "no output" | .[0:60]))"
    else span($v; $s; $d; $u)
      + (if ($bad | length) > 0
         then " [\($bad | length) of \($all | length) failed: \($bad[0].errors.first // "no output" | .[0:60])]"
         else "" end)
    end;
# row / base of one figure, per repetition, good runs only.
def ratio($runs; $row; $base; $wl; $f):
  [$runs | map(select(.workload == $wl and good)) | group_by(.rep)[]
   | (map(select(.row == $row)) | .[0][$f]?) as $a
   | (map(select(.row == $base)) | .[0][$f]?) as $b
   | select(($a | type) == "number" and ($b | type) == "number" and $b > 0)
   | $a / $b] as $q
  | if ($q | length) == 0 then "-" else span($q; 1; 2; "") end;
. as $runs
| ($rows | split(" ") | map(select(. != ""))) as $names
| "### Transports (fan-out N=100 S=10 W=128; latency at 1,000 msg/s offered)",
  "",
  "| row | deliveries/s | ratio to tcp | p50 | p99 | p99 ratio to tcp | p99.9 | deliveries/s at 1,000 msg/s offered |",
  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ($names[] | select(. != "tcp-secure") as $n
   | "| \($n) | \(cell($runs; $n; "fanout"; "deliveries_per_s"; 1e-6; 2; " M"))"
     + " | \(ratio($runs; $n; "tcp"; "fanout"; "deliveries_per_s"))"
     + " | \(cell($runs; $n; "latency"; "lat_p50_us"; 1e-3; 2; " ms"))"
     + " | \(cell($runs; $n; "latency"; "lat_p99_us"; 1e-3; 2; " ms"))"
     + " | \(ratio($runs; $n; "tcp"; "latency"; "lat_p99_us"))"
     + " | \(cell($runs; $n; "latency"; "lat_p999_us"; 1e-3; 2; " ms"))"
     + " | \(cell($runs; $n; "latency"; "deliveries_per_s"; 1e-3; 1; " k")) |"),
  "",
  "### Encrypted sessions over tcp",
  "",
  "| row | deliveries/s | ratio to plain | server CPU s per 10^6 deliveries | p99 at 1,000 msg/s | p99 ratio to plain |",
  "| --- | ---: | ---: | ---: | ---: | ---: |",
  (["tcp", "tcp-secure"][] as $n
   | "| \(if $n == "tcp" then "plain" else "secure" end)"
     + " | \(cell($runs; $n; "fanout"; "deliveries_per_s"; 1e-6; 2; " M"))"
     + " | \(ratio($runs; $n; "tcp"; "fanout"; "deliveries_per_s"))"
     + " | \(cell($runs; $n; "fanout"; "server_cpu_s_per_M"; 1; 3; ""))"
     + " | \(cell($runs; $n; "latency"; "lat_p99_us"; 1e-3; 2; " ms"))"
     + " | \(ratio($runs; $n; "tcp"; "latency"; "lat_p99_us")) |"),
  "",
  "### Server CPU s per 10^6 deliveries (fan-out) and other processes' CPU",
  "",
  "| row | server CPU s per 10^6 | loadgen CPU s | others' CPU s (median of all runs) | connect+join s |",
  "| --- | ---: | ---: | ---: | ---: |",
  ($names[] as $n
   | "| \($n) | \(cell($runs; $n; "fanout"; "server_cpu_s_per_M"; 1; 3; ""))"
     + " | \(cell($runs; $n; "fanout"; "loadgen_cpu_s"; 1; 2; ""))"
     + " | \($runs | map(select(.row == $n and (.others_cpu_s // -1) >= 0) | .others_cpu_s)
             | if length == 0 then "-" else med | r(2) end)"
     + " | \(cell($runs; $n; "fanout"; "connect_s"; 1; 1; "")) |")
JQ
fails=$(jq -s 'map(select(.ok != true or .rc != 0 or .server_alive != true)) | length' \
    "$OUT/results.jsonl")
printf '\n%s of %s runs failed a check or did not finish.\n' \
    "$fails" "$(wc -l <"$OUT/results.jsonl")"
if [ "$fails" -ne 0 ]; then
    jq -c 'select(.ok != true or .rc != 0 or .server_alive != true)
           | {row, workload, rep, rc, server_alive, first: .errors.first}' \
        "$OUT/results.jsonl"
fi
exit 0
