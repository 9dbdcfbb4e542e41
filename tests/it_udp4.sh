#!/bin/sh
# it_udp4.sh - the suites over UDP (doc/UDP.md) on 127.0.0.1 (port 0),
# select loop. Only the endpoint URL differs from it_tcp4.sh.
me=it_udp4 IT_LISTEN=udp://127.0.0.1:0 IT_SERVER_ARGS="${IT_SERVER_ARGS:-}"
export me IT_LISTEN IT_SERVER_ARGS
exec sh "$(dirname "$0")/it_run.sh"
