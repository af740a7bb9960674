#!/usr/bin/env bash
# The main job on an embedded default, on a fresh machine:
#   build → start the local test cluster on loopback (kube-apiserver, etcd, controller-manager,
#   scheduler, kwok Nodes that run Pods, the real OpenKruise agents controller, S3) → install
#   the CRD → run the controller under exactly the RBAC `render-rbac` prints → apply sample
#   Workers (pod, sandbox, agent-sandbox) → watch them converge through the real components
#   (kube-scheduler and kwok, OpenKruise agents, the kubernetes-sigs agent-sandbox controller).
#
#   ./demo.sh           run it, then tear everything down
#   ./demo.sh --keep    leave the cluster and the controller running (prints how to stop them)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT"
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1
export WC_TESTBED=${WC_TESTBED:-${TMPDIR:-/tmp}/worker-controller-demo}
NS=hiclaw-demo
CTL=hiclaw-controller
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building"
./build.sh

say "starting the local cluster ($WC_TESTBED)"
test/cluster/up.sh
# shellcheck disable=SC1091
source "$WC_TESTBED/env"
export PATH=$WC_TESTBIN:$PATH
RUN=$WC_TESTBED/demo
mkdir -p "$RUN"

cleanup() {
  [ -f "$RUN/controller.pid" ] && kill "$(cat "$RUN/controller.pid")" 2>/dev/null || true
  sleep 1
  test/cluster/down.sh >/dev/null 2>&1 || true
}
if [ $KEEP = 0 ]; then trap cleanup EXIT; fi

say "installing the Worker CRD"
./worker-controller install-crds

say "RBAC for the controller (worker-controller render-rbac), applied to namespace $NS"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
./worker-controller render-rbac --namespace "$NS" --controller-name "$CTL" | tee "$RUN/rbac.yaml" | kubectl apply -f -
kubectl create token "$CTL" -n "$NS" --duration 2h >"$RUN/token"

say "starting the controller (log: $RUN/controller.log)"
HICLAW_K8S_NAMESPACE=$NS HICLAW_CONTROLLER_NAME=$CTL HICLAW_LOG_FORMAT=text \
HICLAW_WORKER_DEPS_ENDPOINT=$WC_S3_ENDPOINT HICLAW_WORKER_DEPS_BUCKET=$WC_S3_BUCKET \
HICLAW_WORKER_DEPS_ACCESS_KEY_ID=$WC_S3_ACCESS_KEY HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY=$WC_S3_SECRET_KEY \
HICLAW_WORKER_DEPS_CA_FILE=$WC_CA_FILE HICLAW_CONTROLLER_URL=http://hiclaw-controller.$NS:8090 \
  ./worker-controller run --server "$WC_APISERVER_URL" --token-file "$RUN/token" --ca-file "$WC_CA_FILE" \
  >"$RUN/controller.log" 2>&1 &
echo $! >"$RUN/controller.pid"

# The examples carry hiclaw.io/controller: hiclaw-controller, the name this controller runs
# under ($CTL): a controller acts only on the Workers labelled with its name.
say "applying sample Workers: examples/worker-pod.yaml (pod), examples/worker-sandbox.yaml (sandbox) and examples/worker-agent-sandbox.yaml (agent-sandbox)"
kubectl apply -n "$NS" -f examples/worker-pod.yaml -f examples/worker-sandbox.yaml -f examples/worker-agent-sandbox.yaml

say "waiting for the three Workers to be Running"
ok=0
for _ in $(seq 1 120); do
  phases=$(kubectl get workers -n "$NS" -o jsonpath='{range .items[*]}{.status.phase}{" "}{end}')
  if [ "$phases" = "Running Running Running " ]; then ok=1; break; fi
  sleep 1
done
kubectl get workers -n "$NS"
say "what the controller created, and what kube-scheduler, kwok, OpenKruise and agent-sandbox made of it"
kubectl get pods -n "$NS" -o wide -L hiclaw.io/backend
kubectl get serviceaccounts,sandboxclaims.agents.kruise.io,sandboxes.agents.kruise.io,sandboxsets.agents.kruise.io -n "$NS"
kubectl get sandboxes.agents.x-k8s.io -n "$NS"
sbx=$(kubectl get worker bob -n "$NS" -o jsonpath='{.status.instance.name}' 2>/dev/null || true)
if [ -n "$sbx" ]; then
  say "what bob's sandbox received (OpenKruise mounted it through the agent-runtime at its pod IP)"
  curl -fsS "$WC_RUNTIME_URL/sandboxes" | python3 -c '
import json, sys
ns, name = sys.argv[1], sys.argv[2]
s = json.load(sys.stdin).get(ns + "/" + name, {})
for uid in s.get("order", []):
    inc = s["incarnations"][uid]
    print("  Pod %s (%s): /init x%d" % (name, inc["ip"], len(inc["inits"])))
    for m in inc["mounts"]:
        files = ", ".join("%s (%d bytes)" % (k, v["size"]) for k, v in sorted(m["files"].items()))
        print("    %-26s <- s3://%s/%s  %s" % (m["target_path"], m["bucket"], m["prefix"], files))
' "$NS" "$sbx" || true
fi
say "events"
kubectl get events -n "$NS" --field-selector involvedObject.kind=Worker 2>/dev/null | tail -n 10 || true
say "controller log (last lines)"
tail -n 12 "$RUN/controller.log"
if [ $ok = 1 ]; then
  say "the Workers converged: alice runs as a Pod, bob in a claimed OpenKruise sandbox, carol in an agent-sandbox Sandbox"
else
  say "the Workers did not converge within 120 s (see $RUN/controller.log and $WC_TESTBED/logs/)"
  exit 1
fi
if [ $KEEP = 1 ]; then
  echo "left running. Try: source $WC_TESTBED/env; kubectl get wk -n $NS -w"
  echo "stop: kill \$(cat $RUN/controller.pid); test/cluster/down.sh"
fi
