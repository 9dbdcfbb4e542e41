#!/bin/sh
# it_valgrind.sh - the black-box suites (it_proto, it_badinput) once, with
# every sockchatd run under valgrind. Any memory error or definite/indirect
# leak makes valgrind exit 99; the harness reports every server's exit status
# (IT_STATUS_LOG) and this script fails if any was 99 (or not 0).
set -u

me=it_valgrind
here=$(cd "$(dirname "$0")" && pwd)

if ! command -v valgrind >/dev/null 2>&1; then
    echo "$me: SKIP: valgrind is not installed"
    exit 77
fi

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

status_log=$(mktemp "${TMPDIR:-/tmp}/sockchat-it-status.XXXXXX") || exit 99
trap 'rm -f "$status_log"' EXIT INT TERM

SOCKCHATD_WRAPPER="valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect -q"
IT_TIMEOUT_SCALE=10
IT_LISTEN=${IT_LISTEN:-tcp://127.0.0.1:0}
IT_STATUS_LOG=$status_log
export SOCKCHATD SOCKCHATD_WRAPPER IT_TIMEOUT_SCALE IT_LISTEN IT_STATUS_LOG

rc=0
for t in it_proto it_badinput; do
    bin=$(find_bin "$t") || {
        echo "$me: $t is not built" >&2
        exit 99
    }
    echo "== $me: $t, IT_LISTEN=$IT_LISTEN, under valgrind"
    "$bin" || rc=1
done

runs=$(wc -l <"$status_log")
if [ "$runs" -eq 0 ]; then
    echo "$me: no server run was recorded" >&2
    exit 99
fi
bad=$(awk '$2 == 99' "$status_log" | wc -l)
other=$(awk '$2 != 0 && $2 != 99' "$status_log" | wc -l)
echo "$me: $runs server runs, $bad with valgrind errors (status 99), $other with another non-zero status"
if [ "$bad" -ne 0 ] || [ "$other" -ne 0 ]; then
    awk '$2 != 0 { print "  pid " $1 ": status " $2 }' "$status_log"
    rc=1
fi
exit $rc
