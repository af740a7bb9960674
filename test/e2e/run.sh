#!/usr/bin/env bash
# Run the end-to-end tests against a running test bed (test/cluster/up.sh).
#   test/e2e/run.sh [pytest args...]
# Creates/refreshes the venv (~/.cache/worker-controller/venv-<hash of requirements.txt>),
# sources $WC_TESTBED/env, runs pytest on test/e2e, writes JUnit XML to
# ${WC_JUNIT_XML:-<repo>/test/e2e/junit.xml}. Exit code = pytest's; "no tests collected" (5)
# is a failure too.
set -euo pipefail
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$E2E_DIR/../.." && pwd)
WC_TESTBED=${WC_TESTBED:-${TMPDIR:-/tmp}/worker-controller-testbed}
case $WC_TESTBED in /*) ;; *) WC_TESTBED=$PWD/$WC_TESTBED ;; esac

log() { printf '[e2e] %s\n' "$*" >&2; }

# ---- venv ------------------------------------------------------------------------------
VENV=$("$E2E_DIR/venv.sh")

# ---- test bed --------------------------------------------------------------------------
ENV_FILE=$WC_TESTBED/env
if [[ ! -f $ENV_FILE ]]; then
    log "ERROR: the test bed is not up ($ENV_FILE missing). Start it with: $REPO_ROOT/test/cluster/up.sh"
    exit 2
fi
# shellcheck disable=SC1090
source "$ENV_FILE"
if ! curl -fsS --max-time 5 --cacert "$WC_CA_FILE" -H "Authorization: Bearer $WC_ADMIN_TOKEN" \
    "$WC_APISERVER_URL/readyz" >/dev/null; then
    log "ERROR: the test bed in $WC_TESTBED does not answer at $WC_APISERVER_URL/readyz; restart it (down.sh, up.sh)"
    exit 2
fi
export PATH=$WC_TESTBIN:$PATH
export WC_REPO_ROOT=$REPO_ROOT

JUNIT=${WC_JUNIT_XML:-$E2E_DIR/junit.xml}
# Test paths among the args (e.g. test/e2e/test_testbed.py) replace the default test/e2e.
targets=("$E2E_DIR")
for a in "$@"; do
    [[ $a != -* && -e ${a%%::*} ]] && { targets=(); break; }
done
set +e
"$VENV/bin/python" -m pytest "${targets[@]}" --rootdir "$E2E_DIR" -p no:cacheprovider --timeout "${WC_E2E_TIMEOUT:-600}" --junitxml "$JUNIT" -o junit_family=xunit2 "$@"
rc=$?
set -e
if [[ $rc == 5 ]]; then
    log "ERROR: no tests were collected"
    exit 5
fi
exit $rc
