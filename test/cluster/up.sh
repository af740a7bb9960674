#!/usr/bin/env bash
# Start the test bed: a small real cluster on loopback — etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok "running" the Pods of fake Nodes (pod IPs in
# a 127.N.0.0/16 of its own), the real OpenKruise agents controller, MinIO (S3, SigV4, TLS), and the one
# played part: the in-sandbox agent-runtime (agent_runtime.py). Throw-away PKI. Builds the
# binaries first if the cache is cold.
#
#   WC_TESTBED=<state dir>  (default ${TMPDIR:-/tmp}/worker-controller-testbed)
#   test/cluster/up.sh      -> writes $WC_TESTBED/env (source it) and $WC_TESTBED/kubeconfig
#
# Ports are picked free at start, so several beds (different WC_TESTBED) can run at once.
# Running it when the bed is already up and healthy is a no-op.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

S=$WC_TESTBED
ENV_FILE=$S/env
# WC_BED_FAST=1 (the benchmarks' bed, test/bench/): the bed's own components must not be what
# limits a run of thousands of Pods, so kube-scheduler and kube-controller-manager get no
# client-side rate limit (their defaults are 50 QPS/100 burst and 20/30: a scheduler binding 50
# Pods a second would set the pace of every run), kwok plays 32 Pod stages at once instead of 8,
# the played agent-runtime writes its state file at most every 2 s instead of after every call, and
# the kwok Nodes are big enough for 50,000 Pods.
# Every client of the bed (the controller, its peer, the floor) then runs against the same faster
# bed. Off by default: the e2e beds are unchanged. Recorded in the env file; a running bed whose
# setting differs from the one asked for is restarted.
BED_FAST=${WC_BED_FAST:-0}
[[ $BED_FAST == 0 || $BED_FAST == 1 ]] || { echo "[testbed] ERROR: WC_BED_FAST must be 0 or 1" >&2; exit 2; }
if [[ $BED_FAST == 1 ]]; then
    CLIENT_FAST=(--kube-api-qps 5000 --kube-api-burst 10000)
    KWOK_POD_PARALLELISM=32
    RUNTIME_FAST=(--save-interval 2)
    # kwok's default Node is 1k CPU / 1Ti: 8,192 Pods requesting 256Mi over both Nodes. The
    # benchmarks run 10,000 and 50,000 Workers (a Node's status may be set when it is created;
    # kwok's node stage keeps a given allocatable and capacity).
    NODE_STATUS=$'status:\n  allocatable: {cpu: "1M", memory: "1Ei", pods: "1M"}\n  capacity: {cpu: "1M", memory: "1Ei", pods: "1M"}'
else
    CLIENT_FAST=()
    KWOK_POD_PARALLELISM=8
    RUNTIME_FAST=()
    NODE_STATUS=
fi

tb_need openssl:openssl curl:curl python3:python3 flock:util-linux

BIN=$("$TB_SCRIPT_DIR/testbin.sh")
export PATH=$BIN:$PATH
# The played agent-runtime uses the e2e venv (kubernetes client, boto3).
VENV=$("$TB_REPO_ROOT/test/e2e/venv.sh")
# The real OpenKruise agents controller and its CRDs, next to the repository (never modified).
KRUISE_DIR=${WC_KRUISE_DIR:-$TB_REPO_ROOT/../shared/kruise}
[[ -x $KRUISE_DIR/agent-sandbox-controller ]] || tb_die "OpenKruise agents controller not found in $KRUISE_DIR (set WC_KRUISE_DIR)"
(cd "$KRUISE_DIR" && sha256sum --quiet -c SHA256SUMS) >&2 || tb_die "$KRUISE_DIR does not match its SHA256SUMS"
# The real kubernetes-sigs agent-sandbox controller and its CRDs (same rules: verified, unchanged).
AGENT_SANDBOX_DIR=${WC_AGENT_SANDBOX_DIR:-$TB_REPO_ROOT/../shared/agent-sandbox}
[[ -x $AGENT_SANDBOX_DIR/agent-sandbox-controller ]] || tb_die "agent-sandbox controller not found in $AGENT_SANDBOX_DIR (set WC_AGENT_SANDBOX_DIR)"
(cd "$AGENT_SANDBOX_DIR" && sha256sum --quiet -c SHA256SUMS) >&2 || tb_die "$AGENT_SANDBOX_DIR does not match its SHA256SUMS"

tb_lock

bed_healthy() {
    [[ -f $ENV_FILE ]] || return 1
    local p
    for p in "${TB_PROCESSES[@]}"; do tb_pid_ours "$S/$p.pid" || return 1; done
    # shellcheck disable=SC1090
    (unset WC_BED_FAST; source "$ENV_FILE" && [[ ${WC_BED_FAST:-0} == "$BED_FAST" ]] &&
        curl -fsS --max-time 5 --cacert "$WC_CA_FILE" -H "Authorization: Bearer $WC_ADMIN_TOKEN" \
        "$WC_APISERVER_URL/readyz" >/dev/null)
}

if bed_healthy; then
    tb_log "already up: $S (source $ENV_FILE)"
    exit 0
fi
if [[ -e $S ]]; then
    tb_log "stale or partial test bed in $S: tearing it down first"
    flock -u 9 || true
    "$TB_SCRIPT_DIR/down.sh"
    tb_lock
fi

# Crash/failure during start: stop whatever was started, keep logs for the report.
started_ok=0
on_exit() {
    if [[ $started_ok != 1 ]]; then
        tb_log "start failed; last log lines:"
        local f
        for f in "$S"/logs/*.log; do
            [[ -f $f ]] || continue
            echo "--- $f" >&2; tail -n 25 "$f" >&2
        done
        if [[ -d $S ]]; then
            mkdir -p "$S.failed-logs" && cp -r "$S/logs/." "$S.failed-logs/" 2>/dev/null || true
            flock -u 9 || true
            "$TB_SCRIPT_DIR/down.sh" || true
            tb_log "logs kept in $S.failed-logs"
        fi
    fi
}
trap on_exit EXIT

mkdir -p "$S"/{pki,logs,minio/data,minio/certs/CAs}
touch "$TB_MARKER"
chmod 700 "$S"

# ---- ports -----------------------------------------------------------------------------
# Free ports BELOW the kernel's ephemeral range (ip_local_port_range, 32768-60999 here): a
# server the tests restart (kube-apiserver, MinIO) must get its port back, and a port in the
# ephemeral range can meanwhile be taken as the local end of some outgoing connection.
read -r ETCD_PORT ETCD_PEER_PORT API_PORT S3_PORT S3_CONSOLE_PORT KRUISE_HEALTH_PORT RUNTIME_CONTROL_PORT AS_HEALTH_PORT < <(python3 - <<'EOF'
import random, socket
lo = 32768
try:
    lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except Exception:
    pass
socks, ports = [], []
for port in random.sample(range(max(1024, lo - 12000), lo), 400):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        continue
    socks.append(s); ports.append(port)
    if len(ports) == 8:
        break
print(*ports)
EOF
)
[[ -n ${AS_HEALTH_PORT:-} ]] || tb_die "could not find 8 free ports below the ephemeral range"
cat >"$S/ports" <<EOF
$ETCD_PORT
$ETCD_PEER_PORT
$API_PORT
$S3_PORT
$S3_CONSOLE_PORT
$KRUISE_HEALTH_PORT
$RUNTIME_CONTROL_PORT
$AS_HEALTH_PORT
EOF

# ---- PKI -------------------------------------------------------------------------------
P=$S/pki
tb_log "generating throw-away certificates in $P"
ossl() { openssl "$@" 2>>"$S/logs/openssl.log"; }
# A CA signs the apiserver and S3 serving certs; a separate client CA signs client certs.
ca() { # name subject
    ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -subj "/CN=$2" -keyout "$P/$1.key" -out "$P/$1.crt" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}
leaf() { # name subject sans extendedKeyUsage
    ossl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$2" \
        -keyout "$P/$1.key" -out "$P/$1.csr"
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n%s\n' \
        "$4" "${3:+subjectAltName=$3}" >"$P/$1.ext"
    ossl x509 -req -in "$P/$1.csr" -CA "$P/${5:-ca}.crt" -CAkey "$P/${5:-ca}.key" -CAcreateserial \
        -days 3650 -sha256 -extfile "$P/$1.ext" -out "$P/$1.crt"
    rm -f "$P/$1.csr"
}
ca ca "worker-controller test CA"
ca client-ca "worker-controller test client CA"
leaf apiserver "/CN=kube-apiserver" \
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.0.0.1" \
    serverAuth
leaf s3 "/CN=localhost" "DNS:localhost,IP:127.0.0.1" serverAuth
# The apiserver's own loopback client identity is internal; this cert is for tests/kubectl.
leaf admin-client "/O=system:masters/CN=wc-admin-cert" "" clientAuth client-ca
ossl genrsa -out "$P/sa.key" 2048
ossl rsa -in "$P/sa.key" -pubout -out "$P/sa.pub"
cp "$P/s3.crt" "$S/minio/certs/public.crt"
cp "$P/s3.key" "$S/minio/certs/private.key"
cp "$P/ca.crt" "$S/minio/certs/CAs/ca.crt"
chmod 600 "$P"/*.key

# ---- identities --------------------------------------------------------------------------
rnd() { openssl rand -hex "${1:-24}"; }
ADMIN_TOKEN=$(rnd)
USER1=wc-alice;      USER1_TOKEN=$(rnd)
USER2=wc-bob;        USER2_TOKEN=$(rnd)
USER3=wc-carol;      USER3_TOKEN=$(rnd)
CTRL_USER=wc-controller; CTRL_TOKEN=$(rnd)
# The bed's own components each have an identity of their own (all privileged), so the API
# server's audit log and metrics tell who wrote what.
declare -A COMPONENT_TOKEN
for c in "${TB_COMPONENTS[@]}"; do COMPONENT_TOKEN[$c]=$(rnd); done
# token,user,uid,"groups"  -- only the admin and the bed's components are privileged; the rest
# have no RBAC at all.
{
    echo "$ADMIN_TOKEN,wc-admin,wc-admin-uid,\"system:masters\""
    echo "$USER1_TOKEN,$USER1,$USER1-uid,\"wc:testers\""
    echo "$USER2_TOKEN,$USER2,$USER2-uid,\"wc:testers\""
    echo "$USER3_TOKEN,$USER3,$USER3-uid,\"wc:testers\""
    echo "$CTRL_TOKEN,$CTRL_USER,$CTRL_USER-uid,\"wc:controllers\""
    for c in "${TB_COMPONENTS[@]}"; do echo "${COMPONENT_TOKEN[$c]},wc-bed:$c,wc-bed-$c-uid,\"system:masters\""; done
} >"$P/tokens.csv"
chmod 600 "$P/tokens.csv"
S3_ACCESS_KEY=wctest$(rnd 6)
S3_SECRET_KEY=$(rnd 20)
S3_BUCKET=hiclaw-test
S3_REGION=us-east-1
SA_ISSUER=https://kubernetes.default.svc.cluster.local
# kwok's pod IPs: loopback only, a /16 of 127/8 of this bed's own (127.N.0.0/16, N random in
# 16..254, not one another bed on this host recorded): the played agent-runtime binds each
# sandbox Pod's IP, so two beds must never hand out the same addresses.
POD_CIDR=$(python3 - "$(dirname "$S")" <<'EOF'
import glob, random, sys
taken = set()
for env in glob.glob(sys.argv[1] + "/*/env") + glob.glob("/tmp/*/env"):
    try:
        for line in open(env):
            if line.startswith("export WC_POD_CIDR="):
                taken.add(line.split("=", 1)[1].strip().strip("'\""))
    except OSError:
        pass
free = [n for n in range(16, 255) if f"127.{n}.0.0/16" not in taken]
print(f"127.{random.choice(free)}.0.0/16")
EOF
)
KWOK_NODES=(kwok-node-0 kwok-node-1)
DEPS_PV=hiclaw-worker-deps            # the worker-deps PV (HICLAW_SANDBOX_DEPS_PV's default)
DEPS_CSI_DRIVER=s3.csi.wc.test        # its CSI driver: the played agent-runtime performs the mount

# Start a daemon in its own session; the PID file is written by the process itself just
# before it execs the binary, so it is exact even if setsid has to fork.
launch() { # name command...
    local name=$1 i; shift
    rm -f "$S/$name.pid"
    # shellcheck disable=SC2016
    setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$S/$name.pid" "$@" \
        9>&- </dev/null >"$S/logs/$name.log" 2>&1 &
    for ((i = 0; i < 100; i++)); do [[ -s $S/$name.pid ]] && return 0; sleep 0.05; done
    tb_die "$name did not start"
}

# ---- etcd --------------------------------------------------------------------------------
tb_log "starting etcd on 127.0.0.1:$ETCD_PORT"
launch etcd etcd --name wc-testbed --data-dir "$S/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "wc-testbed=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level info

wait_for() { # what seconds command...
    local what=$1 secs=$2 i; shift 2
    for ((i = 0; i < secs * 4; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    tb_die "$what not ready after ${secs}s"
}
etcd_ready() {
    tb_pid_ours "$S/etcd.pid" || return 0   # exited: stop waiting, checked below
    curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'
}
wait_for etcd 120 etcd_ready
tb_pid_ours "$S/etcd.pid" || tb_die "etcd exited"

# ---- kube-apiserver ------------------------------------------------------------------------
# The default admission plugins, ServiceAccount included: kube-controller-manager gives every
# namespace its "default" ServiceAccount, as in a real cluster, and a Pod whose ServiceAccount
# does not exist is refused. The audit log records writes (who changed what, when), for tests
# that must tell writers apart.
cat >"$S/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  resources:
  - group: coordination.k8s.io
    resources: [leases]
  namespaces: [kube-node-lease]
- level: None
  resources:
  - group: ""
    resources: [events]
  - group: events.k8s.io
    resources: [events]
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
EOF
tb_log "starting kube-apiserver on https://localhost:$API_PORT"
launch kube-apiserver kube-apiserver \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
    --cert-dir "$S/apiserver-certs" \
    --tls-cert-file "$P/apiserver.crt" --tls-private-key-file "$P/apiserver.key" \
    --client-ca-file "$P/client-ca.crt" \
    --token-auth-file "$P/tokens.csv" \
    --authorization-mode Node,RBAC \
    --anonymous-auth=false \
    --service-account-issuer "$SA_ISSUER" \
    --service-account-key-file "$P/sa.pub" \
    --service-account-signing-key-file "$P/sa.key" \
    --api-audiences "$SA_ISSUER" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --allow-privileged=true \
    --audit-policy-file "$S/audit-policy.yaml" --audit-log-path "$S/logs/audit.log" \
    --audit-log-maxsize 200 --audit-log-maxbackup 1 \
    --profiling=false

# ---- MinIO (S3 with SigV4, TLS) -----------------------------------------------------------
tb_log "starting minio on https://localhost:$S3_PORT"
MINIO_ROOT_USER=$S3_ACCESS_KEY MINIO_ROOT_PASSWORD=$S3_SECRET_KEY MINIO_SITE_REGION=$S3_REGION \
MINIO_BROWSER=off MINIO_UPDATE=off MINIO_CI_CD=1 \
    launch minio minio server --quiet --anonymous \
    --address "127.0.0.1:$S3_PORT" --console-address "127.0.0.1:$S3_CONSOLE_PORT" \
    --certs-dir "$S/minio/certs" "$S/minio/data"

# ---- kubeconfig + env --------------------------------------------------------------------
CA_B64=$(base64 -w0 <"$P/ca.crt")
kubeconfig() { # file user token
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: wc-testbed
  cluster:
    server: https://localhost:$API_PORT
    certificate-authority-data: $CA_B64
users:
- name: $2
  user:
    token: $3
contexts:
- name: wc-testbed
  context:
    cluster: wc-testbed
    user: $2
    namespace: wc-test
current-context: wc-testbed
EOF
    chmod 600 "$1"
}
kubeconfig "$S/kubeconfig" wc-admin "$ADMIN_TOKEN"
for c in "${TB_COMPONENTS[@]}"; do kubeconfig "$S/kubeconfig-$c" "wc-bed:$c" "${COMPONENT_TOKEN[$c]}"; done

q() { printf '%q' "$1"; }
{
    echo "# worker-controller test bed: source this file. Generated by test/cluster/up.sh."
    for kv in \
        "WC_TESTBED=$S" \
        "WC_TESTBIN=$BIN" \
        "KUBECONFIG=$S/kubeconfig" \
        "WC_APISERVER_URL=https://localhost:$API_PORT" \
        "WC_APISERVER_HOST=localhost" \
        "WC_APISERVER_PORT=$API_PORT" \
        "WC_CA_FILE=$P/ca.crt" \
        "WC_ADMIN_USER=wc-admin" \
        "WC_ADMIN_TOKEN=$ADMIN_TOKEN" \
        "WC_ADMIN_CLIENT_CERT=$P/admin-client.crt" \
        "WC_ADMIN_CLIENT_KEY=$P/admin-client.key" \
        "WC_TEST_USERS=$USER1 $USER2 $USER3" \
        "WC_TEST_USER1=$USER1" "WC_TEST_USER1_TOKEN=$USER1_TOKEN" \
        "WC_TEST_USER2=$USER2" "WC_TEST_USER2_TOKEN=$USER2_TOKEN" \
        "WC_TEST_USER3=$USER3" "WC_TEST_USER3_TOKEN=$USER3_TOKEN" \
        "WC_TEST_USERS_GROUP=wc:testers" \
        "WC_CONTROLLER_USER=$CTRL_USER" "WC_CONTROLLER_TOKEN=$CTRL_TOKEN" \
        "WC_CONTROLLER_GROUP=wc:controllers" \
        "WC_CLIENT_CA_CERT=$P/client-ca.crt" \
        "WC_CLIENT_CA_KEY=$P/client-ca.key" \
        "WC_SA_ISSUER=$SA_ISSUER" \
        "WC_SA_SIGNING_KEY=$P/sa.key" \
        "WC_SA_PUBLIC_KEY=$P/sa.pub" \
        "WC_SERVICE_CIDR=10.0.0.0/24" \
        "WC_ETCD_URL=http://127.0.0.1:$ETCD_PORT" \
        "WC_S3_ENDPOINT=https://localhost:$S3_PORT" \
        "WC_S3_HOST=localhost" \
        "WC_S3_PORT=$S3_PORT" \
        "WC_S3_BUCKET=$S3_BUCKET" \
        "WC_S3_ACCESS_KEY=$S3_ACCESS_KEY" \
        "WC_S3_SECRET_KEY=$S3_SECRET_KEY" \
        "WC_S3_REGION=$S3_REGION" \
        "WC_TEST_NAMESPACE=wc-test" \
        "WC_AUDIT_LOG=$S/logs/audit.log" \
        "WC_POD_CIDR=$POD_CIDR" \
        "WC_KWOK_NODES=${KWOK_NODES[*]}" \
        "WC_DEPS_PV=$DEPS_PV" \
        "WC_DEPS_CSI_DRIVER=$DEPS_CSI_DRIVER" \
        "WC_KRUISE_HEALTH_URL=http://127.0.0.1:$KRUISE_HEALTH_PORT/healthz" \
        "WC_RUNTIME_URL=http://127.0.0.1:$RUNTIME_CONTROL_PORT" \
        "WC_KRUISE_DIR=$KRUISE_DIR" \
        "WC_AGENT_SANDBOX_DIR=$AGENT_SANDBOX_DIR" \
        "WC_AGENT_SANDBOX_HEALTH_URL=http://127.0.0.1:$AS_HEALTH_PORT/healthz" \
        "WC_BED_FAST=$BED_FAST"; do
        echo "export ${kv%%=*}=$(q "${kv#*=}")"
    done
} >"$ENV_FILE.tmp"
chmod 600 "$ENV_FILE.tmp"

# ---- wait for readiness -------------------------------------------------------------------
api_ready() {
    tb_pid_ours "$S/kube-apiserver.pid" || return 0   # let the caller notice below
    curl -fsS --max-time 3 --cacert "$P/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" \
        "https://localhost:$API_PORT/readyz" | grep -qx ok
}
s3_ready() {
    tb_pid_ours "$S/minio.pid" || return 0
    curl -fsS --max-time 3 --cacert "$P/ca.crt" "https://localhost:$S3_PORT/minio/health/ready"
}
wait_for kube-apiserver 180 api_ready
tb_pid_ours "$S/kube-apiserver.pid" || tb_die "kube-apiserver exited"
wait_for minio 60 s3_ready
tb_pid_ours "$S/minio.pid" || tb_die "minio exited"

# Bucket, through a SigV4-signed request (curl signs; MinIO verifies).
code=$(curl -sS -o "$S/logs/mkbucket.out" -w '%{http_code}' --cacert "$P/ca.crt" \
    --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
    -X PUT "https://localhost:$S3_PORT/$S3_BUCKET")
[[ $code == 200 ]] || { cat "$S/logs/mkbucket.out" >&2; tb_die "creating bucket $S3_BUCKET: HTTP $code"; }

# ---- CRDs ------------------------------------------------------------------------------------
# Every CRD of the OpenKruise agents release the controller binary was built from (it skips a
# controller whose kinds are not served, silently, after ~15 s).
CRDS_DIR=${WC_CRDS_DIR:-$KRUISE_DIR/crds}
[[ -d $CRDS_DIR ]] || tb_die "OpenKruise agents CRDs not found in $CRDS_DIR"
CRDS_DIR=$(cd "$CRDS_DIR" && pwd)
export KUBECONFIG=$S/kubeconfig
tb_log "installing the OpenKruise agents CRDs from $CRDS_DIR"
kubectl apply --server-side --field-manager wc-testbed -f "$CRDS_DIR" >"$S/logs/crds.log" 2>&1 ||
    { cat "$S/logs/crds.log" >&2; tb_die "installing CRDs failed"; }
# kubectl wait can fail at once on a CRD whose status the API server has not filled yet
# ("status.conditions accessor error"): a few tries.
crds_established() { # dir log
    local i
    for i in 1 2 3 4 5; do
        kubectl wait --for condition=Established --timeout 60s -f "$1" >>"$2" 2>&1 && return 0
        sleep 1
    done
    return 1
}
crds_established "$CRDS_DIR" "$S/logs/crds.log" ||
    { cat "$S/logs/crds.log" >&2; tb_die "CRDs not Established"; }

# ---- kube-controller-manager, kube-scheduler ---------------------------------------------------
# The controller-manager brings what a cluster without it lacks: node lifecycle (the not-ready
# taint comes off a Ready Node), the garbage collector, ServiceAccounts and their tokens,
# namespace deletion. No serving port (--secure-port=0); no node CIDRs (kwok takes pod IPs from
# its loopback range only when Nodes have no podCIDR).
tb_log "starting kube-controller-manager and kube-scheduler"
launch kube-controller-manager kube-controller-manager --kubeconfig "$S/kubeconfig-kube-controller-manager" \
    --leader-elect=false --secure-port=0 --controllers='*' \
    --service-account-private-key-file "$P/sa.key" --root-ca-file "$P/ca.crt" \
    --use-service-account-credentials=false --allocate-node-cidrs=false \
    --concurrent-gc-syncs=10 "${CLIENT_FAST[@]}"
launch kube-scheduler kube-scheduler --kubeconfig "$S/kubeconfig-kube-scheduler" \
    --leader-elect=false --secure-port=0 "${CLIENT_FAST[@]}"

# ---- kwok: fake Nodes whose Pods "run" ----------------------------------------------------------
# kwok manages the Nodes annotated kwok.x-k8s.io/node=fake. Node stages come from the kwok
# release (copied next to the binary by testbin.sh); the Pod stages are the bed's own
# (kwok/pod-stages.yaml): Pods run at once, except those a test holds or drives into a failure
# state, and an in-place image update gets a new imageID (kwok never sets one; OpenKruise waits
# for it). Pod IPs come from a loopback range: whatever dials a pod IP stays on this host.
mkdir -p "$S/kwok/workdir"
cat >"$S/kwok/config.yaml" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  manageNodesWithAnnotationSelector: kwok.x-k8s.io/node=fake
  cidr: $POD_CIDR
  nodeIP: 127.0.0.1
  podPlayStageParallelism: $KWOK_POD_PARALLELISM
  nodePlayStageParallelism: 2
  nodeLeaseParallelism: 2
  podsOnNodeSyncParallelism: 2
  nodeLeaseDurationSeconds: 40
  enablePodsOnNodeSyncListPager: true
  enableDebuggingHandlers: false
  enableProfilingHandler: false
EOF
for n in "${KWOK_NODES[@]}"; do
    cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $n
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: $n
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
$NODE_STATUS
---
EOF
done | kubectl apply -f - >"$S/logs/nodes.log" 2>&1 || { cat "$S/logs/nodes.log" >&2; tb_die "creating Nodes failed"; }
tb_log "starting kwok (${KWOK_NODES[*]}, pod IPs $POD_CIDR)"
KWOK_WORKDIR=$S/kwok/workdir launch kwok kwok --kubeconfig "$S/kubeconfig-kwok" --config "$S/kwok/config.yaml" \
    --config "$BIN/kwok-stage/node/fast" --config "$BIN/kwok-stage/node/heartbeat-with-lease" \
    --config "$TB_SCRIPT_DIR/kwok/pod-stages.yaml"

# ---- the OpenKruise agents controller -----------------------------------------------------------
# What it needs (../shared/notes/real-components.md): namespace sandbox-system with the runtime
# injection ConfigMap (one JSON value per runtime a SandboxSet lists; "{}" injects nothing: no
# real agent-runtime image runs here), the CSI driver of the worker-deps PV in
# DYNAMIC_STORAGE_DRIVER_LIST, and that PV. Webhooks off: the controller would bind :9443 on all
# interfaces (it has no host setting), and this bed listens on loopback only. Health on loopback,
# metrics off.
kubectl apply -f - >"$S/logs/kruise-setup.log" 2>&1 <<EOF || { cat "$S/logs/kruise-setup.log" >&2; tb_die "OpenKruise setup failed"; }
apiVersion: v1
kind: Namespace
metadata:
  name: sandbox-system
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: sandbox-injection-config
  namespace: sandbox-system
data:
  agent-runtime: "{}"
  csi: "{}"
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $DEPS_PV
  labels:
    wc.test/bed: "true"
spec:
  capacity:
    storage: 1Gi
  accessModes: [ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  csi:
    driver: $DEPS_CSI_DRIVER
    volumeHandle: $S3_BUCKET
    volumeAttributes:
      bucket: $S3_BUCKET
      path: /
EOF
tb_log "starting the OpenKruise agents controller ($KRUISE_DIR)"
ENABLE_WEBHOOKS=false DYNAMIC_STORAGE_DRIVER_LIST=$DEPS_CSI_DRIVER POD_NAMESPACE=sandbox-system \
    launch openkruise "$KRUISE_DIR/agent-sandbox-controller" --kubeconfig "$S/kubeconfig-openkruise" \
    --health-probe-bind-address "127.0.0.1:$KRUISE_HEALTH_PORT" --metrics-bind-address 0 \
    --leader-elect=false --zap-devel=false --zap-log-level info

# ---- the kubernetes-sigs agent-sandbox controller -------------------------------------------------
# Its CRDs declare a conversion webhook; the controller runs without webhooks (they would listen
# on every interface), so they are installed with conversion strategy None — their versions are
# served as stored. Sandboxes only (no --extensions: no claims, templates or warm pools here).
mkdir -p "$S/agent-sandbox-crds"
python3 - "$AGENT_SANDBOX_DIR/crds" "$S/agent-sandbox-crds" <<'EOF'
import os, re, sys
src, dst = sys.argv[1:]
for f in sorted(os.listdir(src)):
    text = open(os.path.join(src, f)).read()
    # the `conversion:` block under spec: replaced up to the next key at its indentation
    text, n = re.subn(r"(?m)^(  conversion:\n)(?:    .*\n)+", r"\1    strategy: None\n", text)
    assert n <= 1, f
    open(os.path.join(dst, f), "w").write(text)
EOF
kubectl apply --server-side --field-manager wc-testbed -f "$S/agent-sandbox-crds" >"$S/logs/agent-sandbox-crds.log" 2>&1 ||
    { cat "$S/logs/agent-sandbox-crds.log" >&2; tb_die "installing the agent-sandbox CRDs failed"; }
crds_established "$S/agent-sandbox-crds" "$S/logs/agent-sandbox-crds.log" ||
    { cat "$S/logs/agent-sandbox-crds.log" >&2; tb_die "agent-sandbox CRDs not Established"; }
tb_log "starting the agent-sandbox controller ($AGENT_SANDBOX_DIR)"
launch agent-sandbox "$AGENT_SANDBOX_DIR/agent-sandbox-controller" --kubeconfig "$S/kubeconfig-agent-sandbox" \
    --enable-webhook=false --manage-webhook-certs=false --leader-elect=false \
    --health-probe-bind-address "127.0.0.1:$AS_HEALTH_PORT" --metrics-bind-address 0

# ---- the played agent-runtime -------------------------------------------------------------------
tb_log "starting the played agent-runtime (control 127.0.0.1:$RUNTIME_CONTROL_PORT)"
WC_RUNTIME_S3_ACCESS_KEY=$S3_ACCESS_KEY WC_RUNTIME_S3_SECRET_KEY=$S3_SECRET_KEY \
    launch agent-runtime "$VENV/bin/python" "$TB_SCRIPT_DIR/agent_runtime.py" \
    --kubeconfig "$S/kubeconfig-agent-runtime" --state-dir "$S/agent-runtime" \
    --control-port "$RUNTIME_CONTROL_PORT" --cidr "$POD_CIDR" --driver "$DEPS_CSI_DRIVER" \
    --s3-endpoint "https://localhost:$S3_PORT" --s3-region "$S3_REGION" --ca-file "$P/ca.crt" "${RUNTIME_FAST[@]}"

# ---- namespace, and readiness of the whole bed --------------------------------------------------
kubectl create namespace wc-test --dry-run=client -o yaml | kubectl apply -f - >/dev/null
alive() { local p; for p in "$@"; do tb_pid_ours "$S/$p.pid" || tb_die "$p exited (see $S/logs/$p.log)"; done; }
nodes_ready() {
    alive kube-controller-manager kwok
    [[ $(kubectl get nodes -l type=kwok -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{" "}{.spec.taints[*].key}{"\n"}{end}' |
        grep -cx 'True ') == "${#KWOK_NODES[@]}" ]]
}
wait_for "kwok Nodes Ready and untainted" 120 nodes_ready
sa_ready() { alive kube-controller-manager; kubectl -n wc-test get serviceaccount default; }
wait_for "the default ServiceAccount (kube-controller-manager)" 60 sa_ready
kruise_ready() { alive openkruise; curl -fsS --max-time 2 "http://127.0.0.1:$KRUISE_HEALTH_PORT/healthz"; }
wait_for "the OpenKruise agents controller" 60 kruise_ready
as_ready() { alive agent-sandbox; curl -fsS --max-time 2 "http://127.0.0.1:$AS_HEALTH_PORT/healthz"; }
wait_for "the agent-sandbox controller" 60 as_ready
runtime_ready() { alive agent-runtime; curl -fsS --max-time 2 "http://127.0.0.1:$RUNTIME_CONTROL_PORT/healthz"; }
wait_for "the played agent-runtime" 60 runtime_ready
# One Pod through the scheduler and kwok: scheduled, Running, Ready, a loopback pod IP.
kubectl -n wc-test apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: wc-bed-smoke
spec:
  automountServiceAccountToken: false
  containers:
  - name: c
    image: registry.invalid/wc-bed-smoke:1
EOF
smoke_running() {
    alive kube-scheduler kwok
    kubectl -n wc-test get pod wc-bed-smoke -o jsonpath='{.status.phase} {.status.podIP}' | grep -q "^Running ${POD_CIDR%%.*}\."
}
wait_for "a Pod scheduled and run by kwok" 60 smoke_running
kubectl -n wc-test delete pod wc-bed-smoke --wait=false >/dev/null
echo "export WC_CRDS_DIR=$(q "$CRDS_DIR")" >>"$ENV_FILE.tmp"

mv "$ENV_FILE.tmp" "$ENV_FILE"
started_ok=1
tb_log "up: apiserver https://localhost:$API_PORT, S3 https://localhost:$S3_PORT, nodes ${KWOK_NODES[*]}, state $S"
tb_log "use: source $ENV_FILE"
