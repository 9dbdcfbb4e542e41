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
#   SOCKCHATD          the sockchatd binary (required)
#   SOCKCHAT           the sockchat binary (required)
#   SOCKCHATD_WRAPPER  a command to run sockchatd under (check-valgrind);
#                      empty or unset for none
#   IT_TIMEOUT_SCALE   a whole number that stretches every wait and client
#                      timeout (check-valgrind sets 10); anything else is 1
#   TMPDIR             where $tmp is made (default /tmp)
#
# Sets: wrap (SOCKCHATD_WRAPPER), scale, ct (the clients' --timeout, 10 s
# scaled), ESC (the escape byte); it_setup sets tmp, pids, failed and n.
# The functions also set name, input, fd, i, p and f as they go.
#
# Defines:
#   it_setup NAME          make $tmp (NAME.XXXXXX) and trap exit: on exit,
#                          close fds 3 and 4, stop the tmux server on
#                          $tmp/tmux.sock if there is one, kill every PID in
#                          $pids, wait, remove $tmp; INT/TERM/HUP exit 99
#   ok TEXT                a TAP "ok" line
#   not_ok TEXT [FILE...]  a TAP "not ok" line, then each FILE as comments;
#                          the script will exit 1
#   wait_for CMD [TENTHS]  poll CMD (eval'd) every 0.1 s for up to TENTHS
#                          (default 100) times $scale; 1 on timeout
#   try_server NAME [ARGS...]
#                          sockchatd -q --port-file $tmp/NAME.port ARGS, its
#                          stderr in $tmp/NAME.server.err, its PID in $pids;
#                          sets $spid; 0 and $url (the port file's first
#                          line) once it listens, 1 if it exits or times out
#   start_server NAME [ARGS...]
#                          try_server, or "Bail out!" and exit 99
#   stop_server PID        kill PID and reap it (bounded)
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

: "${SOCKCHATD:?set SOCKCHATD to the sockchatd binary}"
: "${SOCKCHAT:?set SOCKCHAT to the sockchat binary}"

# check-valgrind runs the server under a wrapper and stretches the waits.
wrap=${SOCKCHATD_WRAPPER:-}
scale=${IT_TIMEOUT_SCALE:-1}
case $scale in
'' | *[!0-9]*) scale=1 ;;
esac
ct=$((10 * scale)) # the clients' --timeout
ESC=$(printf '\033')

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

wait_for() {
    i=0
    while ! eval "$1" >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -ge $((${2:-100} * scale)) ] && return 1
        sleep 0.1
    done
    return 0
}

try_server() {
    name=$1
    shift
    rm -f "$tmp/$name.port"
    $wrap "$SOCKCHATD" --port-file "$tmp/$name.port" -q "$@" \
        2>"$tmp/$name.server.err" &
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
    wait_for "! kill -0 $1"
    wait "$1" 2>/dev/null
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
