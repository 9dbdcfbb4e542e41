#!/bin/sh
# it_secure.sh - secure sessions (doc/SECURE.md) end to end:
#   1. the whole black-box suites (it_proto, it_badinput) with IT_SECURE=1:
#      every harness connection does the handshake, then every frame both
#      ways is sealed; over every transport: tcp and udp on 127.0.0.1 and
#      on [::1] (if configured), and a unix socket. The secure layer sits on
#      the byte stream, so only the endpoint URL changes;
#   2. it_secure: the tests that only make sense with encryption (man in the
#      middle, tampering, replay, policies, reserved nicks, key files).
# IT_SERVER_ARGS (e.g. "--io epoll") and SOCKCHATD_WRAPPER pass through.
set -u

me=it_secure
here=$(cd "$(dirname "$0")" && pwd)

find_bin() {
    for d in ${abs_top_builddir:+"$abs_top_builddir/tests"} \
        ${SOCKCHATD:+"$(dirname "$(dirname "$SOCKCHATD")")/tests"} \
        "$here" "$PWD/tests"; do
        if [ -x "$d/$1" ]; then
            echo "$d/$1"
            return 0
        fi
    done
    return 1
}

if [ -z "${SOCKCHATD:-}" ]; then
    for c in ${abs_top_builddir:+"$abs_top_builddir/server/sockchatd"} \
        "$here/../server/sockchatd" "$PWD/server/sockchatd"; do
        if [ -x "$c" ]; then
            SOCKCHATD=$(cd "$(dirname "$c")" && pwd)/sockchatd
            break
        fi
    done
fi
if [ -z "${SOCKCHATD:-}" ] || [ ! -x "$SOCKCHATD" ]; then
    echo "$me: sockchatd not found (set SOCKCHATD to its absolute path)" >&2
    exit 99
fi
bin=$(find_bin it_secure) || {
    echo "$me: it_secure is not built" >&2
    exit 99
}
IT_SECURE=1
IT_SERVER_ARGS=${IT_SERVER_ARGS:-}
export SOCKCHATD IT_SECURE IT_SERVER_ARGS

rc=0
me=it_secure_tcp4 IT_LISTEN=tcp://127.0.0.1:0 sh "$here/it_run.sh" || rc=1
me=it_secure_udp4 IT_LISTEN=udp://127.0.0.1:0 sh "$here/it_run.sh" || rc=1
me=it_secure_unix IT_LISTEN='unix://@DIR@/s' sh "$here/it_run.sh" || rc=1
# [::1] too when this host has it (as it_tcp6.sh decides)
if [ -r /proc/net/if_inet6 ] &&
    [ "$(cat /proc/sys/net/ipv6/conf/lo/disable_ipv6 2>/dev/null)" != 1 ] &&
    grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6; then
    me=it_secure_tcp6 IT_LISTEN='tcp://[::1]:0' sh "$here/it_run.sh" || rc=1
    me=it_secure_udp6 IT_LISTEN='udp://[::1]:0' sh "$here/it_run.sh" || rc=1
else
    echo "$me: no ::1 on this host: the [::1] runs are skipped"
fi

echo "== $me: it_secure, SOCKCHATD=$SOCKCHATD"
IT_LISTEN=tcp://127.0.0.1:0 "$bin" || rc=1
exit $rc
