#!/bin/sh
# it_udp6.sh - the suites over UDP on [::1] (port 0); skipped (77) when ::1
# is not configured. Only the endpoint URL differs from it_tcp6.sh.
me=it_udp6 IT_LISTEN='udp://[::1]:0' IT_SERVER_ARGS="${IT_SERVER_ARGS:-}"
export me IT_LISTEN IT_SERVER_ARGS

# ::1 must exist on this host (as it_tcp6.sh decides).
if [ ! -r /proc/net/if_inet6 ]; then
    echo "$me: SKIP: this host has no IPv6 (/proc/net/if_inet6 missing)"
    exit 77
fi
if [ "$(cat /proc/sys/net/ipv6/conf/lo/disable_ipv6 2>/dev/null)" = 1 ]; then
    echo "$me: SKIP: IPv6 is disabled on lo (net.ipv6.conf.lo.disable_ipv6=1)"
    exit 77
fi
if ! grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6; then
    echo "$me: SKIP: ::1 is not configured on lo"
    exit 77
fi

exec sh "$(dirname "$0")/it_run.sh"
