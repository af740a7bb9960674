# Shared helpers for up.sh / down.sh (sourced, not executed).
# shellcheck shell=bash

TB_SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TB_REPO_ROOT=$(cd "$TB_SCRIPT_DIR/../.." && pwd)

WC_TESTBED=${WC_TESTBED:-${TMPDIR:-/tmp}/worker-controller-testbed}
# Make the state dir absolute so PID checks and env files never depend on cwd.
case $WC_TESTBED in /*) ;; *) WC_TESTBED=$PWD/$WC_TESTBED ;; esac
WC_TESTBED=${WC_TESTBED%/}
TB_MARKER=$WC_TESTBED/.wc-testbed
# The bed's processes in start order (down.sh stops them in reverse): storage, the API server,
# the cluster's own controllers, OpenKruise, agent-sandbox, and the played agent-runtime.
TB_PROCESSES=(etcd kube-apiserver minio kube-controller-manager kube-scheduler kwok openkruise agent-sandbox agent-runtime)
# The ones that talk to the API server, each under an identity of its own.
TB_COMPONENTS=(kube-controller-manager kube-scheduler kwok openkruise agent-sandbox agent-runtime)
TB_LOCK=$WC_TESTBED.lock

tb_log() { printf '[testbed] %s\n' "$*" >&2; }
tb_die() { tb_log "ERROR: $*"; exit 1; }

# Take an exclusive lock per state dir, so two up.sh/down.sh on the same bed serialize.
tb_lock() {
    mkdir -p "$(dirname "$WC_TESTBED")"
    exec 9>"$TB_LOCK"
    if command -v flock >/dev/null; then
        flock -w 600 9 || tb_die "timed out waiting for lock $TB_LOCK"
    fi
}

# True if the PID in $1 (a pid file) is alive AND is one of ours: its command line names
# this state dir. Guards against killing an unrelated process that reused the PID.
tb_pid_ours() {
    local pidfile=$1 pid
    [[ -f $pidfile ]] || return 1
    read -r pid _ <"$pidfile" || true   # first field: others may append to the line
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$WC_TESTBED/" || return 1
    # a zombie is not running
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]
}

# True if something listens on 127.0.0.1:$1.
tb_port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Install missing tools through apt (CI runs on a clean machine).
tb_need() {
    local missing=() cmd pkg
    for cmd in "$@"; do
        pkg=${cmd#*:}; cmd=${cmd%%:*}
        command -v "$cmd" >/dev/null || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || tb_die "missing: ${missing[*]} (and no apt-get)"
    local sudo=; [[ $(id -u) == 0 ]] || sudo=sudo
    tb_log "installing ${missing[*]} via apt-get"
    $sudo apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2 ||
        tb_die "apt-get install ${missing[*]} failed"
}
