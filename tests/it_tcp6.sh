#!/bin/sh
# it_tcp6.sh - the black-box suites (it_proto, it_badinput) against a real
# sockchatd listening on TCP [::1] with port 0; skipped (77) when ::1 is not configured.
#
# make check runs this from the build tree with SOCKCHATD set (absolute).
# By hand: tests/it_tcp6.sh from the build tree, or set SOCKCHATD.
set -u

me=it_tcp6
IT_LISTEN=tcp://[::1]:0
export IT_LISTEN

here=$(cd "$(dirname "$0")" && pwd)

# ::1 must exist on this host; a kernel without IPv6, or with IPv6 disabled
# on lo, is a reason to skip, not to fail.
if [ ! -r /proc/net/if_inet6 ]; then
    echo "$me: SKIP: this host has no IPv6 (/proc/net/if_inet6 missing)"
    exit 77
fi
if [ "$(cat /proc/sys/net/ipv6/conf/lo/disable_ipv6 2>/dev/null)" = 1 ]; then
    echo "$me: SKIP: IPv6 is disabled on lo (net.ipv6.conf.lo.disable_ipv6=1)"
    exit 77
fi
if ! grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6; then
    echo "$me: SKIP: ::1 is not configured on lo"
    exit 77
fi

# The test binaries: next to the build tree's server, next to this script,
# or under the current directory.
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
export SOCKCHATD

rc=0
for t in it_proto it_badinput; do
    bin=$(find_bin "$t") || {
        echo "$me: $t is not built" >&2
        exit 99
    }
    echo "== $me: $t, IT_LISTEN=$IT_LISTEN, SOCKCHATD=$SOCKCHATD"
    "$bin" || rc=1
done
exit $rc
