#!/bin/sh
# soak.sh - run bench/soak against a fresh sockchatd on this machine.
#
#   bench/soak.sh                          # 500 clients, 300 s, plain build
#   bench/soak.sh --seconds 60 --mode asan # ASan+UBSan+LSan build of the server
#   bench/soak.sh --seconds 60 --mode valgrind --clients 200
#   bench/soak.sh --seconds 30 -- --act-ms 500   # after --: options of bench/soak
#
# The server listens on tcp://127.0.0.1:0, udp://127.0.0.1:0 and
# unix://<tmpdir>/s (loopback only) and is stopped with SIGTERM at the end:
# it must exit 0. --mode asan builds a scratch copy of the tree (make distdir,
# ./configure --enable-sanitizers) in $SOAK_ASAN_DIR (default
# $TMPDIR/sockchat-soak-asan) once, and fails on any sanitizer report in the
# server's stderr. --mode valgrind runs the server under memcheck with
# --leak-check=full and fails on any error or definite/indirect leak. The
# VmRSS check only means something for --mode plain; the other modes report
# VmRSS without judging it. Everything the run leaves is in $SOAK_KEEP (a new
# temporary directory unless set): server.log, soak.out, valgrind.log.
#
# Exit status: 0 pass, 1 a check failed, 2 setup error, 77 a tool is missing.
set -u

mode=plain
seconds=300
clients=500
seed=1
here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/.." && pwd)
builddir=${abs_top_builddir:-$srcdir}

while [ $# -gt 0 ]; do
    case $1 in
    --mode) mode=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done

case $mode in
plain|asan|valgrind) ;;
*) echo "soak.sh: --mode is plain, asan or valgrind" >&2; exit 2 ;;
esac

keep=${SOAK_KEEP:-}
if [ -z "$keep" ]; then
    keep=$(mktemp -d "${TMPDIR:-/tmp}/soak.XXXXXX") || exit 2
fi
mkdir -p "$keep" || exit 2
server_pid=

cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null
    fi
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP

# bench/soak: `make bench/soak` when the Makefile knows it, else compiled
# here against common/libsockchat.a.
soak=${SOAK:-$builddir/bench/soak}
if [ ! -x "$soak" ]; then
    (cd "$builddir" && make -s bench/soak) >/dev/null 2>&1
fi
if [ ! -x "$soak" ]; then
    (cd "$builddir" && make -s common/libsockchat.a) || exit 2
    soak=$keep/soak
    ${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -g -I"$srcdir/common" -I"$builddir" \
        $(pkg-config --cflags glib-2.0 libcjson libsodium) \
        "$srcdir/bench/soak.c" -o "$soak" "$builddir/common/libsockchat.a" \
        $(pkg-config --libs glib-2.0 libcjson libsodium) || exit 2
fi

server=${SOCKCHATD:-$builddir/server/sockchatd}
wrapper=
scale=1
case $mode in
asan)
    asan_dir=${SOAK_ASAN_DIR:-${TMPDIR:-/tmp}/sockchat-soak-asan}
    if [ ! -x "$asan_dir/server/sockchatd" ]; then
        echo "soak.sh: building an ASan copy of the tree in $asan_dir" >&2
        rm -rf "$asan_dir.tmp" && mkdir -p "$asan_dir.tmp" || exit 2
        (cd "$builddir" && make -s distdir distdir="$asan_dir.tmp/src") \
            >"$keep/asan-build.log" 2>&1 || { tail "$keep/asan-build.log"; exit 2; }
        (cd "$asan_dir.tmp/src" && ./configure --enable-sanitizers \
            --disable-tests && make -s server/sockchatd) \
            >>"$keep/asan-build.log" 2>&1 || { tail "$keep/asan-build.log"; exit 2; }
        rm -rf "$asan_dir" && mv "$asan_dir.tmp/src" "$asan_dir" &&
            rm -rf "$asan_dir.tmp" || exit 2
    fi
    server=$asan_dir/server/sockchatd
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=99}
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    export ASAN_OPTIONS UBSAN_OPTIONS
    scale=3
    ;;
valgrind)
    command -v valgrind >/dev/null 2>&1 ||
        { echo "soak.sh: valgrind is not installed" >&2; exit 77; }
    wrapper="valgrind -q --error-exitcode=99 --leak-check=full
        --errors-for-leak-kinds=definite,indirect
        --show-leak-kinds=definite,indirect --log-file=$keep/valgrind.log"
    scale=20
    ;;
esac

sock=$keep/s
ports=$keep/ports
rm -f "$ports" "$sock"
XDG_CONFIG_HOME=$keep/xdg; export XDG_CONFIG_HOME
# A queue cap of 256 KiB lets the clients that never read reach it within
# minutes; the idle timeout of 30 s lets the server find the silent ones.
$wrapper "$server" -l tcp://127.0.0.1:0 -l udp://127.0.0.1:0 \
    -l "unix://$sock" --port-file "$ports" --max-queue 262144 \
    --idle-timeout 30 2>"$keep/server.log" &
server_pid=$!
i=0
while [ ! -s "$ports" ]; do
    i=$((i + 1))
    if [ $i -gt $((100 * scale)) ] || ! kill -0 "$server_pid" 2>/dev/null; then
        echo "soak.sh: the server did not start" >&2
        tail -5 "$keep/server.log" >&2
        exit 2
    fi
    sleep 0.1
done

# Heap figures (plain mode, when gdb can attach): malloc_stats() bytes in
# use, idle and after the run, and VmRSS after malloc_trim(0). They tell
# memory the server still holds from memory glibc keeps for reuse.
heap_in_use() {
    for try in 1 2; do
        before=$(wc -l <"$keep/server.log")
        gdb -p "$server_pid" -batch -ex 'call (void)malloc_stats()' \
            >>"$keep/gdb.log" 2>&1
        sleep 0.2
        v=$(tail -n +$((before + 1)) "$keep/server.log" |
            awk '/Total \(incl. mmap\)/ {t = 1} t && /in use bytes/ {print $NF; exit}')
        [ -n "$v" ] && { echo "$v"; return 0; }
    done
    return 1
}
heap=no
if [ "$mode" = plain ] && [ "${SOAK_HEAP_STATS:-1}" != 0 ] &&
    command -v gdb >/dev/null 2>&1; then
    heap_idle=$(heap_in_use) && [ -n "$heap_idle" ] && heap=yes
fi

rss_args=
[ "$mode" = plain ] || rss_args="--rss-margin-pct -1"
echo "soak.sh: mode $mode, $clients clients, $seconds s, results in $keep" >&2
"$soak" --port-file "$ports" --clients "$clients" --seconds "$seconds" \
    --seed "$seed" --server-pid "$server_pid" $rss_args "$@" \
    >"$keep/soak.out" 2>"$keep/soak.err"
soak_status=$?
cat "$keep/soak.out"
grep '^FAIL' "$keep/soak.err" | head -20

if [ $heap = yes ] && kill -0 "$server_pid" 2>/dev/null; then
    heap_after=$(heap_in_use)
    gdb -p "$server_pid" -batch -ex 'call (int)malloc_trim(0)' \
        >>"$keep/gdb.log" 2>&1
    rss_trim=$(awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status")
    echo "heap: in_use_idle_bytes=$heap_idle in_use_after_bytes=$heap_after rss_after_malloc_trim_kb=$rss_trim"
fi

# SIGTERM: bye to everyone and exit 0 (within a second, plain builds).
t_kill=$(date +%s%N)
kill -TERM "$server_pid"
i=0
while kill -0 "$server_pid" 2>/dev/null && [ $i -lt $((100 * scale)) ]; do
    sleep 0.05
    i=$((i + 1))
done
if kill -0 "$server_pid" 2>/dev/null; then
    echo "soak.sh: the server did not exit after SIGTERM" >&2
    kill -KILL "$server_pid"
fi
wait "$server_pid"
server_status=$?
server_pid=
t_exit=$(date +%s%N)
echo "server: exit=$server_status after SIGTERM in $(((t_exit - t_kill) / 1000000)) ms"

status=$soak_status
[ "$server_status" -eq 0 ] || status=1
case $mode in
asan)
    if grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: ' \
        "$keep/server.log" >/dev/null; then
        echo "sanitizers: REPORTS (see $keep/server.log)"
        grep -E -A20 'ERROR: (Address|Leak)Sanitizer|runtime error:' \
            "$keep/server.log" | head -60
        status=1
    else
        echo "sanitizers: no report (ASan, UBSan, LeakSanitizer at exit)"
    fi
    ;;
valgrind)
    if [ -s "$keep/valgrind.log" ]; then
        echo "valgrind: REPORTS (see $keep/valgrind.log)"
        head -60 "$keep/valgrind.log"
        status=1
    else
        echo "valgrind: no error, no definite or indirect leak"
    fi
    ;;
esac
echo "soak.sh: $( [ $status -eq 0 ] && echo PASS || echo FAIL ) (results in $keep)"
exit $status
