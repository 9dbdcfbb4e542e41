#!/bin/sh
# it_epoll.sh - the suites over TCP on 127.0.0.1 with the epoll loop backend:
# only the server's --io changes.
me=it_epoll IT_LISTEN=tcp://127.0.0.1:0 IT_SERVER_ARGS="--io epoll"
export me IT_LISTEN IT_SERVER_ARGS
exec sh "$(dirname "$0")/it_run.sh"
