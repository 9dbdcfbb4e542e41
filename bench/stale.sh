# stale.sh - sourced by the benchmark scripts (bench/compare,
# bench/transports.sh, bench/run-select.sh), after they define die().
#
# bench/loadgen and tests/lossy are built on request, not by `make`, so
# after a change to common/ a run would measure the old client and say
# nothing. stale_check refuses that. STALE_OK=1 skips it (to measure an old
# build on purpose).
#
# stale_check PROGRAM SOURCE...: die when any SOURCE that exists is newer
# than PROGRAM.
stale_check() {
    [ "${STALE_OK:-0}" = 1 ] && return 0
    sc_prog=$1
    shift
    for sc_src in "$@"; do
        if [ -e "$sc_src" ] && [ "$sc_src" -nt "$sc_prog" ]; then
            die "$sc_prog is older than $sc_src: rebuild it first (make server/sockchatd bench/loadgen tests/lossy), or set STALE_OK=1"
        fi
    done
}

# stale_check_programs: sockchatd and loadgen (and lossy when $LOSSY is
# set) against the library they link and their own sources.
stale_check_programs() {
    stale_check "$SOCKCHATD" "$(dirname "$SOCKCHATD")/../common/libsockchat.a" \
        "$top"/server/*.c
    stale_check "$LOADGEN" "$(dirname "$LOADGEN")/../common/libsockchat.a" \
        "$top/bench/loadgen.c"
    if [ -n "${LOSSY:-}" ]; then
        stale_check "$LOSSY" "$top/tests/lossy.c"
    fi
}
