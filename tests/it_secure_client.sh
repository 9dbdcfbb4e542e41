#!/bin/sh
# it_secure_client.sh - the sockchat client's secure sessions against a real
# sockchatd (doc/SECURE.md): sealed batch post and receive, trust on first
# use and its known-servers file, a changed server key refused, no secure
# session offered, a server that requires one, client.conf, the client's
# own key, and an interactive first use (tmux, when installed).
#
# Run by `make check` with SOCKCHATD and SOCKCHAT set to the binaries. Every
# server listens on 127.0.0.1; every wait is bounded; everything started
# here is stopped by its PID on exit. HOME and XDG_CONFIG_HOME point into a
# temporary directory, so that no file of the user's is read or written.
# Exits 77 (skipped) when sockchatd has no --secure.
set -u

# ok, not_ok, wait_for, start_server, run_batch and the rest: tests/lib.sh.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

if ! "$SOCKCHATD" --help 2>&1 | grep -q -- --secure; then
    echo "SKIP: this sockchatd offers no secure sessions (no --secure)"
    exit 77
fi

it_setup it_secure_client

HOME=$tmp/home
XDG_CONFIG_HOME=$tmp/home/config
export HOME XDG_CONFIG_HOME
unset NO_COLOR TMUX
mkdir -p "$HOME" || exit 99
conf=$XDG_CONFIG_HOME/sockchat
known=$tmp/known_servers

# host_port URL: "127.0.0.1 40211", as the known-servers file keys it.
host_port() {
    echo "$1" | sed -e 's|^tcp://||' -e 's|:\([0-9]*\)$| \1|'
}

# The key of a server, from the key file it was started with.
fingerprint() { # KEYFILE
    "$SOCKCHATD" --fingerprint --identity "$1" 2>/dev/null
}

# --- command line --------------------------------------------------------

"$SOCKCHAT" --help >"$tmp/help.out" 2>&1
if grep -q -- '--secure' "$tmp/help.out" &&
    grep -q -- '--accept-new' "$tmp/help.out" &&
    grep -q -- '--known-servers' "$tmp/help.out" &&
    grep -q -- '--no-identity' "$tmp/help.out" &&
    grep -q 'client.conf' "$tmp/help.out"; then
    ok "--help documents --secure, --accept-new, --identity, --known-servers and client.conf"
else
    not_ok "--help documents the secure options" "$tmp/help.out"
fi

"$SOCKCHAT" --batch --identity "$tmp/x.key" --no-identity 127.0.0.1:1 \
    </dev/null >"$tmp/idboth.out" 2>&1
[ $? -eq 1 ] && grep -q contradict "$tmp/idboth.out" &&
    ok "--identity with --no-identity exits 1" ||
    not_ok "--identity with --no-identity exits 1" "$tmp/idboth.out"

# --- a server offering secure sessions -----------------------------------

start_server a --listen tcp://127.0.0.1:0 --identity "$tmp/server_a.key"
a_url=$url
a_pid=$spid
a_fp=$(fingerprint "$tmp/server_a.key")
hp=$(host_port "$a_url")
case $a_fp in
SHA256:*) ;;
*)
    echo "Bail out! sockchatd --fingerprint gave '$a_fp'"
    exit 99
    ;;
esac

# Batch mode asks nobody: a new server needs --accept-new.
run_batch new "never sent
" --secure --known-servers "$known" -n newbie -r ops "$a_url"
if [ "$(rc_of new)" -eq 3 ] && grep -q -- '--accept-new' "$tmp/new.err" &&
    grep -q -F "$a_fp" "$tmp/new.err" && ! test -e "$known"; then
    ok "a new server in batch mode without --accept-new: exit 3, says how, records nothing"
else
    not_ok "new server without --accept-new: exit 3 (got $(rc_of new))" \
        "$tmp/new.err" "$known"
fi

# First use with --accept-new: a --json listener, which records the key.
start_fed listen 3 --json --secure --accept-new --known-servers "$known" \
    -n listener -r ops "$a_url"
lpid=$fpid
if wait_for "grep -q '\"type\":\"room\"' '$tmp/listen.out'"; then
    ok "a --secure --json listener is welcomed and joins #ops"
else
    not_ok "a --secure --json listener joins #ops" "$tmp/listen.out" \
        "$tmp/listen.err"
fi
if [ "$(grep -c -v '^#' "$known" 2>/dev/null)" = 1 ] &&
    grep -q -x -F "$hp $a_fp" "$known" &&
    grep -q -F "remembered $(echo "$hp" | sed 's/ / port /') with key $a_fp" \
        "$tmp/listen.err"; then
    ok "first use with --accept-new records '$hp SHA256:...' and says so"
else
    not_ok "first use records the fingerprint" "$known" "$tmp/listen.err"
fi
if grep -q '"features":\[[^]]*"secure"' "$tmp/listen.out"; then
    ok "welcome (decrypted, as received) lists the secure feature"
else
    not_ok "welcome lists secure" "$tmp/listen.out"
fi

# The client's own key: made on first use of --secure, mode 0600.
if [ -f "$conf/identity.key" ] &&
    [ "$(ls -l "$conf/identity.key" | cut -c1-10)" = "-rw-------" ]; then
    ok "--secure made \$XDG_CONFIG_HOME/sockchat/identity.key, mode 0600"
else
    not_ok "identity key made, mode 0600" "$tmp/listen.err"
fi

# Second use: the key matches, silently; the post goes through sealed.
run_batch post "hello sealed world
/info
" --secure --known-servers "$known" -n poster -r ops "$a_url"
if [ "$(rc_of post)" -eq 0 ] && ! [ -s "$tmp/post.err" ] &&
    grep -q '#ops <poster> hello sealed world$' "$tmp/post.out"; then
    ok "a known server matches silently: post over a secure session, exit 0"
else
    not_ok "post over a secure session (exit $(rc_of post))" \
        "$tmp/post.out" "$tmp/post.err"
fi
if grep -q -x -F "server key: $a_fp" "$tmp/post.out" &&
    grep -q '^encryption: secure session' "$tmp/post.out" &&
    grep -q "^connection: tcp 127.0.0.1:" "$tmp/post.out" &&
    grep -q "^your key:   SHA256:" "$tmp/post.out"; then
    ok "/info shows the transport, the secure session and both keys"
else
    not_ok "/info in a secure session" "$tmp/post.out"
fi
if wait_for "grep '\"from\":\"poster\"' '$tmp/listen.out' |
    grep -q '\"text\":\"hello sealed world\"'"; then
    ok "the --json listener receives the message, decrypted"
else
    not_ok "the listener receives the sealed message" "$tmp/listen.out"
fi
if [ "$(grep -c -v '^#' "$known")" = 1 ]; then
    ok "a match adds nothing to the known-servers file"
else
    not_ok "a match adds nothing" "$known"
fi

# A server in the known-servers file is reached securely even without
# --secure (no silent downgrade to plain text).
run_batch pinned "/info
" --known-servers "$known" -n pinned -r ops "$a_url"
if [ "$(rc_of pinned)" -eq 0 ] &&
    grep -q -x -F "server key: $a_fp" "$tmp/pinned.out"; then
    ok "a known server is reached securely without --secure"
else
    not_ok "known server without --secure (exit $(rc_of pinned))" \
        "$tmp/pinned.out" "$tmp/pinned.err"
fi

# --no-identity: nothing to make, nothing sent; --identity FILE: made 0600.
run_batch noid "/info
" --secure --no-identity --known-servers "$known" -n noid -r ops "$a_url"
run_batch ownid "/info
" --secure --identity "$tmp/mine.key" --known-servers "$known" -n ownid \
    -r ops "$a_url"
if [ "$(rc_of noid)" -eq 0 ] && grep -q '^your key:   none' "$tmp/noid.out" &&
    [ "$(rc_of ownid)" -eq 0 ] &&
    [ "$(ls -l "$tmp/mine.key" | cut -c1-10)" = "-rw-------" ] &&
    grep -q "^your key:   $(grep -o 'SHA256:[0-9a-f ]*' "$tmp/mine.key" | head -n 1)\$" \
        "$tmp/ownid.out"; then
    ok "--no-identity sends none; --identity FILE makes FILE (0600) and uses it"
else
    not_ok "--no-identity / --identity FILE" "$tmp/noid.out" "$tmp/noid.err" \
        "$tmp/ownid.out" "$tmp/ownid.err"
fi

# client.conf: secure=true makes --secure the default; nick= the nick.
mkdir -p "$conf"
printf '[sockchat]\nsecure=true\nnick=confnick\n' >"$conf/client.conf"
run_batch conf "/info
" --accept-new -r ops "$a_url"
if [ "$(rc_of conf)" -eq 0 ] &&
    grep -q -x -F "server key: $a_fp" "$tmp/conf.out" &&
    grep -q '^nick:       confnick$' "$tmp/conf.out" &&
    grep -q -x -F "$hp $a_fp" "$conf/known_servers"; then
    ok "client.conf secure=true and nick=: secure by default, default known_servers file"
else
    not_ok "client.conf (exit $(rc_of conf))" "$tmp/conf.out" "$tmp/conf.err"
fi
printf '[sockchat]\nsecure=perhaps\n' >"$conf/client.conf"
run_batch badconf "" -n x "$a_url"
if [ "$(rc_of badconf)" -eq 1 ] && grep -q 'client.conf' "$tmp/badconf.err"
then
    ok "a bad client.conf value exits 1 naming the file"
else
    not_ok "bad client.conf (exit $(rc_of badconf))" "$tmp/badconf.err"
fi
rm -f "$conf/client.conf" "$conf/known_servers"

# The listener ends at the end of its input: exit 0, the end authenticated.
exec 3>&-
if wait_for "! kill -0 $lpid" && wait "$lpid" &&
    grep -q '"type":"bye"' "$tmp/listen.out" &&
    ! grep -q 'not authenticated' "$tmp/listen.err"; then
    ok "the secure listener quits with exit 0 after bye, no warning"
else
    not_ok "the secure listener quits with exit 0" "$tmp/listen.err"
fi

# --- the same address, another key ---------------------------------------

stop_server "$a_pid"
start_server b --listen "$a_url" --identity "$tmp/server_b.key"
b_pid=$spid
b_fp=$(fingerprint "$tmp/server_b.key")
cp "$known" "$tmp/known.before"
run_batch changed "never sent
" --secure --accept-new --known-servers "$known" -n victim -r ops "$url"
if [ "$(rc_of changed)" -eq 3 ] && [ "$b_fp" != "$a_fp" ] &&
    grep -q -F "$a_fp" "$tmp/changed.err" &&
    grep -q -F "$b_fp" "$tmp/changed.err" &&
    grep -q "remove line 1 of $known" "$tmp/changed.err" &&
    cmp -s "$known" "$tmp/known.before"; then
    ok "a changed server key is refused (even with --accept-new): exit 3, both fingerprints, the line to remove"
else
    not_ok "changed key refused (exit $(rc_of changed))" "$tmp/changed.err" \
        "$known"
fi
run_batch changed2 "never sent
" --known-servers "$known" -n victim2 -r ops "$url"
if [ "$(rc_of changed2)" -eq 3 ] && grep -q -F "$b_fp" "$tmp/changed2.err"
then
    ok "without --secure too: a known server with another key is refused, exit 3"
else
    not_ok "changed key without --secure (exit $(rc_of changed2))" \
        "$tmp/changed2.err"
fi
stop_server "$b_pid"

# --- a server without secure sessions ------------------------------------

start_server off --listen tcp://127.0.0.1:0 --secure=off
off_url=$url
off_pid=$spid
run_batch offsec "never sent
" --secure --accept-new --known-servers "$known" -n wanted -r ops "$off_url"
if [ "$(rc_of offsec)" -eq 3 ] &&
    grep -q 'does not offer secure sessions' "$tmp/offsec.err"; then
    ok "--secure against sockchatd --secure=off: exit 3, says why"
else
    not_ok "--secure against --secure=off (exit $(rc_of offsec))" \
        "$tmp/offsec.err"
fi
run_batch offplain "in plain text
" --known-servers "$known" -n plain -r ops "$off_url"
if [ "$(rc_of offplain)" -eq 0 ] &&
    grep -q '#ops <plain> in plain text$' "$tmp/offplain.out"; then
    ok "without --secure and without an entry: plain session, exit 0"
else
    not_ok "plain client against --secure=off (exit $(rc_of offplain))" \
        "$tmp/offplain.out" "$tmp/offplain.err"
fi
# With an entry for that address, "no secure sessions" is a downgrade.
printf '%s %s\n' "$(host_port "$off_url")" "$a_fp" >"$tmp/known.off"
run_batch downgrade "never sent
" --known-servers "$tmp/known.off" -n plain2 -r ops "$off_url"
if [ "$(rc_of downgrade)" -eq 3 ] &&
    grep -q 'refusing to fall back' "$tmp/downgrade.err"; then
    ok "a known server that answers without secure sessions: exit 3, no plain fallback"
else
    not_ok "downgrade refused (exit $(rc_of downgrade))" "$tmp/downgrade.err"
fi
stop_server "$off_pid"

# --- a server that requires secure sessions ------------------------------

start_server req --listen tcp://127.0.0.1:0 --secure=required \
    --identity "$tmp/server_req.key"
req_url=$url
req_pid=$spid
run_batch reqplain "never sent
" --known-servers "$tmp/known.req" -n plain -r ops "$req_url"
if [ "$(rc_of reqplain)" -eq 3 ] &&
    grep -q 'encryption_required' "$tmp/reqplain.err" &&
    grep -q -- 'connect with --secure' "$tmp/reqplain.err"; then
    ok "a plain client against --secure=required: encryption_required, exit 3, hint --secure"
else
    not_ok "plain against --secure=required (exit $(rc_of reqplain))" \
        "$tmp/reqplain.err"
fi
run_batch reqsec "sealed
" --secure --accept-new --known-servers "$tmp/known.req" -n sealed \
    -r ops "$req_url"
if [ "$(rc_of reqsec)" -eq 0 ] &&
    grep -q '#ops <sealed> sealed$' "$tmp/reqsec.out"; then
    ok "a --secure client against --secure=required: exit 0"
else
    not_ok "--secure against --secure=required (exit $(rc_of reqsec))" \
        "$tmp/reqsec.out" "$tmp/reqsec.err"
fi

# The server dies without its final frame under a secure client: exit 4
# and a warning that the end was not authenticated.
start_fed cut 3 --secure --known-servers "$tmp/known.req" -n cut -r ops \
    "$req_url"
cpid=$fpid
wait_for "grep -q 'cut joined' '$tmp/cut.out'"
kill -KILL "$req_pid"
wait_for "! kill -0 $cpid"
wait "$cpid"
crc=$?
exec 3>&-
if [ "$crc" -eq 4 ] && grep -q "server's end was not authenticated" \
    "$tmp/cut.err"; then
    ok "a cut without the server's final frame: exit 4 and a warning"
else
    not_ok "cut without FINAL: exit 4 and a warning (got $crc)" \
        "$tmp/cut.out" "$tmp/cut.err"
fi

# --- reserved nicks: the client's key proves who it is ---------------------

if "$SOCKCHATD" --help 2>&1 | grep -q -- --reserve-nicks; then
    start_server res --listen tcp://127.0.0.1:0 --identity "$tmp/server_res.key" \
        --reserve-nicks --nicks-file "$tmp/nicks"
    res_url=$url
    res_pid=$spid
    run_batch owner "mine
" --secure --accept-new --known-servers "$tmp/known.res" -n ann -r ops "$res_url"
    run_batch thief "never sent
" --secure --identity "$tmp/thief.key" --known-servers "$tmp/known.res" \
        -n ann -r ops "$res_url"
    run_batch owner2 "still mine
" --secure --known-servers "$tmp/known.res" -n ann -r ops "$res_url"
    run_batch rename "/nick ann
" --secure --identity "$tmp/thief.key" --known-servers "$tmp/known.res" \
        -n notann -r ops "$res_url"
    if [ "$(rc_of owner)" -eq 0 ] && [ "$(rc_of owner2)" -eq 0 ] &&
        [ "$(rc_of thief)" -eq 3 ] &&
        grep -q 'refused by the server: nick_reserved' "$tmp/thief.err" &&
        [ "$(rc_of rename)" -eq 5 ] &&
        grep -q '^sockchat: error: nick_reserved' "$tmp/rename.err"; then
        ok "a reserved nick: its key's owner gets it; another key: exit 3 at hello, an error line at /nick"
    else
        not_ok "reserved nicks (owner $(rc_of owner), thief $(rc_of thief), owner2 $(rc_of owner2), rename $(rc_of rename))" \
            "$tmp/owner.err" "$tmp/thief.err" "$tmp/owner2.err" "$tmp/rename.err"
    fi
    stop_server "$res_pid"
else
    ok "# SKIP reserved nicks: sockchatd has no --reserve-nicks"
fi

# --- interactive first use (tmux) ----------------------------------------

if ! command -v tmux >/dev/null 2>&1; then
    ok "# SKIP interactive trust question: tmux is not installed"
else
    start_server tui --listen tcp://127.0.0.1:0 --identity "$tmp/server_tui.key"
    tui_url=$url
    tui_fp=$(fingerprint "$tmp/server_tui.key")
    start_client() { # NAME LOCALE SHELL-LINE
        {
            echo "HOME='$HOME' XDG_CONFIG_HOME='$XDG_CONFIG_HOME'"
            echo "LC_ALL=$2; export HOME XDG_CONFIG_HOME LC_ALL"
            echo "$3"
            echo "echo \$? >'$tmp/$1.rc'"
            echo "exec sleep 300"
        } >"$tmp/$1.sh"
        T new-session -d -s "$1" -x 200 -y 30 "sh '$tmp/$1.sh'"
    }
    T new-session -d -s keep -x 80 -y 10 "exec sleep 300" || {
        echo "Bail out! tmux cannot start a session"
        exit 99
    }
    start_client ask C "'$SOCKCHAT' --timeout $ct --secure --known-servers '$tmp/known.tui' -n asked '$tui_url'"
    q="Trust server $(host_port "$tui_url" | sed 's/ /:/') with fingerprint $tui_fp? [y/N]"
    if wait_for "screen ask && grep -q -F '$q' '$tmp/ask.screen'"; then
        ok "interactive: a new server is asked about: '$q'"
    else
        not_ok "interactive trust question" "$tmp/ask.screen"
    fi
    T send-keys -t ask -l "y"
    T send-keys -t ask Enter
    if wait_for "[ \"\$(last_line ask)\" = '#general (secure)>' ]" &&
        grep -q -x -F "$(host_port "$tui_url") $tui_fp" "$tmp/known.tui"; then
        ok "answered y: recorded, and the prompt shows '#general (secure)> ' (ASCII locale)"
    else
        not_ok "answered y: recorded, secure prompt" "$tmp/ask.screen" \
            "$tmp/known.tui"
    fi
    T send-keys -t ask -l "/quit"
    T send-keys -t ask Enter
    wait_for "test -s '$tmp/ask.rc'"

    start_client lock C.UTF-8 "'$SOCKCHAT' --timeout $ct --known-servers '$tmp/known.tui' -n locked '$tui_url'"
    if wait_for "last_line lock | grep -q '^#general .*>\$'" &&
        last_line lock | grep -q -F "#general $(printf '\360\237\224\222')>"; then
        ok "a UTF-8 locale shows a lock in the prompt; a known server is secure without asking"
    else
        not_ok "lock in the prompt (UTF-8)" "$tmp/lock.screen"
    fi
    T send-keys -t lock -l "/quit"
    T send-keys -t lock Enter
    wait_for "test -s '$tmp/lock.rc'"

    start_client no C "'$SOCKCHAT' --timeout $ct --secure --known-servers '$tmp/known.no' -n refuser '$tui_url'"
    wait_for "screen no && grep -q -F '[y/N]' '$tmp/no.screen'"
    T send-keys -t no Enter
    if wait_for "test -s '$tmp/no.rc'" && [ "$(cat "$tmp/no.rc")" = 3 ] &&
        ! test -e "$tmp/known.no"; then
        ok "answered no (the default): exit 3, nothing recorded"
    else
        not_ok "answered no: exit 3" "$tmp/no.screen"
    fi
fi

it_done
