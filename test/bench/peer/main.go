// wc-bench-peer: the controller-runtime peer of worker-controller's pod backend, for the
// benchmarks (test/bench/bench.py, BENCHMARKS.md). It is what a controller-runtime user would
// write for the same job, and nothing more clever:
//
//   - a manager with default caches (namespaced to HICLAW_K8S_NAMESPACE; Workers, Pods and
//     ServiceAccounts selected by hiclaw.io/controller=<HICLAW_CONTROLLER_NAME>, like the
//     product's informers), the cache-backed client (unstructured objects too), a client whose
//     QPS is lifted so client-go's token bucket never throttles the run;
//   - one controller: For(Worker, unstructured hiclaw.io/v1beta1), Owns(Pod), Owns(ServiceAccount),
//     MaxConcurrentReconciles = HICLAW_CONCURRENCY, controller-runtime's default rate limiter;
//   - per Worker: the finalizer hiclaw.io/cleanup, the Worker's credentials Secret read through
//     the client (cached by default: BENCH_PEER_SECRETS=get reads it from the API server as the
//     product does), ServiceAccount + Pod of the product's shape (labels, controller
//     ownerReference, system env, credentials as optional secretKeyRefs, projected token volume,
//     spec-hash annotation) and a "Created" Event (events.k8s.io, as the product's), status
//     (phase, Ready/Synced conditions, instance, containerState, observedGeneration) patched only
//     when it changed; state Sleeping/Stopped delete the Pod; deletion removes Pod and
//     ServiceAccount, then the finalizer.
//
// Started like the product: `wc-bench-peer run --server URL --token-file F --ca-file F`, with
// HICLAW_K8S_NAMESPACE, HICLAW_CONTROLLER_NAME, HICLAW_CONCURRENCY, HICLAW_METRICS_ADDR
// (controller-runtime's /metrics: rest_client_requests_total, controller_runtime_reconcile_total,
// workqueue_*) and HICLAW_HEALTH_ADDR (/healthz; /readyz turns 200 once the caches synced).
// Only the pod backend: sandbox Workers are not this peer's (they are compared with the floor).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

const (
	finalizer       = "hiclaw.io/cleanup"
	labelApp        = "app"
	labelWorker     = "hiclaw.io/worker"
	labelController = "hiclaw.io/controller"
	labelRuntime    = "hiclaw.io/runtime"
	labelBackend    = "hiclaw.io/backend"
	annotationHash  = "hiclaw.io/spec-hash"
	tokenDir        = "/var/run/secrets/hiclaw"
	credsPrefix     = "hiclaw-creds-"
)

var workerGVK = schema.GroupVersionKind{Group: "hiclaw.io", Version: "v1beta1", Kind: "Worker"}

// Credentials: env name <- key of the Worker's Secret (SPEC 6).
var secretEnv = [][2]string{
	{"HICLAW_WORKER_MATRIX_TOKEN", "WORKER_MATRIX_TOKEN"},
	{"HICLAW_WORKER_GATEWAY_KEY", "WORKER_GATEWAY_KEY"},
	{"HICLAW_FS_SECRET_KEY", "WORKER_MINIO_PASSWORD"},
}

type settings struct {
	namespace, controllerName, prefix, audience string
	defaultRuntime, cpu, memory                 string
	images                                      map[string]string
	passThrough                                 map[string]string // HICLAW_CONTROLLER_URL, ...: empty ones omitted
	liveSecrets                                 bool
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func newWorker() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(workerGVK)
	return u
}

type reconciler struct {
	client.Client
	api      client.Reader // the API server, not the cache (BENCH_PEER_SECRETS=get)
	recorder events.EventRecorder
	s        settings
}

func (r *reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	w := newWorker()
	if err := r.Get(ctx, req.NamespacedName, w); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	name := r.s.prefix + "worker-" + w.GetName()
	if !w.GetDeletionTimestamp().IsZero() {
		return ctrl.Result{}, r.finalize(ctx, w, name)
	}
	if !controllerutil.ContainsFinalizer(w, finalizer) {
		patch := client.MergeFromWithOptions(w.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(w, finalizer)
		if err := r.Patch(ctx, w, patch); err != nil {
			return ctrl.Result{}, err
		}
	}
	if backend, _, _ := unstructured.NestedString(w.Object, "spec", "backendRuntime"); backend != "" && backend != "pod" {
		return ctrl.Result{}, nil // not this peer's
	}
	state, _, _ := unstructured.NestedString(w.Object, "spec", "state")
	if state == "" {
		state = "Running"
	}

	pod := &corev1.Pod{}
	err := r.Get(ctx, client.ObjectKey{Namespace: w.GetNamespace(), Name: name}, pod)
	if apierrors.IsNotFound(err) {
		pod = nil
	} else if err != nil {
		return ctrl.Result{}, err
	}
	if pod != nil && !metav1.IsControlledBy(pod, w) {
		return ctrl.Result{}, r.writeStatus(ctx, w, "Failed", nil, "", fmt.Sprintf("Pod %s exists and is not this Worker's", name), "False", "InstanceConflict")
	}

	if state != "Running" {
		if pod != nil && pod.DeletionTimestamp.IsZero() {
			if err := r.Delete(ctx, pod, client.Preconditions{UID: &pod.UID}); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, err
			}
			r.recorder.Eventf(w, nil, corev1.EventTypeNormal, "Deleted", "Delete", "deleted Pod %s", name)
		}
		phase := state
		if pod != nil {
			phase = "Stopping"
		}
		return ctrl.Result{}, r.writeStatus(ctx, w, phase, nil, "", "", "True", "Reconciled")
	}

	secret, err := r.readSecret(ctx, w)
	if err != nil {
		return ctrl.Result{}, err
	}
	desired := r.renderPod(w, name, secret)

	if pod != nil && pod.DeletionTimestamp.IsZero() && (pod.Annotations[annotationHash] != desired.Annotations[annotationHash] ||
		pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded) {
		// the spec changed, or the Pod is finished: recreate (after it is gone)
		if err := r.Delete(ctx, pod, client.Preconditions{UID: &pod.UID}); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, err
		}
		r.recorder.Eventf(w, nil, corev1.EventTypeNormal, "Deleted", "Delete", "deleted Pod %s", name)
		return ctrl.Result{}, r.writeStatus(ctx, w, "Starting", pod, "", "replacing the Pod", "True", "Reconciled")
	}
	if pod == nil {
		sa := &corev1.ServiceAccount{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: w.GetNamespace(), Name: name}, sa); apierrors.IsNotFound(err) {
			if err := r.Create(ctx, r.renderServiceAccount(w, name)); err != nil && !apierrors.IsAlreadyExists(err) {
				return ctrl.Result{}, err
			}
		} else if err != nil {
			return ctrl.Result{}, err
		}
		if err := r.Create(ctx, desired); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return ctrl.Result{Requeue: true}, nil // the cache has not seen it yet
			}
			return ctrl.Result{}, err
		}
		r.recorder.Eventf(w, nil, corev1.EventTypeNormal, "Created", "Create", "created Pod %s", name)
		pod = desired
	}
	return ctrl.Result{}, r.writeStatusFromPod(ctx, w, pod)
}

// The Worker's Secret data (nil when absent): through the cache-backed client (an informer on
// the namespace's Secrets, controller-runtime's default) or, BENCH_PEER_SECRETS=get, a GET.
func (r *reconciler) readSecret(ctx context.Context, w *unstructured.Unstructured) (map[string][]byte, error) {
	sec := &corev1.Secret{}
	var rd client.Reader = r.Client
	if r.s.liveSecrets {
		rd = r.api
	}
	err := rd.Get(ctx, client.ObjectKey{Namespace: w.GetNamespace(), Name: credsPrefix + w.GetName()}, sec)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return sec.Data, nil
}

func (r *reconciler) finalize(ctx context.Context, w *unstructured.Unstructured, name string) error {
	if !controllerutil.ContainsFinalizer(w, finalizer) {
		return nil
	}
	for _, obj := range []client.Object{&corev1.Pod{}, &corev1.ServiceAccount{}} {
		err := r.Get(ctx, client.ObjectKey{Namespace: w.GetNamespace(), Name: name}, obj)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		if !metav1.IsControlledBy(obj, w) {
			continue
		}
		if err := r.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	// never drop the finalizer while the Pod still exists (asked of the API server, not the cache)
	if err := r.api.Get(ctx, client.ObjectKey{Namespace: w.GetNamespace(), Name: name}, &corev1.Pod{}); err == nil {
		return errors.New("Pod still exists")
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	patch := client.MergeFromWithOptions(w.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(w, finalizer)
	return r.Patch(ctx, w, patch)
}

func (r *reconciler) labels(w *unstructured.Unstructured, runtimeName string) map[string]string {
	l := map[string]string{}
	for k, v := range w.GetLabels() {
		l[k] = v
	}
	if sl, ok, _ := unstructured.NestedStringMap(w.Object, "spec", "labels"); ok {
		for k, v := range sl {
			l[k] = v
		}
	}
	l[labelApp] = "hiclaw-worker"
	l[labelWorker] = w.GetName()
	l[labelController] = r.s.controllerName
	l[labelRuntime] = runtimeName
	l[labelBackend] = "pod"
	return l
}

func ownerRef(w *unstructured.Unstructured) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: workerGVK.GroupVersion().String(), Kind: workerGVK.Kind, Name: w.GetName(),
		UID: w.GetUID(), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
}

func (r *reconciler) renderServiceAccount(w *unstructured.Unstructured, name string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: w.GetNamespace(),
			Labels:          map[string]string{labelApp: "hiclaw-worker", labelController: r.s.controllerName, labelWorker: w.GetName()},
			OwnerReferences: []metav1.OwnerReference{ownerRef(w)}},
		AutomountServiceAccountToken: ptr.To(false),
	}
}

func reservedEnv(k string) bool {
	return strings.HasPrefix(k, "HICLAW_") || strings.HasPrefix(k, "OPENCLAW_") || k == "HOME"
}

func validEnvKey(k string) bool {
	if k == "" {
		return false
	}
	for i, c := range k {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// The Worker's Pod, the product's shape (SPEC 4 and 6); the spec hash covers what shapes it,
// the Secret's values included (a rotated credential restarts the agent, as the product does).
func (r *reconciler) renderPod(w *unstructured.Unstructured, name string, secret map[string][]byte) *corev1.Pod {
	spec := func(f ...string) string { v, _, _ := unstructured.NestedString(w.Object, append([]string{"spec"}, f...)...); return v }
	runtimeName := spec("runtime")
	if runtimeName == "" {
		runtimeName = r.s.defaultRuntime
	}
	image := spec("image")
	if image == "" {
		image = r.s.images[runtimeName]
	}
	workerName := spec("workerName")
	if workerName == "" {
		workerName = w.GetName()
	}
	workdir := "/root/hiclaw-fs/agents/" + workerName
	if runtimeName == "copaw" {
		workdir = "/root/.copaw-worker"
	}
	h := sha256.New()
	field := func(k, v string) { fmt.Fprintf(h, "%d:%s%d:%s", len(k), k, len(v), v) }
	field("image", image)
	field("runtime", runtimeName)
	field("workdir", workdir)
	field("audience", r.s.audience)

	var env []corev1.EnvVar
	add := func(k, v string) {
		if v != "" {
			env = append(env, corev1.EnvVar{Name: k, Value: strings.ReplaceAll(v, "$", "$$")})
			field("env:"+k, v)
		}
	}
	add("HICLAW_WORKER_NAME", workerName)
	add("HICLAW_WORKER_CR_NAME", w.GetName())
	add("HICLAW_RUNTIME", "k8s")
	for _, k := range []string{"HICLAW_CONTROLLER_URL", "HICLAW_MATRIX_URL", "HICLAW_MATRIX_DOMAIN", "HICLAW_AI_GATEWAY_URL",
		"HICLAW_FS_ENDPOINT", "HICLAW_FS_BUCKET", "HICLAW_STORAGE_PREFIX"} {
		add(k, r.s.passThrough[k])
	}
	add("HICLAW_FS_ACCESS_KEY", workerName)
	add("HICLAW_AUTH_TOKEN_FILE", tokenDir+"/token")
	add("HICLAW_CONSOLE_PORT", "8088")
	add("HOME", "/root/hiclaw-fs/agents/"+workerName)
	add("OPENCLAW_DISABLE_BONJOUR", "1")
	add("OPENCLAW_MDNS_HOSTNAME", "hiclaw-w-"+workerName)
	for _, k := range []string{"HICLAW_REGION", "HICLAW_YOLO", "HICLAW_MATRIX_DEBUG"} {
		add(k, r.s.passThrough[k])
	}
	for _, se := range secretEnv {
		env = append(env, corev1.EnvVar{Name: se[0], ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: credsPrefix + w.GetName()}, Key: se[1], Optional: ptr.To(true)}}})
		field("env-secret:"+se[0]+":"+se[1], string(secret[se[1]]))
	}
	if user, ok, _ := unstructured.NestedStringMap(w.Object, "spec", "env"); ok {
		keys := make([]string, 0, len(user))
		for k := range user {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if validEnvKey(k) && !reservedEnv(k) {
				add(k, user[k])
			}
		}
	}

	q := func(path []string, def string) resource.Quantity {
		v, _, _ := unstructured.NestedString(w.Object, append([]string{"spec", "resources"}, path...)...)
		if v == "" {
			v = def
		}
		qq, err := resource.ParseQuantity(v)
		if err != nil {
			qq = resource.MustParse(def)
		}
		return qq
	}
	res := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: q([]string{"requests", "cpu"}, "100m"),
			corev1.ResourceMemory: q([]string{"requests", "memory"}, "256Mi")},
		Limits: corev1.ResourceList{corev1.ResourceCPU: q([]string{"limits", "cpu"}, r.s.cpu),
			corev1.ResourceMemory: q([]string{"limits", "memory"}, r.s.memory)},
	}
	for _, k := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		rq, lq := res.Requests[k], res.Limits[k]
		field("requests."+string(k), rq.String())
		field("limits."+string(k), lq.String())
	}
	lbl := r.labels(w, runtimeName)
	keys := make([]string, 0, len(lbl))
	for k := range lbl {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		field("label:"+k, lbl[k])
	}
	hash := hex.EncodeToString(h.Sum(nil))[:16]

	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: w.GetNamespace(), Labels: lbl,
			Annotations: map[string]string{annotationHash: hash}, OwnerReferences: []metav1.OwnerReference{ownerRef(w)}},
		Spec: corev1.PodSpec{
			ServiceAccountName:           name,
			AutomountServiceAccountToken: ptr.To(false),
			RestartPolicy:                corev1.RestartPolicyAlways,
			Containers: []corev1.Container{{
				Name: "worker", Image: image, ImagePullPolicy: corev1.PullIfNotPresent, WorkingDir: workdir,
				Env: env, Resources: res,
				VolumeMounts: []corev1.VolumeMount{{Name: "hiclaw-token", MountPath: tokenDir, ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{{Name: "hiclaw-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
					Audience: r.s.audience, ExpirationSeconds: ptr.To(int64(3600)), Path: "token"}}}}}}},
		},
	}
}

// Status from the Pod (SPEC 3's table, the pod rows).
func (r *reconciler) writeStatusFromPod(ctx context.Context, w *unstructured.Unstructured, pod *corev1.Pod) error {
	ready := false
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	containerState := string(pod.Status.Phase)
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != "worker" || cs.State.Waiting == nil {
			continue
		}
		switch reason := cs.State.Waiting.Reason; reason {
		case "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError":
			return r.writeStatus(ctx, w, "Failed", pod, reason, reason+": "+cs.State.Waiting.Message, "False", reason)
		default:
			containerState = reason
		}
	}
	switch {
	case !pod.DeletionTimestamp.IsZero():
		return r.writeStatus(ctx, w, "Stopping", pod, containerState, "the Pod is being deleted", "False", "Stopping")
	case pod.Status.Phase == corev1.PodRunning && ready:
		return r.writeStatus(ctx, w, "Running", pod, containerState, "", "True", "Running")
	case pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded:
		return r.writeStatus(ctx, w, "Failed", pod, containerState, "the Pod finished", "False", "PodFailed")
	default:
		if containerState == "" {
			containerState = "Pending"
		}
		return r.writeStatus(ctx, w, "Starting", pod, containerState, "waiting for the instance to start", "False", "Starting")
	}
}

// Writes this controller's status fields as a merge patch, only when they changed.
func (r *reconciler) writeStatus(ctx context.Context, w *unstructured.Unstructured, phase string, pod *corev1.Pod,
	containerState, message, readyStatus, readyReason string) error {
	orig := w.DeepCopy()
	st, _, _ := unstructured.NestedMap(w.Object, "status")
	if st == nil {
		st = map[string]interface{}{}
	}
	gen := w.GetGeneration()
	st["observedGeneration"] = gen
	st["phase"] = phase
	st["backendRuntime"] = "pod"
	st["containerState"] = containerState
	st["message"] = message
	if pod != nil && pod.DeletionTimestamp.IsZero() {
		inst := map[string]interface{}{"kind": "Pod", "name": pod.Name}
		if pod.Status.PodIP != "" {
			inst["podIP"] = pod.Status.PodIP
		}
		st["instance"] = inst
	} else {
		delete(st, "instance")
	}
	var conds []metav1.Condition
	if raw, ok := st["conditions"].([]interface{}); ok {
		for _, c := range raw {
			if m, ok := c.(map[string]interface{}); ok {
				var cond metav1.Condition
				if runtime.DefaultUnstructuredConverter.FromUnstructured(m, &cond) == nil {
					conds = append(conds, cond)
				}
			}
		}
	}
	setCond := func(t, status, reason, msg string) {
		for i := range conds {
			if conds[i].Type == t {
				if conds[i].Status != metav1.ConditionStatus(status) {
					conds[i].LastTransitionTime = metav1.Now()
				}
				conds[i].Status, conds[i].Reason, conds[i].Message, conds[i].ObservedGeneration = metav1.ConditionStatus(status), reason, msg, gen
				return
			}
		}
		conds = append(conds, metav1.Condition{Type: t, Status: metav1.ConditionStatus(status), Reason: reason, Message: msg,
			ObservedGeneration: gen, LastTransitionTime: metav1.Now()})
	}
	readyMsg := ""
	if readyStatus != "True" {
		readyMsg = message
	}
	setCond("Ready", readyStatus, readyReason, readyMsg)
	setCond("Synced", "True", "Reconciled", "")
	out := make([]interface{}, 0, len(conds))
	for i := range conds {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&conds[i])
		if err != nil {
			return err
		}
		out = append(out, m)
	}
	st["conditions"] = out
	if err := unstructured.SetNestedMap(w.Object, st, "status"); err != nil {
		return err
	}
	if equality.Semantic.DeepEqual(orig.Object["status"], w.Object["status"]) {
		return nil
	}
	return r.Status().Patch(ctx, w, client.MergeFrom(orig))
}

func main() {
	if len(os.Args) < 2 || os.Args[1] != "run" {
		fmt.Fprintln(os.Stderr, "usage: wc-bench-peer run --server URL --token-file FILE --ca-file FILE")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	server := fs.String("server", "", "API server URL")
	tokenFile := fs.String("token-file", "", "bearer token file")
	caFile := fs.String("ca-file", "", "CA bundle of the API server")
	if err := fs.Parse(os.Args[2:]); err != nil || *server == "" || *tokenFile == "" || *caFile == "" {
		fmt.Fprintln(os.Stderr, "wc-bench-peer run: --server, --token-file and --ca-file are required")
		os.Exit(2)
	}
	concurrency, err := strconv.Atoi(getenv("HICLAW_CONCURRENCY", "4"))
	if err != nil || concurrency < 1 {
		fmt.Fprintln(os.Stderr, "wc-bench-peer: HICLAW_CONCURRENCY must be a positive integer")
		os.Exit(2)
	}
	s := settings{
		namespace:      getenv("HICLAW_K8S_NAMESPACE", "default"),
		controllerName: getenv("HICLAW_CONTROLLER_NAME", "hiclaw-controller"),
		prefix:         getenv("HICLAW_RESOURCE_PREFIX", "hiclaw-"),
		audience:       getenv("HICLAW_AUTH_AUDIENCE", "hiclaw-controller"),
		defaultRuntime: getenv("HICLAW_DEFAULT_WORKER_RUNTIME", "openclaw"),
		cpu:            getenv("HICLAW_K8S_WORKER_CPU", "1000m"),
		memory:         getenv("HICLAW_K8S_WORKER_MEMORY", "2Gi"),
		images: map[string]string{
			"openclaw": getenv("HICLAW_WORKER_IMAGE", "hiclaw/worker-agent:latest"),
			"copaw":    getenv("HICLAW_COPAW_WORKER_IMAGE", "hiclaw/copaw-worker:latest"),
			"hermes":   getenv("HICLAW_HERMES_WORKER_IMAGE", "hiclaw/hermes-worker:latest"),
		},
		passThrough: map[string]string{},
		liveSecrets: os.Getenv("BENCH_PEER_SECRETS") == "get",
	}
	for _, k := range []string{"HICLAW_CONTROLLER_URL", "HICLAW_MATRIX_URL", "HICLAW_MATRIX_DOMAIN", "HICLAW_AI_GATEWAY_URL",
		"HICLAW_FS_ENDPOINT", "HICLAW_FS_BUCKET", "HICLAW_STORAGE_PREFIX", "HICLAW_REGION", "HICLAW_YOLO", "HICLAW_MATRIX_DEBUG"} {
		s.passThrough[k] = os.Getenv(k)
	}
	level := zap.Level(zapcore.Level(zapLevel(getenv("HICLAW_LOG_LEVEL", "info"))))
	ctrl.SetLogger(zap.New(level))

	cfg := &rest.Config{Host: *server, BearerTokenFile: *tokenFile, TLSClientConfig: rest.TLSClientConfig{CAFile: *caFile},
		QPS: 5000, Burst: 10000, UserAgent: "wc-bench-peer"}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	sel := labels.SelectorFromSet(labels.Set{labelController: s.controllerName})
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: getenv("HICLAW_METRICS_ADDR", ":8080")},
		HealthProbeBindAddress: getenv("HICLAW_HEALTH_ADDR", ":8081"),
		LeaderElection:         false,
		Cache: cache.Options{
			DefaultNamespaces: map[string]cache.Config{s.namespace: {}},
			ByObject: map[client.Object]cache.ByObject{
				newWorker():              {Label: sel},
				&corev1.Pod{}:            {Label: sel},
				&corev1.ServiceAccount{}: {Label: sel},
			},
		},
		Client: client.Options{Cache: &client.CacheOptions{Unstructured: true}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "wc-bench-peer:", err)
		os.Exit(1)
	}
	r := &reconciler{Client: mgr.GetClient(), api: mgr.GetAPIReader(), recorder: mgr.GetEventRecorder("hiclaw.io/worker-controller"), s: s}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("worker").
		For(newWorker()).
		Owns(&corev1.Pod{}).
		Owns(&corev1.ServiceAccount{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency}).
		Complete(r); err != nil {
		fmt.Fprintln(os.Stderr, "wc-bench-peer:", err)
		os.Exit(1)
	}
	// /readyz: 200 once the caches the reconciler reads are synced (the product's meaning).
	var synced atomic.Bool
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		kinds := []client.Object{newWorker(), &corev1.Pod{}, &corev1.ServiceAccount{}}
		if !s.liveSecrets {
			kinds = append(kinds, &corev1.Secret{})
		}
		for _, k := range kinds {
			if _, err := mgr.GetCache().GetInformer(ctx, k); err != nil {
				return err
			}
		}
		if mgr.GetCache().WaitForCacheSync(ctx) {
			synced.Store(true)
		}
		<-ctx.Done()
		return nil
	})); err != nil {
		panic(err)
	}
	_ = mgr.AddHealthzCheck("ping", func(*http.Request) error { return nil })
	_ = mgr.AddReadyzCheck("caches", func(*http.Request) error {
		if synced.Load() {
			return nil
		}
		return errors.New("caches not synced")
	})
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		fmt.Fprintln(os.Stderr, "wc-bench-peer:", err)
		os.Exit(1)
	}
}

func zapLevel(s string) int {
	switch s {
	case "debug":
		return -1
	case "warn":
		return 1
	case "error":
		return 2
	}
	return 0
}
