# tests/lib.sh - the scaffolding the it_*.sh client tests share. POSIX sh;
# sourced, never run. A script starts:
#
#     set -u
#     . "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
#     ... checks that may exit 77 (skip) ...
#     it_setup it_name
#
# and ends with it_done. make check exports top_srcdir (absolute, so VPATH
# builds find this file in the source tree); run by hand, the script finds
# it next to itself. Nothing here writes outside $tmp.
#
# Reads from the environment:
#   abs_top_builddir   the build tree (make check sets it); run by hand, the
#                      directory above the script's
#   SOCKCHATD          the sockchatd binary (default: server/sockchatd in
#                      the build tree)
#   SOCKCHAT           the sockchat binary (default: client/sockchat there)
#   SOCKCHATD_WRAPPER  a command to run sockchatd under (check-valgrind);
#                      empty or unset for none
#   IT_TIMEOUT_SCALE   a whole number that stretches every wait and client
#                      timeout (check-valgrind sets 10); anything else is 1
#   TMPDIR             where $tmp is made (default /tmp)
#
# Sets: builddir, wrap (SOCKCHATD_WRAPPER), scale, ct (the clients'
# --timeout, 10 s scaled), ESC (the escape byte); it_setup sets tmp, pids,
# failed and n. The functions also set name, input, fd, i, p, f and
# status as they go.
#
# A script may change these after sourcing this file:
#   wait_tenths    how long wait_for, try_server and stop_server wait when
#                  not told, in tenths of a second before scaling (100)
#   server_opts    words try_server puts before its ARGS (-q)
#   server_env     NAME=VALUE words for the servers' environment only
#                  (none)
#   server_nofile  the servers' descriptor limit, soft and hard (0: this
#                  shell's)
#
# Defines:
#   it_setup NAME          make $tmp (NAME.XXXXXX) and trap exit: on exit,
#                          close fds 3 and 4, stop the tmux server on
#                          $tmp/tmux.sock if there is one, kill every PID in
#                          $pids, wait, remove $tmp; INT/TERM/HUP exit 99
#   ok TEXT                a TAP "ok" line
#   not_ok TEXT [FILE...]  a TAP "not ok" line, then each FILE as comments;
#                          the script will exit 1
#   fail TEXT...           a "FAIL: TEXT" line, for the scripts that are not
#                          TAP; the script will exit 1
#   wait_for CMD [TENTHS]  poll CMD (eval'd) every 0.1 s for up to TENTHS
#                          (default $wait_tenths) times $scale; 1 on timeout
#   try_server NAME [ARGS...]
#                          sockchatd --port-file $tmp/NAME.port $server_opts
#                          ARGS, with $server_env and $server_nofile, its
#                          stderr in $tmp/NAME.server.err, its PID in $pids;
#                          sets $spid; 0 and $url (the port file's first
#                          line) once it listens, 1 if it exits or times out
#   start_server NAME [ARGS...]
#                          try_server, or "Bail out!" and exit 99
#   stop_server PID        SIGTERM to PID, SIGKILL if it is still there
#                          after $wait_tenths scaled; reap it
#   reap PID               wait for PID, its exit status in $status; drop it
#                          from $pids (the number may be reused)
#   run_batch NAME STDIN-TEXT [ARGS...]
#                          sockchat --timeout $ct --batch ARGS with STDIN-TEXT
#                          as input, killed after 30 s scaled; stdout,
#                          stderr and exit status in $tmp/NAME.{out,err,rc}
#   rc_of NAME             the status run_batch saved for NAME
#   start_fed NAME FD [ARGS...]
#                          sockchat --timeout $ct --batch ARGS in the
#                          background, reading the fifo $tmp/NAME.fifo whose
#                          write end this shell keeps open on fd FD (3 or
#                          4; close it to end the client's input); stdout
#                          and stderr in $tmp/NAME.{out,err}; sets $fpid
#   T ARGS...              tmux on its own socket $tmp/tmux.sock, no config
#   screen NAME            tmux pane NAME's text now, into $tmp/NAME.screen
#   last_line NAME         the last non-empty line of pane NAME
#   it_done                print the TAP plan; exit 1 if a check failed
#
# shellcheck shell=sh disable=SC2034 # its variables are for the caller

# Run by hand, the binaries of the tree the script is in.
builddir=${abs_top_builddir:-$(cd "$(dirname "$0")/.." && pwd)}
SOCKCHATD=${SOCKCHATD:-$builddir/server/sockchatd}
SOCKCHAT=${SOCKCHAT:-$builddir/client/sockchat}

# check-valgrind runs the server under a wrapper and stretches the waits.
wrap=${SOCKCHATD_WRAPPER:-}
scale=${IT_TIMEOUT_SCALE:-1}
case $scale in
'' | *[!0-9]*) scale=1 ;;
esac
ct=$((10 * scale)) # the clients' --timeout
ESC=$(printf '\033')
wait_tenths=100
server_opts=-q
server_env=
server_nofile=0

it_setup() { # NAME
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || exit 99
    pids=""
    failed=0
    n=0
    trap it_cleanup EXIT
    trap 'exit 99' INT TERM HUP
}

it_cleanup() {
    exec 3>&- 4>&- 2>/dev/null
    if [ -S "$tmp/tmux.sock" ]; then
        T kill-server >/dev/null 2>&1
    fi
    for p in $pids; do
        kill "$p" 2>/dev/null
    done
    wait 2>/dev/null
    rm -rf "$tmp"
}

ok() {
    n=$((n + 1))
    echo "ok $n - $1"
}

not_ok() {
    n=$((n + 1))
    failed=1
    echo "not ok $n - $1"
    shift
    for f in "$@"; do
        [ -f "$f" ] && sed "s|^|#   $(basename "$f"): |" "$f"
    done
    return 0
}

fail() {
    echo "FAIL: $*"
    failed=1
}

wait_for() {
    i=0
    while ! eval "$1" >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -ge $((${2:-$wait_tenths} * scale)) ] && return 1
        sleep 0.1
    done
    return 0
}

try_server() {
    name=$1
    shift
    rm -f "$tmp/$name.port"
    # The limit is set in a subshell that then becomes the server: it is
    # the server's alone, and $! is the server itself.
    # shellcheck disable=SC2086 # server_env and server_opts are word lists
    (
        if [ "${server_nofile:-0}" -gt 0 ]; then
            ulimit -n "$server_nofile" || exit 3
        fi
        exec ${server_env:+env $server_env} $wrap "$SOCKCHATD" \
            --port-file "$tmp/$name.port" $server_opts "$@"
    ) 2>"$tmp/$name.server.err" &
    spid=$!
    pids="$pids $spid"
    # A server that exits without a port file will never write one.
    wait_for "test -s '$tmp/$name.port' || ! kill -0 $spid" &&
        [ -s "$tmp/$name.port" ] || return 1
    url=$(head -n 1 "$tmp/$name.port")
}

start_server() {
    try_server "$@" && return 0
    echo "Bail out! sockchatd did not write its port file"
    cat "$tmp/$1.server.err"
    exit 99
}

stop_server() {
    kill "$1" 2>/dev/null
    # Bounded: one that outlives SIGTERM is killed, so that reap cannot hang.
    wait_for "! kill -0 $1" || kill -KILL "$1" 2>/dev/null
    reap "$1"
}

reap() {
    wait "$1" 2>/dev/null
    status=$?
    pids=$(for p in $pids; do [ "$p" = "$1" ] || printf ' %s' "$p"; done)
    return "$status"
}

run_batch() {
    name=$1
    input=$2
    shift 2
    printf '%s' "$input" | timeout $((30 * scale)) "$SOCKCHAT" --timeout "$ct" \
        --batch "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
    echo $? >"$tmp/$name.rc"
}

rc_of() {
    cat "$tmp/$1.rc"
}

start_fed() {
    name=$1
    fd=$2
    shift 2
    mkfifo "$tmp/$name.fifo" || exit 99
    "$SOCKCHAT" --timeout "$ct" --batch "$@" <"$tmp/$name.fifo" \
        >"$tmp/$name.out" 2>"$tmp/$name.err" &
    fpid=$!
    pids="$pids $fpid"
    # Opening the write end waits for the client to open the read end.
    case $fd in
    3) exec 3>"$tmp/$name.fifo" ;;
    4) exec 4>"$tmp/$name.fifo" ;;
    *)
        echo "Bail out! start_fed: fd $fd is not 3 or 4"
        exit 99
        ;;
    esac
}

T() {
    tmux -S "$tmp/tmux.sock" -f /dev/null "$@"
}

screen() {
    T capture-pane -p -t "$1" >"$tmp/$1.screen"
}

last_line() {
    screen "$1"
    awk 'NF { l = $0 } END { print l }' "$tmp/$1.screen"
}

it_done() {
    echo "1..$n"
    exit "$failed"
}
