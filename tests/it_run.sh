#!/bin/sh
# it_run.sh - run the black-box suites (it_proto, it_badinput) against a real
# sockchatd. The caller sets what varies and nothing else: IT_LISTEN (the
# endpoint URL), IT_SERVER_ARGS (e.g. "--io epoll") and me (a name for
# messages). The test code itself has no branch on either.
#
# make check runs the it_*.sh wrappers from the build tree with SOCKCHATD
# set (absolute). By hand: tests/it_tcp4.sh from the build tree.
set -u

: "${me:=it_run}"
: "${IT_LISTEN:=tcp://127.0.0.1:0}"
export IT_LISTEN IT_SERVER_ARGS

here=$(cd "$(dirname "$0")" && pwd)

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
    echo "== $me: $t, IT_LISTEN=$IT_LISTEN IT_SERVER_ARGS=${IT_SERVER_ARGS:-}, SOCKCHATD=$SOCKCHATD"
    "$bin" || rc=1
done
exit $rc
