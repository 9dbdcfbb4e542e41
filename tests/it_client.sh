#!/bin/sh
# it_client.sh - the sockchat client in batch mode against a real sockchatd.
#
# Run by `make check` with SOCKCHATD and SOCKCHAT set to the binaries. Every
# server listens on 127.0.0.1 (and ::1 when there is one) port 0; every
# wait is bounded; everything started here is stopped by its PID on exit.
set -u

# ok, not_ok, wait_for, start_server, run_batch and the rest: tests/lib.sh.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
it_setup it_client

# json_check FILE: every line is one JSON object (a small RFC 8259 syntax
# check in awk, since neither python nor jq can be assumed in CI).
json_check() {
    # Raw control bytes are never valid in JSON text on one line.
    if LC_ALL=C grep -q '[[:cntrl:]]' "$1"; then
        echo "control byte in $1" >&2
        return 1
    fi
    LC_ALL=C awk '
    function after() { return sp == 0 ? "done" : "comma" }
    {
        s = $0; sp = 0; st = "start"; bad = 0
        while (length(s) > 0 && !bad) {
            if (match(s, /^[ \t]+/)) { s = substr(s, RLENGTH + 1); continue }
            c = substr(s, 1, 1)
            if (c == "\"") {
                if (!match(s, /^"([^"\\]|\\["\\\/bfnrt]|\\u[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F])*"/)) { bad = 1; break }
                t = "v"; k = 1
            } else if (c ~ /[-0-9]/) {
                if (!match(s, /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/)) { bad = 1; break }
                t = "v"; k = 0
            } else if (match(s, /^(true|false|null)/)) {
                t = "v"; k = 0
            } else if (index("{}[]:,", c) > 0) {
                RLENGTH = 1; t = c; k = 0
            } else { bad = 1; break }
            s = substr(s, RLENGTH + 1)
            if (st == "start") {
                if (t != "{") { bad = 1; break }
                stack[++sp] = "o"; st = "key_or_end"
            } else if (st == "value" || st == "value_or_end") {
                if (t == "]" && st == "value_or_end") { sp--; st = after() }
                else if (t == "v") st = after()
                else if (t == "{") { stack[++sp] = "o"; st = "key_or_end" }
                else if (t == "[") { stack[++sp] = "a"; st = "value_or_end" }
                else bad = 1
            } else if (st == "key_or_end" || st == "key") {
                if (t == "}" && st == "key_or_end") { sp--; st = after() }
                else if (t == "v" && k) st = "colon"
                else bad = 1
            } else if (st == "colon") {
                if (t == ":") st = "value"; else bad = 1
            } else if (st == "comma") {
                if (t == ",") st = stack[sp] == "o" ? "key" : "value"
                else if (t == "}" && stack[sp] == "o") { sp--; st = after() }
                else if (t == "]" && stack[sp] == "a") { sp--; st = after() }
                else bad = 1
            } else bad = 1
        }
        if (bad || st != "done") { print "not JSON: " $0 > "/dev/stderr"; err = 1 }
    }
    END { exit err }' "$1"
}

no_escapes() {
    ! grep -q "$ESC" "$1"
}

TS='\[[0-2][0-9]:[0-5][0-9]:[0-6][0-9]\]'

# --- command line --------------------------------------------------------

"$SOCKCHAT" --help >"$tmp/help.out" 2>&1
if [ $? -eq 0 ] && grep -q 'Exit status' "$tmp/help.out" &&
    grep -q -- '--batch' "$tmp/help.out" && grep -q -- '--json' "$tmp/help.out"
then
    ok "--help exits 0 and documents options and exit statuses"
else
    not_ok "--help" "$tmp/help.out"
fi

"$SOCKCHAT" --no-such-option >"$tmp/badopt.out" 2>&1
[ $? -eq 1 ] && ok "a bad option exits 1" ||
    not_ok "a bad option exits 1" "$tmp/badopt.out"

"$SOCKCHAT" --timeout "$ct" --batch -n 'not a nick' 127.0.0.1:1 </dev/null >"$tmp/badnick.out" 2>&1
[ $? -eq 1 ] && grep -q "bad nick" "$tmp/badnick.out" &&
    ok "a bad nick exits 1" || not_ok "a bad nick exits 1" "$tmp/badnick.out"

"$SOCKCHAT" --json 127.0.0.1:1 </dev/null >"$tmp/jsonnobatch.out" 2>&1
[ $? -eq 1 ] && ok "--json without --batch exits 1" ||
    not_ok "--json without --batch exits 1" "$tmp/jsonnobatch.out"

# --- unreachable server (exit 2) -----------------------------------------

# A port that was just listening and is closed now refuses connections.
start_server dead --listen tcp://127.0.0.1:0
dead_url=$url
stop_server "$spid"
run_batch dead "hi
" -n nobody "$dead_url"
if [ "$(rc_of dead)" -eq 2 ] &&
    grep -qx "sockchat: cannot connect to $dead_url: Connection refused" \
        "$tmp/dead.err"; then
    ok "unreachable server: exit 2 and 'cannot connect to URL: Connection refused'"
else
    not_ok "unreachable server: exit 2 (got $(rc_of dead))" "$tmp/dead.err"
fi

# --- one server for the rest ---------------------------------------------

start_server main --listen tcp://127.0.0.1:0
main_pid=$spid

# A listener that stays connected until fd 3 closes.
start_fed listen 3 --json -n listener -r '#ops' "$url"
lpid=$fpid
if wait_for "grep -q '\"type\":\"room\"' '$tmp/listen.out'"; then
    ok "a --json listener joins #ops"
else
    not_ok "a --json listener joins #ops" "$tmp/listen.out" "$tmp/listen.err"
fi

# Post two messages; the room name without '#' gets one.
run_batch post "hello ops
/me waves
" -n poster -r ops "$url"
if [ "$(rc_of post)" -eq 0 ] &&
    grep -q "^$TS #ops <poster> hello ops\$" "$tmp/post.out" &&
    grep -q "^$TS #ops \\* poster waves\$" "$tmp/post.out"; then
    ok "batch post: exit 0, its own messages echoed in the plain format"
else
    not_ok "batch post (exit $(rc_of post))" "$tmp/post.out" "$tmp/post.err"
fi

# The listener saw them with room, from, text and per-room seq 1 and 2.
msg_line() { # FILE TEXT: the message line with that text
    grep '"type" *: *"message"' "$1" | grep "\"text\" *: *\"$2\""
}
if wait_for "msg_line '$tmp/listen.out' 'waves' | grep -q seq" &&
    msg_line "$tmp/listen.out" 'hello ops' | grep '"room" *: *"#ops"' |
    grep '"from" *: *"poster"' | grep -q '"seq" *: *1[,}]' &&
    msg_line "$tmp/listen.out" 'waves' | grep '"action" *: *true' |
    grep -q '"seq" *: *2[,}]'; then
    ok "the listener receives both with room, from, text, action and seq 1, 2"
else
    not_ok "the listener receives the messages" "$tmp/listen.out"
fi

# Commands in batch mode.
run_batch cmds "/msg listener psst
/topic #ops deploy at noon
/list
/who
/who #ops
/nick poster2
said after the rename
" -n poster -r '#ops' "$url"
out=$tmp/cmds.out
if [ "$(rc_of cmds)" -eq 0 ]; then
    ok "/msg /topic /list /who /nick in batch: exit 0"
else
    not_ok "/msg /topic /list /who /nick in batch (exit $(rc_of cmds))" \
        "$out" "$tmp/cmds.err"
fi
grep -q "^$TS poster -> listener: psst\$" "$out" &&
    ok "/msg shows 'poster -> listener: psst'" || not_ok "/msg" "$out"
grep -q "^$TS #ops poster set the topic: deploy at noon\$" "$out" &&
    ok "/topic shows the topic event" || not_ok "/topic" "$out"
grep -q "^$TS rooms: .*#ops (2) deploy at noon" "$out" &&
    ok "/list shows #ops with 2 members and its topic" || not_ok "/list" "$out"
[ "$(grep -c "^$TS #ops members: .*listener" "$out")" -ge 3 ] &&
    grep "^$TS #ops members: " "$out" | tail -n 1 | grep -q poster &&
    ok "/who and /who #ops list the members" || not_ok "/who" "$out"
grep -q "^$TS poster is now known as poster2\$" "$out" &&
    grep -q "^$TS #ops <poster2> said after the rename\$" "$out" &&
    ok "/nick renames, later lines go out under the new nick" ||
    not_ok "/nick" "$out"
if wait_for "grep -q 'said after the rename' '$tmp/listen.out'" &&
    grep '"to" *: *"listener"' "$tmp/listen.out" |
    grep '"from" *: *"poster"' | grep -q '"text" *: *"psst"' &&
    grep '"type" *: *"topic"' "$tmp/listen.out" |
    grep -q '"topic" *: *"deploy at noon"' &&
    grep '"type" *: *"renamed"' "$tmp/listen.out" |
    grep -q '"new" *: *"poster2"'; then
    ok "the listener receives the private message, topic and rename"
else
    not_ok "the listener receives /msg, /topic, /nick" "$tmp/listen.out"
fi

# Errors: the server's error goes to stderr, the rest is still sent, exit 5.
# An unknown command is a local error and sends nothing.
run_batch errs "/who #nosuchroom
/frobnicate now
still sent
" -n erring -r ops "$url"
if [ "$(rc_of errs)" -eq 5 ] &&
    grep -q '^sockchat: error: no_such_room: ' "$tmp/errs.err" &&
    grep -q 'unknown command /frobnicate' "$tmp/errs.err" &&
    grep -q "^$TS #ops <erring> still sent\$" "$tmp/errs.out"; then
    ok "error answers: exit 5, 'sockchat: error: CODE: ...', the rest sent"
else
    not_ok "error answers (exit $(rc_of errs))" "$tmp/errs.out" "$tmp/errs.err"
fi
if grep -q 'frobnicate' "$tmp/listen.out"; then
    not_ok "an unknown command sends nothing" "$tmp/listen.out"
else
    ok "an unknown command sends nothing"
fi

# More lines than the server's burst (20): the client paces itself to the
# rate announced in welcome, so that none is refused with rate_limited.
lines=$(i=1; while [ $i -le 30 ]; do echo "paced $i"; i=$((i + 1)); done)
run_batch paced "$lines
" -n pacer -r ops "$url"
if [ "$(rc_of paced)" -eq 0 ] && ! grep -q rate_limited "$tmp/paced.err" &&
    [ "$(grep -c "^$TS #ops <pacer> paced [0-9]*\$" "$tmp/paced.out")" -eq 30 ]
then
    ok "30 lines at once: paced to the server's rate, all accepted, exit 0"
else
    not_ok "pacing (exit $(rc_of paced))" "$tmp/paced.err"
fi

# Refused at hello (exit 3): the nick is taken, in another case.
run_batch dup "hi
" -n LISTENER "$url"
if [ "$(rc_of dup)" -eq 3 ] &&
    grep -q '^sockchat: refused by the server: nick_in_use' "$tmp/dup.err"
then
    ok "nick in use: exit 3 with the server's reason"
else
    not_ok "nick in use: exit 3 (got $(rc_of dup))" "$tmp/dup.err"
fi

# Interactive mode needs a terminal.
timeout $((10 * scale)) "$SOCKCHAT" -n tty "$url" </dev/null >"$tmp/notty.out" 2>&1
[ $? -eq 1 ] && grep -q 'not a terminal' "$tmp/notty.out" &&
    ok "interactive mode without a terminal: exit 1" ||
    not_ok "interactive mode without a terminal" "$tmp/notty.out"

# Plain output has no escape codes even when TERM says colour.
TERM=xterm-256color run_batch color "hey listener
" -n colors -r ops "$url"
if [ "$(rc_of color)" -eq 0 ] && no_escapes "$tmp/color.out" &&
    no_escapes "$tmp/post.out" && no_escapes "$tmp/cmds.out" &&
    no_escapes "$tmp/listen.out"; then
    ok "batch output (not a terminal) has no escape codes"
else
    not_ok "batch output has no escape codes" "$tmp/color.out"
fi

# The listener ends cleanly at the end of its input, exit 0.
exec 3>&-
if wait_for "! kill -0 $lpid" && wait "$lpid"; then
    ok "the listener quits at end of input with exit 0"
else
    not_ok "the listener quits with exit 0" "$tmp/listen.err"
fi
if json_check "$tmp/listen.out" &&
    grep -q '"type" *: *"bye"' "$tmp/listen.out"; then
    ok "every --json line is one JSON object, through to bye"
else
    not_ok "--json lines parse as JSON" "$tmp/listen.out"
fi

# Closed by the server (exit 4): stop it under a connected client.
start_fed victim 4 -n victim -r ops "$url"
vpid=$fpid
wait_for "grep -q 'victim joined' '$tmp/victim.out'"
kill "$main_pid"
wait_for "! kill -0 $vpid"
wait "$vpid"
vrc=$?
exec 4>&-
if [ "$vrc" -eq 4 ] &&
    grep -q '^sockchat: connection closed by the server' "$tmp/victim.err"
then
    ok "server stops under a client: exit 4 with the reason"
else
    not_ok "server stops under a client: exit 4 (got $vrc)" \
        "$tmp/victim.out" "$tmp/victim.err"
fi

# --- IPv6, when this machine has ::1 -------------------------------------

if try_server v6 --listen 'tcp://[::1]:0'; then
    v6url=$url
    run_batch v6 "over six
" -n six -r ops "$v6url"
    if [ "$(rc_of v6)" -eq 0 ] && grep -q "#ops <six> over six" "$tmp/v6.out"
    then
        ok "batch post over $v6url"
    else
        not_ok "batch post over IPv6" "$tmp/v6.out" "$tmp/v6.err"
    fi
else
    ok "# SKIP IPv6: sockchatd cannot listen on ::1 here"
fi

it_done
