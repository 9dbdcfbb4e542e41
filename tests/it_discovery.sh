#!/bin/sh
# it_discovery.sh - discovery between real sockchatd and sockchat processes,
# on a LAN made of network namespaces.
#
# Broadcast and multicast must never leave this test: every datagram is sent
# from inside namespaces it creates (named with its PID) and deletes on exit,
# whatever happens. The LAN is a bridge in a "switch" namespace with three
# IPv4+IPv6 hosts (servers alpha and beta, a client), a second bridge with
# an IPv6-only pair (server gamma, a client), a third with a server whose
# address changes (epsilon) and a client, and a namespace with loopback
# only (two servers without --lan). Needs root and iproute2: exit 77 (skip)
# without them. Every wait is bounded; every process is stopped by its PID.
#
# Run by `make check` with SOCKCHATD and SOCKCHAT set; alone, it finds the
# binaries next to it in a built tree.
set -u

# ok, not_ok, wait_for, T, $wrap and $scale: tests/lib.sh. Its server
# helpers are not used here: the servers run in namespaces (below).
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
FLOOD=$builddir/tests/test_discovery
# The waits here are 5 s (scaled) unless told.
wait_tenths=50

skip() {
    echo "1..0 # SKIP $1"
    echo "it_discovery: skipped: $1" >&2
    exit 77
}

[ "$(id -u)" -eq 0 ] || skip "needs root to create network namespaces"
command -v ip >/dev/null 2>&1 || skip "needs iproute2 (ip)"
[ -x "$SOCKCHATD" ] && [ -x "$SOCKCHAT" ] || skip "binaries not built"
[ -x "$FLOOD" ] || skip "tests/test_discovery (the flood helper) not built"

it_setup it_discovery
# Keys and known servers go here, not into the home of whoever runs this.
HOME=$tmp XDG_CONFIG_HOME=$tmp/config
export HOME XDG_CONFIG_HOME
tag=d$$
SW=${tag}sw
H1=${tag}h1 H2=${tag}h2 H3=${tag}h3 H4=${tag}h4 H5=${tag}h5 H6=${tag}h6
H7=${tag}h7 H8=${tag}h8
made=""

# The interactive checks run the client in tmux (T), when there is one.
unset TMUX

# Not lib.sh's it_cleanup: every wait for a process is bounded here (see
# end_pids), and the namespaces go too.
cleanup() {
    command -v tmux >/dev/null 2>&1 && T kill-server >/dev/null 2>&1
    # shellcheck disable=SC2086 # a list of PIDs
    end_pids $pids
    wait 2>/dev/null
    # Deleting a namespace deletes its veth ends, and their peers with them.
    for ns in $made; do
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

now_ms() {
    date +%s%3N
}

nsx() {
    ns=$1
    shift
    ip netns exec "$ns" "$@"
}

# --- the LAN ---------------------------------------------------------------

new_ns() {
    ip netns add "$1" || return 1
    made="$made $1"
    nsx "$1" ip link set lo up || return 1
    # No duplicate address detection: addresses are usable at once.
    nsx "$1" sh -c 'echo 0 >/proc/sys/net/ipv6/conf/default/accept_dad;
        echo 0 >/proc/sys/net/ipv6/conf/all/accept_dad' 2>/dev/null
    return 0
}

# plug HOST BRIDGE PORT [IPV4/24]: a veth e0 in HOST, PORT on BRIDGE in $SW.
plug() {
    ip link add e0 netns "$1" type veth peer name "$3" netns "$SW" || return 1
    nsx "$SW" ip link set "$3" master "$2" up || return 1
    [ -n "${4:-}" ] && { nsx "$1" ip addr add "$4/24" brd + dev e0 || return 1; }
    nsx "$1" ip link set e0 up || return 1
    return 0
}

build_lan() {
    new_ns "$SW" || return 1
    for br in br0 br1 br2; do
        # No multicast snooping: the bridge floods the group like a hub.
        nsx "$SW" ip link add "$br" type bridge mcast_snooping 0 || return 1
        nsx "$SW" ip link set "$br" up || return 1
    done
    for h in "$H1" "$H2" "$H3" "$H4" "$H5" "$H6" "$H7" "$H8"; do
        new_ns "$h" || return 1
    done
    plug "$H1" br0 p1 10.77.0.1 && plug "$H2" br0 p2 10.77.0.2 &&
        plug "$H3" br0 p3 10.77.0.3 || return 1
    plug "$H4" br1 p4 && plug "$H5" br1 p5 || return 1
    plug "$H7" br2 p7 10.78.0.1 && plug "$H8" br2 p8 10.78.0.2 || return 1
    for h in "$H4" "$H5"; do
        wait_for "nsx $h ip -6 addr show dev e0 scope link | grep -q fe80" ||
            return 1
    done
    return 0
}

if ! build_lan 2>"$tmp/lan.err"; then
    cat "$tmp/lan.err" >&2
    skip "cannot build the namespace LAN (ip netns, veth or bridge refused)"
fi

# --- processes -------------------------------------------------------------

# start_server NS NAME [ARGS...]: sockchatd in NS; waits for its port file.
# (These two replace lib.sh's start_server and stop_server, which run the
# server on this host.)
start_server() {
    sns=$1
    sname=$2
    shift 2
    rm -f "$tmp/$sname.port"
    # Not through a shell function: $! must be the process itself (ip
    # netns exec and timeout exec, timeout passes SIGTERM on).
    ip netns exec "$sns" timeout $((120 * scale)) $wrap "$SOCKCHATD" \
        --name "$sname" --port-file "$tmp/$sname.port" -v \
        --identity "$tmp/$sname.key" "$@" \
        >>"$tmp/$sname.log" 2>&1 &
    eval "pid_$sname=$!"
    pids="$pids $!"
    wait_for "test -s '$tmp/$sname.port'" || {
        echo "Bail out! sockchatd $sname did not start"
        cat "$tmp/$sname.log"
        exit 99
    }
}

# end_pids PID...: SIGTERM, then wait at most 10 s (scaled) for them to go;
# what is left is killed with its children (timeout's server), so that no
# wait here can hang: LeakSanitizer's exit check once spun for 15 minutes
# in a namespace here (sched_yield under StopTheWorld).
end_pids() {
    for p in "$@"; do
        kill "$p" 2>/dev/null
    done
    for p in "$@"; do
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt $((100 * scale)) ]; do
            sleep 0.1
            i=$((i + 1))
        done
        if kill -0 "$p" 2>/dev/null; then
            echo "# pid $p did not exit within $((10 * scale)) s of SIGTERM: killed"
            for c in $(pgrep -P "$p"); do
                kill -KILL "$c" 2>/dev/null
            done
            kill -KILL "$p" 2>/dev/null
        fi
        wait "$p" 2>/dev/null
    done
}

stop_server() {
    eval "sp=\$pid_$1"
    end_pids "$sp"
}

# discover NS OUT [ARGS...]: sockchat --discover in NS, output in OUT.
discover() {
    dns=$1
    dout=$2
    shift 2
    nsx "$dns" timeout $((30 * scale)) "$SOCKCHAT" --discover --json "$@" \
        >"$dout" 2>"$dout.err"
}

names_in() {
    sed -n 's/.*"name":"\([^"]*\)".*/\1/p' "$1" | sort | tr '\n' ' '
}

# --- the checks ------------------------------------------------------------

B="--lan --beacon-interval 1"
start_server "$H1" alpha $B
start_server "$H2" beta $B
start_server "$H4" gamma $B

# watch NS OUT SECONDS [ARGS...]: sockchat --discover --watch --json, each
# line stamped with the ms since the start.
watch() {
    wns=$1
    wout=$2
    wsec=$3
    shift 3
    w0=$(now_ms)
    ip netns exec "$wns" timeout $((30 * scale)) "$SOCKCHAT" --discover \
        --watch --json --timeout "$wsec" "$@" 2>"$wout.err" |
        while IFS= read -r line; do
            echo "$(($(now_ms) - w0)) $line"
        done >"$wout"
}

# The latest ms at which one of NAMES... had a "new" event in OUT.
last_new() {
    f=$1
    shift
    m=0
    for nm in "$@"; do
        t=$(awk -v nm="\"name\":\"$nm\"" \
            '/"event":"new"/ && index($0, nm) { print $1; exit }' "$f")
        [ -z "$t" ] && { echo 999999; return; }
        [ "$t" -gt "$m" ] && m=$t
    done
    echo "$m"
}

# 1. A probe finds both servers within one second.
watch "$H3" "$tmp/probe1.out" 1
late=$(last_new "$tmp/probe1.out" alpha beta)
if [ "$late" -le $((1000 * scale)) ]; then
    ok "a probe finds alpha and beta within one second (${late} ms)"
else
    not_ok "a probe finds both within one second (${late} ms)" \
        "$tmp/probe1.out" "$tmp/probe1.out.err"
fi
discover "$H3" "$tmp/probe.out" --timeout 1

# 2. Seen over IPv4 and IPv6 at once: one line per server (instance id).
if [ "$(names_in "$tmp/probe.out")" = "alpha beta " ] &&
    grep '"name":"alpha"' "$tmp/probe.out" | grep -q '"address":"10.77.0.1"' &&
    [ "$(grep -c '"name":"alpha"' "$tmp/probe.out")" -eq 1 ] &&
    grep '"name":"alpha"' "$tmp/probe.out" | grep -q '"addresses":\["[^]]*fe80'
then
    ok "each server listed once though heard by IPv4 and IPv6"
else
    not_ok "dedup by instance id" "$tmp/probe.out"
fi

# 3. Listening alone finds both within one beacon interval (1 s, +20%;
# 400 ms more for the client to start on a busy machine).
watch "$H3" "$tmp/passive.out" 2 --passive
late=$(last_new "$tmp/passive.out" alpha beta)
if [ "$late" -le $((1600 * scale)) ]; then
    ok "passive listening hears alpha and beta within one interval (${late} ms)"
else
    not_ok "passive listening within one interval (last at ${late} ms)" \
        "$tmp/passive.out" "$tmp/passive.out.err"
fi

# 4. A stopped server drops out after its expiry (3 beacon periods). The
# watcher learns the period from the gap between two beacons and keeps a
# server it heard only once for 15 s (DISCOVERY_EXPIRY_DEFAULT), so beta is
# stopped only once the watcher can have heard it twice: 2.5 s (two periods
# at the most jitter, +20%, and a margin) after it listed beta. (A fixed
# 2-s wait failed once on a loaded machine: beta listed at 1.16 s, stopped
# at 2.02 s before its second beacon, and kept for 15 s.)
t0=$(now_ms)
watch "$H3" "$tmp/expire.out" 11 --passive &
wpid=$!
pids="$pids $wpid"
wait_for "grep -q '\"name\":\"beta\"' '$tmp/expire.out'"
sleep 2.5
tk=$(($(now_ms) - t0))
stop_server beta
wait "$wpid" 2>/dev/null
gone=$(awk '/"event":"gone"/ && /"name":"beta"/ { print $1; exit }' \
    "$tmp/expire.out")
if [ -n "$gone" ] && [ $((gone - tk)) -ge 1000 ] &&
    [ $((gone - tk)) -le $((5000 * scale)) ] &&
    ! grep '"event":"gone"' "$tmp/expire.out" | grep -q '"name":"alpha"'; then
    ok "a stopped server expires $((gone - tk)) ms after it stopped; alpha stays"
else
    not_ok "expiry (stopped at $tk ms, gone at ${gone:-never})" \
        "$tmp/expire.out" "$tmp/expire.out.err"
fi

# 5. A restart (new instance id, same address and port) replaces the entry.
start_server "$H2" beta $B
watch "$H3" "$tmp/restart.out" 5 --passive &
wpid=$!
pids="$pids $wpid"
sleep 2
stop_server beta
start_server "$H2" beta $B
wait "$wpid" 2>/dev/null
if grep '"event":"restart"' "$tmp/restart.out" | grep -q '"name":"beta"' &&
    ! grep '"event":"gone"' "$tmp/restart.out" | grep -q '"name":"beta"'; then
    ok "a restarted server replaces its old entry"
else
    not_ok "restart replaces" "$tmp/restart.out" "$tmp/restart.out.err"
fi

# 6. The client connects to what it discovered and chats over TCP.
discover "$H3" "$tmp/again.out" --timeout 1
url=$(grep '"name":"alpha"' "$tmp/again.out" |
    sed -n 's/.*"url":"\([^"]*\)".*/\1/p')
printf 'found you\n' | nsx "$H3" timeout $((20 * scale)) "$SOCKCHAT" \
    --batch -n finder -r lobby "${url:-none}" >"$tmp/chat.out" 2>"$tmp/chat.err"
rc=$?
if [ "$url" = "tcp://10.77.0.1:7710" ] && [ $rc -eq 0 ] &&
    grep -q '#lobby <finder> found you' "$tmp/chat.out"; then
    ok "chat over $url, the URL discovery gave"
else
    not_ok "chat over the discovered URL '$url' (rc $rc)" "$tmp/again.out" \
        "$tmp/chat.out" "$tmp/chat.err"
fi

# 7. No address and two servers, in batch mode: list them and exit 1.
nsx "$H3" timeout $((20 * scale)) "$SOCKCHAT" --batch -n nobody \
    </dev/null >"$tmp/two.out" 2>"$tmp/two.err"
rc=$?
if [ $rc -eq 1 ] && grep -q 'alpha' "$tmp/two.err" &&
    grep -q 'beta' "$tmp/two.err"; then
    ok "no address, two servers, batch: both listed, exit 1"
else
    not_ok "no address with two servers (rc $rc)" "$tmp/two.out" "$tmp/two.err"
fi

# 7b. /servers in a batch session lists what answers.
printf '/servers\n' | nsx "$H3" timeout $((20 * scale)) "$SOCKCHAT" \
    --batch -n lister tcp://10.77.0.1:7710 >"$tmp/list.out" 2>"$tmp/list.err"
rc=$?
if [ $rc -eq 0 ] && grep -q '^servers: 2 answered' "$tmp/list.out" &&
    grep -q '^  alpha  10.77.0.1  tcp:7710[,a-z0-9:]*  encryption=' \
        "$tmp/list.out" &&
    grep -q '^  beta  10.77.0.2  tcp:7710' "$tmp/list.out"; then
    ok "/servers in a batch session lists alpha and beta"
else
    not_ok "/servers in batch (rc $rc)" "$tmp/list.out" "$tmp/list.err"
fi

# 7c. Interactive, no address, two servers: pick one by name, then
# /servers in the session.
if command -v tmux >/dev/null 2>&1; then
    {
        echo "HOME='$tmp' XDG_CONFIG_HOME='$tmp/config'"
        echo "export HOME XDG_CONFIG_HOME"
        # --foreground: the client reads the terminal.
        echo "ip netns exec $H3 timeout --foreground $((60 * scale))" \
            "'$SOCKCHAT' --no-color -n picker"
        echo "echo \$? >'$tmp/pick.rc'"
        echo "exec sleep $((60 * scale))"
    } >"$tmp/pick.sh"
    T new-session -d -s pick -x 160 -y 40 "sh '$tmp/pick.sh'"
    pane() {
        T capture-pane -p -t pick >"$tmp/pick.screen" 2>/dev/null
        grep -q -- "$1" "$tmp/pick.screen"
    }
    prc=none
    if wait_for "pane 'Connect to which'"; then
        T send-keys -t pick beta Enter
        wait_for "pane '#general'" &&
            T send-keys -t pick /servers Enter &&
            wait_for "pane 'servers: 2 answered'" &&
            T send-keys -t pick /quit Enter
        wait_for "test -s '$tmp/pick.rc'" && prc=$(cat "$tmp/pick.rc")
    fi
    T capture-pane -p -t pick >"$tmp/pick.screen" 2>/dev/null
    if [ "$prc" = 0 ] && grep -q '2 servers answered' "$tmp/pick.screen" &&
        grep -q 'found beta at tcp://10.77.0.2:7710' "$tmp/pick.screen" &&
        grep -q 'servers: 2 answered' "$tmp/pick.screen"; then
        ok "interactive: picked beta by name from two, then /servers"
    else
        not_ok "interactive pick and /servers (rc $prc)" "$tmp/pick.screen"
    fi
    T kill-session -t pick >/dev/null 2>&1
else
    ok "# SKIP interactive pick: no tmux"
fi

# 8. IPv6 only: found by multicast, and reached at its link-local address
# without an address on the command line (the only server answering).
discover "$H5" "$tmp/v6.out" --timeout 1
printf 'over six\n' | nsx "$H5" timeout $((20 * scale)) "$SOCKCHAT" \
    --batch -n six -r lobby >"$tmp/v6chat.out" 2>"$tmp/v6chat.err"
rc=$?
if [ "$(names_in "$tmp/v6.out")" = "gamma " ] &&
    grep -q '"address":"fe80::[0-9a-f:]*%e0"' "$tmp/v6.out" &&
    [ $rc -eq 0 ] && grep -q '#lobby <six> over six' "$tmp/v6chat.out"; then
    ok "IPv6-only hosts: found by multicast, chat with no address given"
else
    not_ok "IPv6-only discovery and chat (rc $rc)" "$tmp/v6.out" \
        "$tmp/v6.out.err" "$tmp/v6chat.out" "$tmp/v6chat.err"
fi

# 9. A probe flood from one host: answers stay within the per-source bucket
# (burst 5, then 2 a second), bytes out within 3 times bytes in, and the
# server keeps serving chat meanwhile.
ip netns exec "$H3" timeout $((30 * scale)) "$FLOOD" flood 10.77.0.1 7711 \
    5000 >"$tmp/flood.out" 2>"$tmp/flood.err" &
fpid=$!
pids="$pids $fpid"
sleep 0.3
printf 'still here\n' | nsx "$H2" timeout $((20 * scale)) "$SOCKCHAT" \
    --batch -n during -r lobby tcp://10.77.0.1:7710 >"$tmp/during.out" \
    2>"$tmp/during.err"
crc=$?
wait "$fpid"
set -- $(cat "$tmp/flood.out") x x x x x x x x
# "sent N bytes_sent B answers A bytes_received R"
sent=$2 bsent=$4 answers=$6 brecv=$8
case "$sent$answers$bsent$brecv" in
*[!0-9]*) sent=0 ;;
esac
if [ "$sent" -gt 1000 ] && [ "$answers" -ge 1 ] && [ "$answers" -le 15 ] &&
    [ "$brecv" -le $((3 * bsent)) ] && [ $crc -eq 0 ] &&
    grep -q '#lobby <during> still here' "$tmp/during.out"; then
    ok "flood of $sent probes: $answers answers, $brecv of $bsent bytes; chat went on"
else
    not_ok "probe flood (chat rc $crc)" "$tmp/flood.out" "$tmp/flood.err" \
        "$tmp/during.out" "$tmp/during.err"
fi

# 10. Two servers in one namespace share the discovery port (--lan).
start_server "$H1" delta $B --listen tcp://0.0.0.0:7720
discover "$H3" "$tmp/shared.out" --timeout 1
if [ "$(names_in "$tmp/shared.out")" = "alpha beta delta " ]; then
    ok "two --lan servers on one host both answer"
else
    not_ok "two --lan servers on one host" "$tmp/shared.out" \
        "$tmp/shared.out.err"
fi

# 11. ... and without --lan, on loopback only (the loopback broadcast
# reaches both; a unicast probe would reach only one).
start_server "$H6" lo1 --listen tcp://127.0.0.1:7801
start_server "$H6" lo2 --listen tcp://127.0.0.1:7802
discover "$H6" "$tmp/lo.out" --timeout 1
if [ "$(names_in "$tmp/lo.out")" = "lo1 lo2 " ] &&
    grep -q 'discovery: answering probes from this host' "$tmp/lo1.log"; then
    ok "two loopback-only servers in one namespace both answer"
else
    not_ok "two loopback-only servers" "$tmp/lo.out" "$tmp/lo.out.err" \
        "$tmp/lo1.log" "$tmp/lo2.log"
fi

# 12. Nothing there: --discover says so and exits 2.
stop_server lo1
stop_server lo2
discover "$H6" "$tmp/none.out" --timeout 1
rc=$?
if [ $rc -eq 2 ] && [ ! -s "$tmp/none.out" ] &&
    grep -q 'no server answered' "$tmp/none.out.err"; then
    ok "no server: exit 2 with a reason"
else
    not_ok "no server (rc $rc)" "$tmp/none.out" "$tmp/none.out.err"
fi

# 13. Junk sent to a server's discovery port changes nothing and crashes
# nothing (the codec's cases are the unit tests'; this is the live path).
nsx "$H3" bash -c 'for i in 1 2 3 4 5 6 7 8 9 10; do
    printf "SkCd\001{\"type\":\"probe\"}" >/dev/udp/10.77.0.1/7711
    printf "hello, world" >/dev/udp/10.77.0.1/7711
    done' 2>/dev/null
discover "$H3" "$tmp/after.out" --timeout 1
if kill -0 "$pid_alpha" 2>/dev/null &&
    grep -q '"name":"alpha"' "$tmp/after.out"; then
    ok "junk datagrams: alpha still up and answering"
else
    not_ok "alpha after junk" "$tmp/after.out" "$tmp/alpha.log"
fi

# 14. Trust follows the pinned key, not the address (DHCP): epsilon is
# pinned at 10.78.0.1, then comes back with the same key at 10.78.0.9.
K=$tmp/moved.known
# csec NAME OUT TEXT [ARGS...]: a --secure batch client in H8 on file K,
# never with --accept-new unless ARGS say so.
csec() {
    cname=$1
    cout=$2
    ctext=$3
    shift 3
    printf '%s\n' "$ctext" | nsx "$H8" timeout $((20 * scale)) "$SOCKCHAT" \
        --batch --secure --known-servers "$K" -n "$cname" -r lobby "$@" \
        >"$cout" 2>"$cout.err"
}
start_server "$H7" epsilon $B
csec pinner "$tmp/pin.out" 'first here' --accept-new tcp://10.78.0.1:7710
rc=$?
fp_eps=$(sed -n 's/^10\.78\.0\.1 7710 //p' "$K" 2>/dev/null)
if [ $rc -eq 0 ] && [ -n "$fp_eps" ]; then
    ok "epsilon pinned at 10.78.0.1 port 7710"
else
    not_ok "pinning epsilon (rc $rc)" "$tmp/pin.out" "$tmp/pin.out.err"
fi
stop_server epsilon
nsx "$H7" ip addr del 10.78.0.1/24 dev e0
nsx "$H7" ip addr add 10.78.0.9/24 brd + dev e0
start_server "$H7" epsilon $B
discover "$H8" "$tmp/moved.json" --timeout 1 --known-servers "$K"
nsx "$H8" timeout $((30 * scale)) "$SOCKCHAT" --discover --timeout 1 \
    --known-servers "$K" >"$tmp/moved.txt" 2>"$tmp/moved.txt.err"
if grep '"name":"epsilon"' "$tmp/moved.json" |
    grep '"url":"tcp://10.78.0.9:7710"' | grep '"trust":"moved"' |
    grep -q '"pinned_as":{"host":"10.78.0.1","port":7710}' &&
    grep -q "^epsilon  10.78.0.9  tcp:7710.* fingerprint=$fp_eps (moved: pinned as 10.78.0.1:7710)" \
        "$tmp/moved.txt"; then
    ok "epsilon at 10.78.0.9 is listed as moved, pinned as 10.78.0.1:7710"
else
    not_ok "moved server listing" "$tmp/moved.json" "$tmp/moved.json.err" \
        "$tmp/moved.txt" "$tmp/moved.txt.err"
fi
# Named by the user, the new address is still a first use (batch: refused),
# with a hint that the key is pinned elsewhere; nothing is written.
cp "$K" "$tmp/moved.before"
csec named "$tmp/named.out" 'should not arrive' tcp://10.78.0.9:7710
rc=$?
if [ $rc -eq 3 ] && grep -q '10.78.0.9 port 7710 is a new server' \
    "$tmp/named.out.err" &&
    grep -q 'key pinned for 10.78.0.1 port 7710' "$tmp/named.out.err" &&
    cmp -s "$K" "$tmp/moved.before"; then
    ok "a typed new address with a pinned key: first use, with a hint"
else
    not_ok "direct connect to the moved server (rc $rc)" "$tmp/named.out" \
        "$tmp/named.out.err" "$K"
fi
# No address, and no --secure either: the only server answering is reached;
# its beacon claims a pinned key, so the client tries a secure session; the
# key it proves is the pinned one, so no --accept-new is needed, and the new
# address is kept.
printf '%s\n' 'moved on' | nsx "$H8" timeout $((20 * scale)) "$SOCKCHAT" \
    --batch --known-servers "$K" -n mover -r lobby \
    >"$tmp/mover.out" 2>"$tmp/mover.out.err"
rc=$?
if [ $rc -eq 0 ] && grep -q '#lobby <mover> moved on' "$tmp/mover.out" &&
    grep -q 'pinned for 10.78.0.1 port 7710.*moved' "$tmp/mover.out.err" &&
    grep -qx "10.78.0.9 7710 $fp_eps" "$K" &&
    grep -qx "10.78.0.1 7710 $fp_eps" "$K"; then
    ok "moved epsilon: secure without --secure or --accept-new; new address pinned"
else
    not_ok "connect to the moved server (rc $rc)" "$tmp/mover.out" \
        "$tmp/mover.out.err" "$K"
fi
csec direct "$tmp/direct.out" 'direct now' tcp://10.78.0.9:7710
rc=$?
if [ $rc -eq 0 ] && grep -q '#lobby <direct> direct now' "$tmp/direct.out"
then
    ok "then a direct connect to 10.78.0.9 is pinned"
else
    not_ok "direct connect to the new address (rc $rc)" "$tmp/direct.out" \
        "$tmp/direct.out.err"
fi
# Another key at a pinned address: "mismatch" wins, and the client refuses.
stop_server epsilon
start_server "$H7" zeta $B
cp "$K" "$tmp/moved.before"
discover "$H8" "$tmp/zeta.json" --timeout 1 --known-servers "$K"
csec victim "$tmp/victim.out" 'should not arrive'
rc=$?
if grep '"name":"zeta"' "$tmp/zeta.json" | grep -q '"trust":"mismatch"' &&
    [ $rc -eq 3 ] && grep -q 'CHANGED' "$tmp/victim.out.err" &&
    ! grep -q 'should not arrive' "$tmp/victim.out" &&
    cmp -s "$K" "$tmp/moved.before"; then
    ok "another key at the pinned address: mismatch, refused (exit 3)"
else
    not_ok "another key at a pinned address (rc $rc)" "$tmp/zeta.json" \
        "$tmp/victim.out" "$tmp/victim.out.err"
fi
# A beacon only claims a key. Forged beacons from an unpinned address
# announce epsilon's key; zeta there (no --lan: it answers no probe from
# H8) proves its own. The listing shows the claim; the connection refuses
# zeta as a new server.
stop_server zeta
nsx "$H7" ip addr del 10.78.0.9/24 dev e0
nsx "$H7" ip addr add 10.78.0.30/24 brd + dev e0
start_server "$H7" zeta --listen tcp://0.0.0.0:7710
forged='{"type":"beacon","name":"epsilon","instance":"0123456789abcdef0123456789abcdef","version":1,"endpoints":[{"transport":"tcp","port":7710}],"secure":"optional","fingerprint":"'$fp_eps'","users":0,"rooms":0}'
# Not through nsx: $! must be the process itself, to stop it.
ip netns exec "$H7" timeout $((10 * scale)) bash -c 'while :; do
    printf "SkCd\001%s" "$1" >/dev/udp/10.78.0.2/7711; sleep 0.1; done' \
    forge "$forged" 2>/dev/null &
gpid=$!
pids="$pids $gpid"
discover "$H8" "$tmp/forged.json" --timeout 1 --known-servers "$K"
csec fooled "$tmp/fooled.out" 'should not arrive'
rc=$?
kill "$gpid" 2>/dev/null
wait "$gpid" 2>/dev/null
if grep '"url":"tcp://10.78.0.30:7710"' "$tmp/forged.json" |
    grep -q '"trust":"moved"' && [ $rc -eq 3 ] &&
    grep -q '10.78.0.30 port 7710 is a new server' "$tmp/fooled.out.err" &&
    ! grep -q 'should not arrive' "$tmp/fooled.out" &&
    ! grep -q '^10.78.0.30 ' "$K"; then
    ok "a forged beacon claiming a pinned key gets no trust: the proven key decides"
else
    not_ok "forged moved beacon (rc $rc)" "$tmp/forged.json" \
        "$tmp/fooled.out" "$tmp/fooled.out.err" "$K"
fi

echo "1..$n"
echo "it_discovery: $n sub-checks ran, $( [ $failed -eq 0 ] && echo all passed || echo some FAILED)" >&2
exit $failed
