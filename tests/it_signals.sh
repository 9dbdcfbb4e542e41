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

# start_server, stop_server, wait_for, reap, fail and the rest: tests/lib.sh.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
soak=${SOAK:-$builddir/bench/soak}

[ -x "$SOCKCHATD" ] || { echo "SKIP: no server at $SOCKCHATD"; exit 77; }
[ -x "$soak" ] || { echo "SKIP: bench/soak is not built (make bench/soak)"; exit 77; }
command -v date >/dev/null && [ "$(date +%N)" != "%N" ] ||
    { echo "SKIP: date +%N is needed to time the exit"; exit 77; }

it_setup it_signals
XDG_CONFIG_HOME=$tmp/xdg; export XDG_CONFIG_HOME
# The servers log at their default level (the checks read the log), and
# they get 5 s (scaled) to start, and to exit after SIGTERM.
server_opts=
wait_tenths=50

# serve NAME ARGS...: start_server with tcp, udp and unix listeners before
# ARGS, all of which soak uses; the PID in $pid.
serve() {
    name=$1
    shift
    rm -f "$tmp/$name.sock"
    start_server "$name" -l tcp://127.0.0.1:0 -l udp://127.0.0.1:0 \
        -l "unix://$tmp/$name.sock" "$@"
    pid=$spid
}

# wait_file FILE SECONDS: 1 if FILE is not there in time, or the soak ends
# first.
wait_file() {
    wait_for "test -e '$1' || ! kill -0 $soak_pid" $(($2 * 10)) && [ -e "$1" ]
}

write_config() { # motd max-queue
    printf '[sockchatd]\nmotd=%s\nrate=0\nmax-queue=%s\nhistory=100\n' \
        "$1" "$2" >"$tmp/cfg.tmp" && mv "$tmp/cfg.tmp" "$tmp/cfg"
}

# ---- 1. SIGHUP during a flood -----------------------------------------------
echo "== SIGHUP during a flood reloads and drops nobody"
write_config before 1048576
serve hup --config "$tmp/cfg"
rm -f "$tmp/ready"
"$soak" --port-file "$tmp/hup.port" --calm --flood 4 --clients 30 --rooms 2 \
    --seconds $((8 * scale)) --ready-file "$tmp/ready" --expect-motd after \
    --settle 0 --rss-margin-pct -1 --max-wait $((40 * scale)) \
    >"$tmp/hup.out" 2>"$tmp/hup.err" &
soak_pid=$!
pids="$pids $soak_pid"
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
reap "$soak_pid"
soak_status=$status
cat "$tmp/hup.out"
grep '^FAIL' "$tmp/hup.err" | head -10
[ "$soak_status" -eq 0 ] || fail "soak during SIGHUP: status $soak_status"
reloads=$(grep -c 'configuration reloaded' "$tmp/hup.server.err")
kept=$(grep -c 'keeping the old configuration' "$tmp/hup.server.err")
echo "reloads=$reloads refused=$kept"
[ "$reloads" -eq 2 ] || fail "expected 2 reloads, the log has $reloads"
[ "$kept" -eq 1 ] || fail "expected 1 refused reload, the log has $kept"
grep -q 'max-frame must be' "$tmp/hup.server.err" ||
    fail "the broken file was not reported"
stop_server "$pid"
[ "$status" -eq 0 ] || fail "server exit status $status after SIGTERM"

# ---- 2. SIGTERM during a flood --------------------------------------------
echo "== SIGTERM during a flood: bye to everyone, exit 0 within a second"
serve term --rate 0
rm -f "$tmp/ready"
"$soak" --port-file "$tmp/term.port" --calm --flood 4 --until-bye \
    --clients 30 --rooms 2 --seconds 60 --ready-file "$tmp/ready" \
    --max-wait $((30 * scale)) >"$tmp/term.out" 2>"$tmp/term.err" &
soak_pid=$!
pids="$pids $soak_pid"
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
    reap "$pid"
    echo "server exit=$status ${ms} ms after SIGTERM"
    [ "$status" -eq 0 ] || fail "server exit status $status after SIGTERM"
    [ "$ms" -le $((1000 * scale)) ] ||
        fail "the server took $ms ms to exit (limit $((1000 * scale)))"
else
    fail "the soak clients were not all in their rooms in time"
    stop_server "$pid"
fi
reap "$soak_pid"
soak_status=$status
cat "$tmp/term.out"
grep '^FAIL' "$tmp/term.err" | head -10
[ "$soak_status" -eq 0 ] || fail "not every client got bye (soak status $soak_status)"
grep -q '^checks:.* byes=30 ' "$tmp/term.out" ||
    fail "expected 30 clients with bye"

[ $failed -eq 0 ] && echo "PASS" || echo "FAILED"
exit $failed
