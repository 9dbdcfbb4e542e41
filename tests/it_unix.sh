#!/bin/sh
# it_unix.sh - the suites over a UNIX-domain stream socket. The harness
# replaces @DIR@ with each server's private temporary directory, so every
# server gets a socket file of its own. Only the endpoint URL differs from
# it_tcp4.sh.
me=it_unix IT_LISTEN='unix://@DIR@/s' IT_SERVER_ARGS="${IT_SERVER_ARGS:-}"
export me IT_LISTEN IT_SERVER_ARGS
exec sh "$(dirname "$0")/it_run.sh"
