#!/bin/sh
# it_poll.sh - the suites over TCP on 127.0.0.1 with the poll loop backend:
# only the server's --io changes.
me=it_poll IT_LISTEN=tcp://127.0.0.1:0 IT_SERVER_ARGS="--io poll"
export me IT_LISTEN IT_SERVER_ARGS
exec sh "$(dirname "$0")/it_run.sh"
