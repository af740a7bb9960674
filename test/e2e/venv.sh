#!/usr/bin/env bash
# Print the path of the e2e venv, creating it first if needed:
# ${WC_CACHE:-~/.cache/worker-controller}/venv-<hash of requirements.txt + python version>.
set -euo pipefail
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WC_CACHE=${WC_CACHE:-$HOME/.cache/worker-controller}
log() { printf '[e2e] %s\n' "$*" >&2; }

# Debian's python3 lacks ensurepip/venv without python3-venv.
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    log "installing python3-venv via apt-get"
    sudo=; [[ $(id -u) == 0 ]] || sudo=sudo
    $sudo apt-get update -qq >&2 &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv python3-pip >&2
fi
req_hash=$( (cat "$E2E_DIR/requirements.txt"; python3 -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)
VENV=$WC_CACHE/venv-$req_hash
if [[ ! -f $VENV/.complete ]]; then
    mkdir -p "$WC_CACHE"
    exec 7>"$VENV.lock"
    flock -w 900 7 || { log "timed out waiting for $VENV.lock"; exit 1; }
    if [[ ! -f $VENV/.complete ]]; then
        log "creating venv $VENV"
        rm -rf "$VENV"
        python3 -m venv "$VENV" >&2
        "$VENV/bin/pip" install -q --disable-pip-version-check -r "$E2E_DIR/requirements.txt" >&2
        touch "$VENV/.complete"
    fi
fi
echo "$VENV"
