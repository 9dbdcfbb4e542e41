#!/bin/sh
# it_tcp4.sh - the suites over TCP on 127.0.0.1 (port 0), select loop.
me=it_tcp4 IT_LISTEN=tcp://127.0.0.1:0 IT_SERVER_ARGS="${IT_SERVER_ARGS:-}"
export me IT_LISTEN IT_SERVER_ARGS
exec sh "$(dirname "$0")/it_run.sh"
