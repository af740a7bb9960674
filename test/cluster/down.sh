#!/usr/bin/env bash
# Stop the test bed started by up.sh (same WC_TESTBED): terminate the processes named by
# its PID files, wait until their ports are closed, remove the state dir.
# Idempotent: nothing to do is success.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

S=$WC_TESTBED
if [[ ! -e $S ]]; then
    tb_log "not up: $S"
    exit 0
fi
# Only ever delete a directory up.sh created.
[[ -f $TB_MARKER ]] || tb_die "$S exists but is not a test bed (no $(basename "$TB_MARKER")); refusing to touch it"

tb_lock

stop() { # name
    local pidfile=$S/$1.pid pid i
    tb_pid_ours "$pidfile" || { rm -f "$pidfile"; return 0; }
    read -r pid _ <"$pidfile"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do          # 10 s grace, then SIGKILL
        tb_pid_ours "$pidfile" || break
        sleep 0.1
    done
    if tb_pid_ours "$pidfile"; then
        tb_log "$1 (pid $pid) ignored SIGTERM; killing"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do tb_pid_ours "$pidfile" || break; sleep 0.1; done
    fi
    tb_pid_ours "$pidfile" && tb_die "$1 (pid $pid) is still running"
    rm -f "$pidfile"
}

# Clients first, storage last: the reverse of the start order.
for ((i = ${#TB_PROCESSES[@]} - 1; i >= 0; i--)); do stop "${TB_PROCESSES[i]}"; done

if [[ -f $S/ports ]]; then
    while read -r port; do
        [[ -n $port ]] || continue
        for ((i = 0; i < 100; i++)); do tb_port_open "$port" || break; sleep 0.1; done
        tb_port_open "$port" && tb_die "port $port is still open after stopping the test bed"
    done <"$S/ports"
fi

rm -rf "$S"
rm -f "$TB_LOCK"
tb_log "down: $S removed"
