#!/bin/sh
# it_faults.sh - sockchatd under resource exhaustion and injected socket
# faults (doc/RELIABILITY.md). Loopback only, every wait bounded.
#
# a0. Descriptor limit 64 (ulimit -n, soft and hard), --max-clients left at
#     1000: the server lowers --max-clients to what fits (64 - 32 reserved)
#     with one log line; 20 clients chat while 100 more connect one by one:
#     those past the places get server_full, nobody waits, the chat goes on.
# a1. accept() failing with EMFILE although --max-clients fits (other
#     descriptors held: the shim's FAULT_FD_LIMIT=64 makes accept4 fail as a
#     real limit does), the same load: the server must not spin (its CPU
#     time over 3 s stays under 10% of one core), must not die, the chat
#     must go on intact (bench/soak checks every delivery), the extra
#     clients wait in the backlog, and those still waiting get in once the
#     chatters leave.
# a2. The same limit with --max-clients 30: the 10 holders that fit are
#     welcomed, the 30 beyond get server_full, the chat goes on.
# b.  tests/faultshim.so preloaded into the server: partial sends and
#     short reads, EINTR, EAGAIN on send/sendmsg/recv, accept4 failures,
#     and a few ECONNRESETs. Every session that was not reset stays intact
#     (all messages, in order), every reset session is dropped cleanly (the
#     others see it quit with "connection reset", whether the reset met a
#     send or a recv), the server answers probes afterwards and exits 0.
#     Two seeds.
# c.  The shim makes every allocation of 256 KiB or more fail (malloc,
#     calloc, realloc; GLib's and libc's own are smaller). Four clients
#     (a perl script) make the server need such an allocation: a 600000-
#     byte frame sent in pieces (its input buffer), 30000 pings whose pongs
#     are never read (its output queue's ring), and two joins of a room
#     whose history is 60 messages of 8000 escaped bytes (the reply). Each
#     must get error server_full and be closed, a member of its room must
#     see it quit with "out of memory", and the server must log it; while
#     20 other clients chat with every delivery checked, the server stays
#     up and exits 0 on SIGTERM. Skipped without perl, and under
#     SOCKCHATD_WRAPPER (valgrind's malloc comes before the shim's).
#
# Exit 77 when bench/soak or tests/faultshim.so is not built.
set -u

# try_server, stop_server, reap, fail and the rest: tests/lib.sh.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
soak=${SOAK:-$builddir/bench/soak}
shim=${FAULTSHIM:-$builddir/tests/faultshim.so}

[ -x "$SOCKCHATD" ] || { echo "SKIP: no server at $SOCKCHATD"; exit 77; }
[ -x "$soak" ] || { echo "SKIP: bench/soak is not built (make bench/soak)"; exit 77; }
[ -f "$shim" ] || { echo "SKIP: tests/faultshim.so is not built"; exit 77; }

it_setup it_faults
XDG_CONFIG_HOME=$tmp/xdg; export XDG_CONFIG_HOME
# The servers log at their default level (the checks read the log), and
# every wait here is 5 s (scaled): starting, and stopping after SIGTERM.
server_opts=
wait_tenths=50
# a1 and b preload the shim; ASan wants its runtime first, and the shim
# does not use it.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
export ASAN_OPTIONS

# serve NAME NOFILE ARGS...: try_server with a tcp listener and
# unix://$tmp/NAME.sock before ARGS (what soak and hog.pl connect to), the
# descriptor limit NOFILE (0: unchanged) and $server_env; the PID in $pid.
# 1 if it did not start, with the tail of its log, the server killed.
serve() {
    name=$1
    server_nofile=$2
    shift 2
    rm -f "$tmp/$name.sock"
    try_server "$name" -l tcp://127.0.0.1:0 -l "unix://$tmp/$name.sock" "$@"
    started=$?
    server_nofile=0
    pid=$spid
    [ $started -eq 0 ] && return 0
    echo "the server did not start:"
    tail -5 "$tmp/$name.server.err"
    kill -KILL "$pid" 2>/dev/null
    reap "$pid"
    pid=
    return 1
}

# The server's user + system CPU time in clock ticks.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0
}

field() { # FILE LINE-PREFIX KEY
    sed -n "s/^$2:.* $3=\\([0-9]*\\).*/\\1/p" "$1" | head -1
}

# ---- a0. a hard descriptor limit below --max-clients ----------------------
echo "== a0: descriptor limit 64, 20 chatting clients, 100 more connecting"
# valgrind keeps descriptors of its own below the limit it shows the
# server, so under a wrapper the places do not come out of 64 and the
# exact counts below do not hold; a0 and a2 run in the plain and ASan
# stages, a1 (which does not depend on the real limit) runs everywhere.
if [ -n "$wrap" ]; then
    echo "SKIP a0: valgrind takes descriptors below ulimit -n 64 for itself"
elif serve fit 64; then
    "$soak" --port-file "$tmp/fit.port" --calm --clients 20 --rooms 2 \
        --seconds $((5 * scale)) --act-ms 300 --hold 100 --hold-interval 20 \
        --connect-ms 1000 --settle 0 --rss-margin-pct -1 --quiet \
        --max-wait $((40 * scale)) >"$tmp/fit.out" 2>"$tmp/fit.err"
    soak_status=$?
    cat "$tmp/fit.out"
    grep '^FAIL' "$tmp/fit.err" | head -10
    [ "$soak_status" -eq 0 ] || fail "a0: soak status $soak_status"
    grep 'lowered to 32: the hard descriptor limit is 64' \
        "$tmp/fit.server.err" ||
        fail "a0: the server did not say it lowered --max-clients"
    waiting=$(field "$tmp/fit.out" hold waiting)
    full=$(field "$tmp/fit.out" hold server_full)
    [ "${waiting:-1}" -eq 0 ] || fail "a0: $waiting clients left waiting"
    [ "${full:-0}" -gt 0 ] || fail "a0: nobody past the places got server_full"
    if grep -q 'Too many open files' "$tmp/fit.server.err"; then
        fail "a0: accept() met EMFILE although the places were fitted"
    fi
    stop_server "$pid"
    [ "$status" -eq 0 ] || fail "a0: server exit status $status"
else
    echo "SKIP a0: the server does not start with 64 descriptors here"
fi

# ---- a1. EMFILE ---------------------------------------------------------
echo "== a1: accept() meets EMFILE above descriptor 64, 20 chatting, 100 more"
server_env="LD_PRELOAD=$shim FAULT_FD_LIMIT=64 FAULT_RATE=0"
serve emfile 0
started=$?
server_env=
if [ $started -eq 0 ]; then
    "$soak" --port-file "$tmp/emfile.port" --calm --clients 20 --rooms 2 \
        --seconds $((9 * scale)) --act-ms 300 --hold 100 --hold-interval 20 \
        --connect-ms 1000 --settle 0 --rss-margin-pct -1 --quiet \
        --max-wait $((40 * scale)) >"$tmp/emfile.out" 2>"$tmp/emfile.err" &
    soak_pid=$!
    pids="$pids $soak_pid"
    # The holders are all started 1.4 s + 2 s into the run; measure after.
    sleep 4
    c0=$(cpu_ticks)
    sleep 3
    c1=$(cpu_ticks)
    hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
    reap "$soak_pid"
    soak_status=$status
    cat "$tmp/emfile.out"
    grep '^FAIL' "$tmp/emfile.err" | head -10
    echo "server CPU over 3 s: $((c1 - c0)) ticks of $hz/s"
    # soak fails a holder that the server resets or drops: past capacity a
    # client either waits (accept() meets EMFILE) or gets server_full (a
    # server that fits --max-clients to the descriptor limit).
    [ "$soak_status" -eq 0 ] || fail "a1: soak status $soak_status"
    waiting=$(field "$tmp/emfile.out" hold waiting)
    late=$(field "$tmp/emfile.out" hold late_welcome)
    full=$(field "$tmp/emfile.out" hold server_full)
    if [ "${waiting:-0}" -gt 0 ]; then
        grep -q 'accept: Too many open files' "$tmp/emfile.server.err" ||
            fail "a1: clients wait, but the server never met EMFILE"
        [ "${late:-0}" -gt 0 ] ||
            fail "a1: nobody waiting got in after descriptors were freed"
    elif [ "${full:-0}" -gt 0 ]; then
        echo "(the server capped --max-clients: the extra clients got server_full)"
    else
        fail "a1: nobody waited or was refused: the limit was not reached"
    fi
    [ $((c1 - c0)) -le $((hz * 3 / 10)) ] ||
        fail "a1: the server used $((c1 - c0)) ticks of CPU in 3 s (spinning?)"
    stop_server "$pid"
    [ "$status" -eq 0 ] || fail "a1: server exit status $status"
    lines=$(grep -c 'accept: Too many open files' "$tmp/emfile.server.err")
    echo "EMFILE log lines: $lines (rate-limited to one a second)"
else
    fail "a1: the server did not start"
fi

# ---- a2. --max-clients below the descriptor limit -------------------------
echo "== a2: descriptor limit 64, --max-clients 30, 20 chatting + 40 more"
if [ -n "$wrap" ]; then
    echo "SKIP a2: valgrind takes descriptors below ulimit -n 64 for itself"
elif serve full 64 --max-clients 30; then
    "$soak" --port-file "$tmp/full.port" --calm --clients 20 --rooms 2 \
        --seconds $((5 * scale)) --act-ms 300 --hold 40 --hold-interval 20 \
        --connect-ms 1000 --settle 0 --rss-margin-pct -1 --quiet \
        --max-wait $((40 * scale)) >"$tmp/full.out" 2>"$tmp/full.err"
    soak_status=$?
    cat "$tmp/full.out"
    grep '^FAIL' "$tmp/full.err" | head -10
    [ "$soak_status" -eq 0 ] || fail "a2: soak status $soak_status"
    welcome=$(field "$tmp/full.out" hold welcome)
    full=$(field "$tmp/full.out" hold server_full)
    [ "${welcome:-0}" -eq 10 ] || fail "a2: $welcome holders welcomed, not 10"
    [ "${full:-0}" -eq 30 ] || fail "a2: $full holders got server_full, not 30"
    stop_server "$pid"
    [ "$status" -eq 0 ] || fail "a2: server exit status $status"
else
    echo "SKIP a2: the server does not start with 64 descriptors here"
fi

# ---- b. injected faults ---------------------------------------------------
for seed in 11 12; do
    echo "== b: faultshim seed $seed: 30% soft faults, up to 6 resets"
    rm -f "$tmp/faults.log" "$tmp/stop"
    server_env="LD_PRELOAD=$shim FAULT_SEED=$seed FAULT_RATE=0.3
        FAULT_RESET=0.001 FAULT_MAX_RESETS=6 FAULT_ACCEPT=0.3
        FAULT_LOG=$tmp/faults.log FAULT_STOP_FILE=$tmp/stop"
    serve shim 0 -l udp://127.0.0.1:0 --rate 0
    started=$?
    server_env=
    [ $started -eq 0 ] || { fail "b: the server did not start"; continue; }
    "$soak" --port-file "$tmp/shim.port" --calm --tolerate-resets \
        --clients 40 --rooms 2 --seconds $((8 * scale)) --act-ms 150 \
        --seed "$seed" --fault-stop-file "$tmp/stop" --settle 0 \
        --rss-margin-pct -1 --quiet --max-wait $((40 * scale)) \
        >"$tmp/shim.out" 2>"$tmp/shim.err"
    soak_status=$?
    cat "$tmp/shim.out"
    grep '^FAIL' "$tmp/shim.err" | head -10
    stop_server "$pid"
    [ "$soak_status" -eq 0 ] || fail "b$seed: soak status $soak_status"
    [ "$status" -eq 0 ] || fail "b$seed: server exit status $status"
    resets=$(grep -c '^reset ' "$tmp/faults.log" 2>/dev/null)
    hits=$(field "$tmp/shim.out" checks hits)
    summary=$(grep '^summary ' "$tmp/faults.log" 2>/dev/null | tail -1)
    echo "shim: $summary"
    echo "resets injected: ${resets:-0}, sessions the soak saw reset: ${hits:-?}"
    [ "${resets:-0}" -gt 0 ] || fail "b$seed: no reset was injected"
    [ "${resets:-0}" = "${hits:-x}" ] ||
        fail "b$seed: $resets resets injected but $hits sessions ended"
    # The others are told why: a reset met while sending is a reset too,
    # not an orderly close.
    said=$(grep -c 'left: connection reset$' "$tmp/shim.server.err")
    [ "$said" = "${resets:-0}" ] ||
        fail "b$seed: $resets resets injected but $said quits say \"connection reset\""
    for k in partial eintr eagain accept; do
        n=$(echo "$summary" | sed -n "s/.* $k=\\([0-9]*\\).*/\\1/p")
        [ "${n:-0}" -gt 0 ] || fail "b$seed: no $k fault was injected"
    done
done

# ---- c. allocation failure --------------------------------------------------
echo "== c: allocations of 256 KiB or more fail; 4 clients need them, 20 chat"
started=skip
if ! command -v perl >/dev/null 2>&1; then
    echo "SKIP c: no perl for the clients that make the server allocate"
elif [ -n "$wrap" ]; then
    # valgrind preloads its own malloc ahead of the shim's: nothing fails.
    echo "SKIP c: under $wrap the shim cannot make malloc fail"
else
    cat >"$tmp/hog.pl" <<'PERL'
# hog.pl PORT-FILE: clients whose traffic makes sockchatd allocate large
# buffers (tests/it_faults.sh c). Prints one line per client with what
# ended its session, then the watcher's view. Loopback and unix only.
use strict;
use warnings;
use Fcntl;
use Socket;

$SIG{PIPE} = 'IGNORE';

my ($portfile) = @ARGV;
my ($tcp_port, $unix_path);
open(my $pf, '<', $portfile) or die "cannot read $portfile: $!";
while (<$pf>) {
    $tcp_port = $1 if !defined $tcp_port && m{^tcp://127\.0\.0\.1:(\d+)};
    $unix_path = $1 if !defined $unix_path && m{^unix://(/\S+)};
}
close $pf;
die "no tcp or unix endpoint in $portfile\n"
    unless defined $tcp_port && defined $unix_path;

my %rx; # socket -> bytes read and not yet framed

sub conn {
    my ($kind, $rcvbuf) = @_;
    my $s;
    if ($kind eq 'unix') {
        socket($s, PF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
        connect($s, pack_sockaddr_un($unix_path)) or die "connect: $!";
    } else {
        socket($s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
        setsockopt($s, SOL_SOCKET, SO_RCVBUF, pack('i', $rcvbuf)) if $rcvbuf;
        connect($s, pack_sockaddr_in($tcp_port, inet_aton('127.0.0.1')))
            or die "connect: $!";
    }
    binmode $s;
    fcntl($s, F_SETFL, fcntl($s, F_GETFL, 0) | O_NONBLOCK) or die "fcntl: $!";
    $rx{$s} = '';
    return $s;
}

sub writable {
    my ($s, $secs) = @_;
    my $win = '';
    vec($win, fileno($s), 1) = 1;
    return select(undef, $win, undef, $secs) > 0;
}

# Write all of $bytes; 0 if the stream fails or takes nothing for $secs
# (default 5).
sub put {
    my ($s, $bytes, $secs) = @_;
    my $off = 0;
    while ($off < length $bytes) {
        my $n = syswrite($s, $bytes, length($bytes) - $off, $off);
        if (defined $n) {
            $off += $n;
        } elsif (!$!{EAGAIN} || !writable($s, $secs // 5)) {
            return 0;
        }
    }
    return 1;
}

sub frame { return pack('N', length $_[0]) . $_[0] }

sub readable {
    my ($s, $secs) = @_;
    my $rin = '';
    vec($rin, fileno($s), 1) = 1;
    return select($rin, undef, undef, $secs) > 0;
}

# The next frame's JSON text; '' at end of stream, undef on timeout.
sub next_frame {
    my ($s, $secs) = @_;
    my $end = time + $secs;
    for (;;) {
        if (length $rx{$s} >= 4) {
            my $n = unpack('N', $rx{$s});
            if (length $rx{$s} >= 4 + $n) {
                my $f = substr($rx{$s}, 4, $n);
                $rx{$s} = substr($rx{$s}, 4 + $n);
                return $f;
            }
        }
        my $left = $end - time;
        return undef if $left <= 0 || !readable($s, $left);
        my $n = sysread($s, my $chunk, 65536);
        next if !defined $n && $!{EAGAIN};
        return '' if !defined $n || $n == 0;
        $rx{$s} .= $chunk;
    }
}

sub field {
    my ($json, $key) = @_;
    return $json =~ /"\Q$key\E":"((?:[^"\\]|\\.)*)"/ ? $1 : '';
}

# Frames until one of type $type; undef if the stream ends or stalls.
sub expect_type {
    my ($s, $type, $secs) = @_;
    for (;;) {
        my $f = next_frame($s, $secs);
        return undef if !defined $f || $f eq '';
        return $f if field($f, 'type') eq $type;
    }
}

# Read to the end of the stream: the code of the last error seen, or
# "none", or "stalled".
sub ending {
    my ($s, $secs) = @_;
    my $code = 'none';
    for (;;) {
        my $f = next_frame($s, $secs);
        return 'stalled' unless defined $f;
        last if $f eq '';
        $code = field($f, 'code') if field($f, 'type') eq 'error';
    }
    close $s;
    return $code;
}

sub hello {
    my ($nick, $kind, $rcvbuf) = @_;
    my $s = conn($kind, $rcvbuf);
    put($s, frame(qq({"type":"hello","version":1,"nick":"$nick"})));
    expect_type($s, 'welcome', 5) or die "$nick: no welcome\n";
    return $s;
}

sub join_hog {
    my ($s) = @_;
    put($s, frame(q({"type":"join","room":"#hog"})));
    return expect_type($s, 'room', 5);
}

my @quits; # what the watcher saw: nick=reason
sub watch {
    my ($w, $secs) = @_;
    while (defined(my $f = next_frame($w, $secs))) {
        last if $f eq '';
        push @quits, field($f, 'nick') . '=' . field($f, 'reason')
            if field($f, 'type') eq 'quit';
    }
}

my $w = hello('hogwatch', 'tcp');
join_hog($w) or die "watcher: no room\n";

# 1. A frame of 600000 bytes sent in pieces: the server keeps the partial
# frame in the client's input buffer, which doubles as it fills.
my $a = hello('hogframe', 'tcp');
join_hog($a) or die "hogframe: no room\n";
put($a, pack('N', 600000));
for (my $sent = 0; $sent < 600000 && !readable($a, 0.02); $sent += 15000) {
    last unless put($a, 'x' x 15000);
}
print "hogframe: ", ending($a, 5), "\n";
watch($w, 0.5);

# 2. A client that sends pings and does not read the pongs: its output
# queue grows by one entry per pong. Its writes stop once the server,
# having dropped it, no longer reads; then it reads to the end.
$a = hello('hogqueue', 'unix');
join_hog($a) or die "hogqueue: no room\n";
my $id = 'i' x 60;
my $ping = frame(qq({"type":"ping","id":"$id","token":"t") . ('t' x 60) . '"}');
my $burst = $ping x 200;
for (1 .. 150) {
    last unless put($a, $burst, 0.3);
}
print "hogqueue: ", ending($a, 10), "\n";
watch($w, 0.5);

# 3. A room history of large messages, then two clients join it: each
# join's reply (the history) is one large frame.
my $text = '\\\\' x 4000; # 4000 backslashes, escaped twice on the wire
for my $k (1 .. 60) {
    put($w, frame(qq({"type":"say","room":"#hog","text":"$text"})));
    for (;;) {
        my $f = next_frame($w, 5);
        die "watcher: no echo of say $k\n" if !defined $f || $f eq '';
        last if field($f, 'type') eq 'message';
    }
}
for my $nick ('hogjoin1', 'hogjoin2') {
    $a = hello($nick, 'tcp');
    put($a, frame(q({"type":"join","room":"#hog"})));
    print "$nick: ", ending($a, 5), "\n";
}
watch($w, 0.5);

# The watcher is still served.
put($w, frame(q({"type":"ping","token":"alive"})));
print "watcher: ", (expect_type($w, 'pong', 5) ? 'alive' : 'lost'), "\n";
watch($w, 0.2);
print "quits: ", join(' ', sort @quits), "\n";
put($w, frame(q({"type":"quit"})));
close $w;
PERL
    rm -f "$tmp/allocs.log" "$tmp/start" "$tmp/stop"
    server_env="LD_PRELOAD=$shim FAULT_MALLOC=1 FAULT_MALLOC_MIN=262144
        FAULT_START_FILE=$tmp/start FAULT_STOP_FILE=$tmp/stop
        FAULT_LOG=$tmp/allocs.log"
    # --rate 0 for the pings, a frame and a queue that may grow past the
    # failing size; the shim waits for the start file, so that the server
    # starts cleanly.
    serve nomem 0 --rate 0 --max-frame 1048576 --max-queue 8388608
    started=$?
    server_env=
fi
if [ "$started" = skip ]; then
    : # said above
elif [ "$started" -ne 0 ]; then
    fail "c: the server did not start"
else
    touch "$tmp/start"
    "$soak" --port-file "$tmp/nomem.port" --calm --clients 20 --rooms 2 \
        --seconds $((8 * scale)) --act-ms 150 --seed 13 \
        --fault-stop-file "$tmp/stop" --settle 0 --rss-margin-pct -1 \
        --quiet --max-wait $((40 * scale)) \
        >"$tmp/nomem.out" 2>"$tmp/nomem.err" &
    soak_pid=$!
    pids="$pids $soak_pid"
    sleep 1
    perl "$tmp/hog.pl" "$tmp/nomem.port" >"$tmp/hog.out" 2>"$tmp/hog.err"
    hog_status=$?
    [ -e "$tmp/stop" ] &&
        fail "c: the soak ended before the clients that need memory did"
    reap "$soak_pid"
    soak_status=$status
    cat "$tmp/nomem.out"
    grep '^FAIL' "$tmp/nomem.err" | head -10
    cat "$tmp/hog.out" "$tmp/hog.err"
    stop_server "$pid"
    [ "$soak_status" -eq 0 ] || fail "c: soak status $soak_status"
    if [ "$status" -ne 0 ]; then
        fail "c: server exit status $status"
        tail -2 "$tmp/nomem.server.err"
    fi
    [ "$hog_status" -eq 0 ] || fail "c: hog.pl status $hog_status"
    for who in hogframe hogqueue hogjoin1 hogjoin2; do
        grep -q "^$who: server_full\$" "$tmp/hog.out" ||
            fail "c: $who did not end with error server_full"
        grep -q "^quits:.* $who=out of memory" "$tmp/hog.out" ||
            fail "c: its room did not see $who quit with \"out of memory\""
    done
    grep -q '^watcher: alive$' "$tmp/hog.out" ||
        fail "c: the member that saw them go was not served afterwards"
    drops=$(grep -c 'out of memory for its' "$tmp/nomem.server.err")
    left=$(grep -c 'left: out of memory$' "$tmp/nomem.server.err")
    failed_allocs=$(grep -c '^nomem ' "$tmp/allocs.log" 2>/dev/null)
    summary=$(grep '^summary ' "$tmp/allocs.log" 2>/dev/null | tail -1)
    echo "shim: $summary"
    echo "allocations failed: $failed_allocs, clients dropped: $drops" \
        "(seen to leave: $left)"
    grep 'out of memory for its' "$tmp/nomem.server.err"
    [ "$drops" -eq 4 ] || fail "c: $drops clients dropped for memory, not 4"
    [ "$left" -eq 4 ] || fail "c: $left quits for memory logged, not 4"
    [ "$failed_allocs" -ge 4 ] || fail "c: only $failed_allocs allocations failed"
fi

[ $failed -eq 0 ] && echo "PASS" || echo "FAILED"
exit $failed
