#!/bin/sh
# it_lossy.sh - the suites over UDP on 127.0.0.1 through tests/lossy: the
# harness starts a relay in front of every server it starts ($IT_LOSSY) and
# connects through it, so every datagram either way meets 10% loss, 5%
# duplication and 10% reordering, reproducibly (fixed seed). The tests do
# not change; only the path gets worse.
#
# test_proto_fd_setsize_server_full is skipped here by default: it opens
# 1100 connections one after the other, and through the relay their
# handshakes cost about 3 minutes of retransmission timers (250 ms, then
# 500 ms, ... per lost INIT or COOKIE), which says nothing the other tests
# do not. It runs without loss in it_udp4.sh and it_udp6.sh; IT_LOSSY_FULL=1
# runs it here too. Timeouts are stretched (IT_TIMEOUT_SCALE at least 2).
set -u

me=it_lossy
: "${IT_LOSSY:=--drop 0.10 --dup 0.05 --reorder 0.10 --seed 42}"
IT_LISTEN=udp://127.0.0.1:0
IT_SERVER_ARGS=${IT_SERVER_ARGS:-}
scale=${IT_TIMEOUT_SCALE:-1}
case "$scale" in
    ''|0|1|1.*|0.*) scale=2 ;;
esac
IT_TIMEOUT_SCALE=$scale
if [ "${IT_LOSSY_FULL:-0}" != 1 ]; then
    IT_SKIP=${IT_SKIP:-test_proto_fd_setsize_server_full}
    echo "$me: skipping $IT_SKIP (IT_LOSSY_FULL=1 runs it)"
    export IT_SKIP
fi
export me IT_LOSSY IT_LISTEN IT_SERVER_ARGS IT_TIMEOUT_SCALE
echo "$me: IT_LOSSY=\"$IT_LOSSY\" IT_TIMEOUT_SCALE=$IT_TIMEOUT_SCALE"
exec sh "$(dirname "$0")/it_run.sh"
