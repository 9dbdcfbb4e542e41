#!/bin/sh
# it_signals.sh - sockchatd and its signals during a flood (doc/RELIABILITY.md).
#
# 1. SIGHUP during a flood reloads --config (motd, limits), a broken file is
#    refused with the old configuration kept, and nobody is dropped: every
#    client stays connected and receives every message in order (bench/soak
#    --calm --flood checks that), and a client that connects afterwards sees
#    the new motd.
# 2. SIGTERM during a flood: every client gets `bye` before its connection
#    ends (bench/soak --until-bye), and the server exits 0 within a second.
#
# Loopback only (tcp, udp and unix listeners), every wait bounded; exit 77
# when bench/soak is not built.
set -u

builddir=${abs_top_builddir:-$(cd "$(dirname "$0")/.." && pwd)}
server=${SOCKCHATD:-$builddir/server/sockchatd}
soak=${SOAK:-$builddir/bench/soak}
scale=${IT_TIMEOUT_SCALE:-1}
wrapper=${SOCKCHATD_WRAPPER:-}

[ -x "$server" ] || { echo "SKIP: no server at $server"; exit 77; }
[ -x "$soak" ] || { echo "SKIP: bench/soak is not built (make bench/soak)"; exit 77; }
command -v date >/dev/null && [ "$(date +%N)" != "%N" ] ||
    { echo "SKIP: date +%N is needed to time the exit"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/it_signals.XXXXXX") || exit 99
pid=
soak_pid=
cleanup() {
    for p in $pid $soak_pid; do
        kill -KILL "$p" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
XDG_CONFIG_HOME=$tmp/xdg; export XDG_CONFIG_HOME
failed=0
fail() { echo "FAIL: $*"; failed=1; }

# start_server NAME ARGS...: in the background, with its port file.
start_server() {
    name=$1
    shift
    rm -f "$tmp/$name.ports" "$tmp/$name.sock"
    $wrapper "$server" -l tcp://127.0.0.1:0 -l udp://127.0.0.1:0 \
        -l "unix://$tmp/$name.sock" --port-file "$tmp/$name.ports" "$@" \
        2>"$tmp/$name.log" &
    pid=$!
    i=0
    while [ ! -s "$tmp/$name.ports" ]; do
        i=$((i + 1))
        if [ $i -gt $((50 * scale)) ] || ! kill -0 "$pid" 2>/dev/null; then
            echo "the server did not start:"; tail -5 "$tmp/$name.log"
            exit 99
        fi
        sleep 0.1
    done
}

# wait_file FILE SECONDS
wait_file() {
    i=0
    while [ ! -e "$1" ]; do
        i=$((i + 1))
        [ $i -gt $(($2 * 10 * scale)) ] && return 1
        kill -0 "$soak_pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 0
}

# stop_server: SIGTERM, wait (bounded); the exit status in $status.
stop_server() {
    kill -TERM "$pid" 2>/dev/null
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt $((100 * scale)) ]; do
        sleep 0.05
        i=$((i + 1))
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    wait "$pid"
    status=$?
    pid=
}

write_config() { # motd max-queue
    printf '[sockchatd]\nmotd=%s\nrate=0\nmax-queue=%s\nhistory=100\n' \
        "$1" "$2" >"$tmp/cfg.tmp" && mv "$tmp/cfg.tmp" "$tmp/cfg"
}

# ---- 1. SIGHUP during a flood -----------------------------------------------
echo "== SIGHUP during a flood reloads and drops nobody"
write_config before 1048576
start_server hup --config "$tmp/cfg"
rm -f "$tmp/ready"
"$soak" --port-file "$tmp/hup.ports" --calm --flood 4 --clients 30 --rooms 2 \
    --seconds $((8 * scale)) --ready-file "$tmp/ready" --expect-motd after \
    --settle 0 --rss-margin-pct -1 --max-wait $((40 * scale)) \
    >"$tmp/hup.out" 2>"$tmp/hup.err" &
soak_pid=$!
if wait_file "$tmp/ready" 15; then
    sleep 1
    write_config middle 2097152
    kill -HUP "$pid"
    sleep 1
    # A broken file: refused, the old configuration stays, nobody notices.
    printf '[sockchatd]\nmax-frame=5\n' >"$tmp/cfg"
    kill -HUP "$pid"
    sleep 1
    write_config after 1048576
    kill -HUP "$pid"
else
    fail "the soak clients were not all in their rooms in time"
fi
wait "$soak_pid"
soak_status=$?
soak_pid=
cat "$tmp/hup.out"
grep '^FAIL' "$tmp/hup.err" | head -10
[ "$soak_status" -eq 0 ] || fail "soak during SIGHUP: status $soak_status"
reloads=$(grep -c 'configuration reloaded' "$tmp/hup.log")
kept=$(grep -c 'keeping the old configuration' "$tmp/hup.log")
echo "reloads=$reloads refused=$kept"
[ "$reloads" -eq 2 ] || fail "expected 2 reloads, the log has $reloads"
[ "$kept" -eq 1 ] || fail "expected 1 refused reload, the log has $kept"
grep -q 'max-frame must be' "$tmp/hup.log" ||
    fail "the broken file was not reported"
stop_server
[ "$status" -eq 0 ] || fail "server exit status $status after SIGTERM"

# ---- 2. SIGTERM during a flood --------------------------------------------
echo "== SIGTERM during a flood: bye to everyone, exit 0 within a second"
start_server term --rate 0
rm -f "$tmp/ready"
"$soak" --port-file "$tmp/term.ports" --calm --flood 4 --until-bye \
    --clients 30 --rooms 2 --seconds 60 --ready-file "$tmp/ready" \
    --max-wait $((30 * scale)) >"$tmp/term.out" 2>"$tmp/term.err" &
soak_pid=$!
if wait_file "$tmp/ready" 15; then
    sleep 1
    t0=$(date +%s%N)
    kill -TERM "$pid"
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt $((1000 * scale)) ]; do
        sleep 0.01
        i=$((i + 1))
    done
    t1=$(date +%s%N)
    ms=$(((t1 - t0) / 1000000))
    wait "$pid"
    status=$?
    pid=
    echo "server exit=$status ${ms} ms after SIGTERM"
    [ "$status" -eq 0 ] || fail "server exit status $status after SIGTERM"
    [ "$ms" -le $((1000 * scale)) ] ||
        fail "the server took $ms ms to exit (limit $((1000 * scale)))"
else
    fail "the soak clients were not all in their rooms in time"
    stop_server
fi
wait "$soak_pid"
soak_status=$?
soak_pid=
cat "$tmp/term.out"
grep '^FAIL' "$tmp/term.err" | head -10
[ "$soak_status" -eq 0 ] || fail "not every client got bye (soak status $soak_status)"
grep -q '^checks:.* byes=30 ' "$tmp/term.out" ||
    fail "expected 30 clients with bye"

[ $failed -eq 0 ] && echo "PASS" || echo "FAILED"
exit $failed
