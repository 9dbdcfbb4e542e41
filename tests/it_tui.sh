#!/bin/sh
# it_tui.sh - the interactive sockchat client on a real terminal (tmux).
#
# The client runs in tmux panes of a known size against a sockchatd on
# 127.0.0.1 port 0. Checks: a message that arrives while a line is half
# typed prints above the prompt and leaves the line intact; Enter sends it;
# a mention is highlighted and rings the bell (not with --no-bell); no
# escape codes with NO_COLOR or when stdout is not a terminal.
# Exits 77 (skipped) when tmux is not installed.
set -u

# ok, not_ok, wait_for, start_server, run_batch and the rest: tests/lib.sh.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

if ! command -v tmux >/dev/null 2>&1; then
    echo "SKIP: tmux is not installed (Debian package tmux)"
    exit 77
fi

it_setup it_tui
BEL=$(printf '\007')
unset TMUX

# line_no NAME TEXT: the number of the pane's line holding TEXT.
line_no() {
    screen "$1"
    grep -n -F -- "$2" "$tmp/$1.screen" | head -n 1 | cut -d: -f1
}

# start_client NAME SHELL-LINE: a 100x30 tmux session running the client;
# the pane stays after it exits, with its status in $tmp/NAME.rc.
start_client() {
    {
        echo "HOME='$tmp'; export HOME"
        echo "unset NO_COLOR"
        echo "$2"
        echo "rc=\$?"
        echo "stty -a >'$tmp/$1.stty' 2>&1"
        echo "echo \$rc >'$tmp/$1.rc'"
        echo "exec sleep 300"
    } >"$tmp/$1.sh"
    T new-session -d -s "$1" -x 100 -y 30 "sh '$tmp/$1.sh'"
    T set-hook -t "$1" alert-bell "run-shell 'touch $tmp/$1.bell'"
}

post() { # NICK TEXT: say TEXT in #general as NICK, in batch mode
    printf '%s\n' "$2" | timeout $((20 * scale)) "$SOCKCHAT" --timeout "$ct" --batch -n "$1" \
        -r general "$url" >>"$tmp/post.out" 2>&1
}

# --- server, a --json listener, four interactive clients ------------------

start_server server --listen tcp://127.0.0.1:0
server_pid=$spid

start_fed listen 3 --json -n listener -r general "$url"

# Start the tmux server with a session that outlives the others.
T new-session -d -s keep -x 100 -y 30 "exec sleep 300" || {
    echo "Bail out! tmux cannot start a session"
    exit 99
}
start_client main "'$SOCKCHAT' --timeout $ct -n carol '$url'"
start_client nocolor "NO_COLOR=1 '$SOCKCHAT' --timeout $ct -n nocolor '$url'"
start_client piped "'$SOCKCHAT' --timeout $ct -n piped '$url' >'$tmp/piped.out'"
start_client nobell "'$SOCKCHAT' --timeout $ct --no-bell -n nobell '$url'"

for s in main nocolor piped nobell; do
    if wait_for "[ \"\$(last_line $s)\" = '#general>' ]"; then
        ok "$s: the prompt shows the current room, '#general> '"
    else
        not_ok "$s: prompt '#general> '" "$tmp/$s.screen"
    fi
done

# --- a half-typed line survives incoming messages -------------------------

T send-keys -t main -l "half typed line"
wait_for "[ \"\$(last_line main)\" = '#general> half typed line' ]"

post dave "carol: are you there?"
post erin "plain chatter"
post frank "nocolor piped nobell: ping"
wait_for "line_no main 'nobell: ping' | grep -q ."

screen main
prompt_at=$(awk '$0 == "#general> half typed line" { n = NR } END { print n }' \
    "$tmp/main.screen")
dave_at=$(line_no main '<dave> carol: are you there?')
frank_at=$(line_no main '<frank> nocolor piped nobell: ping')
if [ "$(last_line main)" = '#general> half typed line' ] &&
    [ -n "$dave_at" ] && [ -n "$frank_at" ] && [ -n "$prompt_at" ] &&
    [ "$dave_at" -lt "$frank_at" ] && [ "$frank_at" -lt "$prompt_at" ] &&
    [ "$(grep -c -F 'half typed line' "$tmp/main.screen")" -eq 1 ]; then
    ok "incoming messages print above the prompt; the half-typed line is intact"
else
    not_ok "messages above the prompt, line intact" "$tmp/main.screen"
fi
cursor=$(T display-message -p -t main '#{cursor_x} #{cursor_y}')
if [ -n "$prompt_at" ] && [ "$cursor" = "25 $((prompt_at - 1))" ]; then
    ok "the cursor is still at the end of the typed text"
else
    not_ok "cursor at the end of the typed text (at $cursor)"
fi

# --- mentions -------------------------------------------------------------

T capture-pane -p -e -t main >"$tmp/main.escreen"
if grep -F '<dave> carol: are you there?' "$tmp/main.escreen" |
    grep -q "${ESC}\\[\\([0-9]*;\\)*7m" &&
    ! grep -F 'plain chatter' "$tmp/main.escreen" |
    grep -q "${ESC}\\[\\([0-9]*;\\)*7m"; then
    ok "a line mentioning carol is highlighted (reverse video), others not"
else
    not_ok "mention highlighted" "$tmp/main.escreen"
fi
grep -q "${ESC}\\[3[1-6]mdave" "$tmp/main.escreen" ||
    grep -q "${ESC}\\[9[1-6]mdave" "$tmp/main.escreen"
if [ $? -eq 0 ]; then
    ok "nicks are coloured on a colour terminal"
else
    not_ok "nicks coloured" "$tmp/main.escreen"
fi
if wait_for "test -e '$tmp/main.bell'" 30; then
    ok "a mention rings the bell"
else
    not_ok "a mention rings the bell"
fi
if wait_for "line_no nobell 'nobell: ping' | grep -q ." &&
    sleep 0.3 && ! test -e "$tmp/nobell.bell"; then
    ok "--no-bell: a mention does not ring the bell"
else
    not_ok "--no-bell rings no bell" "$tmp/nobell.screen"
fi

# --- NO_COLOR and stdout not a terminal -----------------------------------

wait_for "line_no nocolor 'nobell: ping' | grep -q ."
T capture-pane -p -e -t nocolor >"$tmp/nocolor.escreen"
if ! grep -q "$ESC" "$tmp/nocolor.escreen" &&
    grep -q '^>> .*<frank> nocolor piped nobell: ping' "$tmp/nocolor.escreen"
then
    ok "NO_COLOR: no escape codes; a mention is marked '>> '"
else
    not_ok "NO_COLOR" "$tmp/nocolor.escreen"
fi

if wait_for "grep -q 'nobell: ping' '$tmp/piped.out'" &&
    ! grep -q "$ESC" "$tmp/piped.out" && ! grep -q "$BEL" "$tmp/piped.out" &&
    grep -q '<dave> carol: are you there?' "$tmp/piped.out"; then
    ok "stdout not a terminal: plain lines, no escape codes or bell in it"
else
    not_ok "stdout not a terminal" "$tmp/piped.out"
fi

# --- Enter sends the line -------------------------------------------------

T send-keys -t main -l " and more"
T send-keys -t main Enter
if wait_for "grep '\"from\":\"carol\"' '$tmp/listen.out' |
    grep -q '\"text\":\"half typed line and more\"'"; then
    ok "Enter sends the whole line (seen by a --json client)"
else
    not_ok "Enter sends the line" "$tmp/listen.out"
fi
if wait_for "line_no main '<carol> half typed line and more' | grep -q ." &&
    wait_for "[ \"\$(last_line main)\" = '#general>' ]"; then
    ok "the sent line comes back above a fresh prompt"
else
    not_ok "echo and fresh prompt" "$tmp/main.screen"
fi

# --- commands, then quit --------------------------------------------------

T send-keys -t main -l "/join ops"
T send-keys -t main Enter
if wait_for "[ \"\$(last_line main)\" = '#ops>' ]"; then
    ok "/join ops switches the prompt to '#ops> '"
else
    not_ok "/join switches the current room" "$tmp/main.screen"
fi
T send-keys -t main -l "/frobnicate"
T send-keys -t main Enter
if wait_for "line_no main 'error: unknown command /frobnicate' | grep -q ."
then
    ok "an unknown command prints a local error line"
else
    not_ok "unknown command error" "$tmp/main.screen"
fi
T send-keys -t main -l "/quit"
T send-keys -t main Enter
if wait_for "test -s '$tmp/main.rc'" && [ "$(cat "$tmp/main.rc")" = 0 ]; then
    ok "/quit exits 0"
else
    not_ok "/quit exits 0" "$tmp/main.screen"
fi
T send-keys -t nocolor C-d
if wait_for "test -s '$tmp/nocolor.rc'" && [ "$(cat "$tmp/nocolor.rc")" = 0 ]
then
    ok "Ctrl-D exits 0"
else
    not_ok "Ctrl-D exits 0" "$tmp/nocolor.screen"
fi

# --- refused, then closed by the server ------------------------------------

start_client dup "'$SOCKCHAT' --timeout $ct -n NoBell '$url'"
if wait_for "test -s '$tmp/dup.rc'" && [ "$(cat "$tmp/dup.rc")" = 3 ] &&
    screen dup && grep -q 'refused by the server: nick_in_use' "$tmp/dup.screen"
then
    ok "interactive, nick in use: exit 3 with the reason"
else
    not_ok "interactive, nick in use: exit 3" "$tmp/dup.screen"
fi

T send-keys -t nobell -l "never sent"
kill "$server_pid"
if wait_for "test -s '$tmp/nobell.rc'" && [ "$(cat "$tmp/nobell.rc")" = 4 ] &&
    screen nobell &&
    grep -q 'sockchat: connection closed by the server: server shutting down' \
        "$tmp/nobell.screen"; then
    ok "the server stops: the client says why and exits 4"
else
    not_ok "server stops under an interactive client: exit 4" \
        "$tmp/nobell.screen"
fi

# The terminal is left as it was found (cooked mode, echo on).
for s in main nocolor nobell; do
    if grep -q -w -e '-icanon' -e '-echo' "$tmp/$s.stty" ||
        ! grep -q -w 'icanon' "$tmp/$s.stty"; then
        not_ok "$s: terminal restored after exit" "$tmp/$s.stty"
    else
        ok "$s: terminal restored after exit (icanon, echo)"
    fi
done

it_done
