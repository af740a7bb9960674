"""What must never happen, checked while the chaos runs — from the cluster, the storage and the
played agent-runtime, independently of the controller (nothing here reads its logs for state).

Each object of a Worker is tracked with the interval of etcd revisions it existed in (the
resourceVersion of the event that first showed it as the Worker's, and of its deletion): on one
etcd, revisions are a single global order, so "alive at the same time" is an exact question even
though Pods, claims and Sandboxes arrive on separate watches. Objects belong to a Worker by UID
(a Pod or claim by its controller ownerReference; a Sandbox, and the Pod OpenKruise runs it in,
by the hiclaw.io/worker-uid label the claim gives them), so a Worker recreated under the same
name is another Worker.

Invariants (the name is in every violation message):
  both-backends        a Pod instance and a claim or Sandbox of one Worker alive at the same time
  duplicate-instance   two Pod instances, or two (not deleting) Sandboxes, of one Worker at once
  orphan               a Worker gone while any Pod, claim, Sandbox, ServiceAccount or worker-deps
                       object of it remains, after a grace period
  claim-before-deps    a claim whose env and token objects did not exist when it appeared
  foreign-deps         a sandbox mounted an env file or token that is another Worker's
  secret-leak          a planted secret value in a controller log, an Event, a Worker's status,
                       or the spec of a Pod, claim or Sandbox
  two-writers          two controller replicas writing in the same second (after a leader change)
  running-while-idle   status Running while no instance runs, for longer than a grace period
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from typing import Optional

from kubernetes import client, watch

KG, KV = "agents.kruise.io", "v1alpha1"
WORKER_UID_LABEL = "hiclaw.io/worker-uid"
INF = float("inf")


def _rv(obj: dict) -> int:
    return int(obj["metadata"].get("resourceVersion") or 0)


def _controller_owner(md: dict) -> Optional[dict]:
    for r in md.get("ownerReferences") or []:
        if r.get("controller"):
            return r
    return None


class Track:
    """One object's life as a Worker's: the revisions it began and ended at."""

    __slots__ = ("kind", "uid", "name", "worker_uid", "start", "end", "deleting", "obj")

    def __init__(self, kind: str, uid: str, name: str, worker_uid: str, start: int):
        self.kind, self.uid, self.name, self.worker_uid, self.start = kind, uid, name, worker_uid, start
        self.end = INF          # revision of its deletion
        self.deleting = INF     # revision at which deletionTimestamp was first seen
        self.obj: dict = {}


def _overlap(a0, a1, b0, b1) -> bool:
    return max(a0, b0) < min(a1, b1)


class Checker:
    def __init__(self, tb, api, ns: str, s3, runtime, controller_users: list, planted: list,
                 log_paths: list, grace_s: float = 45.0, log=print):
        self.tb, self.api, self.ns, self.s3, self.runtime = tb, api, ns, s3, runtime
        self.controller_users, self.planted, self.log_paths = set(controller_users), list(planted), log_paths
        self.grace = grace_s
        self.log = log
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.lock = threading.Lock()
        self.tracks: dict = {}                 # uid -> Track
        self.workers: dict = {}                # worker uid -> last Worker dict
        self.worker_gone: dict = {}            # worker uid -> (monotonic time, last Worker dict, deps paths seen)
        self.deps_paths: dict = {}             # worker uid -> set of workerDepsPath seen
        self.claims_checked: set = set()
        self.violations: list = []
        self._reported: set = set()
        self.checks = 0
        self.healthy = {k: False for k in ("pods", "claims", "sandboxes", "workers")}
        self.idle_since: dict = {}             # worker uid -> monotonic time status Running with nothing running
        self.audit_offset = self._audit_size()
        self.runtime_calls_seen = 0
        self._stop = threading.Event()
        self._threads: list = []

    # ---- reporting ---------------------------------------------------------------------------
    def violate(self, invariant: str, key: str, msg: str) -> None:
        with self.lock:
            if (invariant, key) in self._reported:
                return
            self._reported.add((invariant, key))
            self.violations.append(f"INVARIANT {invariant}: {msg}")
        self.log(f"VIOLATION {invariant}: {msg}")

    # ---- watches -------------------------------------------------------------------------------
    def start(self) -> "Checker":
        kinds = {"pods": (self.core.list_namespaced_pod, {"namespace": self.ns}),
                 "claims": (self.custom.list_namespaced_custom_object,
                            {"group": KG, "version": KV, "namespace": self.ns, "plural": "sandboxclaims"}),
                 "sandboxes": (self.custom.list_namespaced_custom_object,
                               {"group": KG, "version": KV, "namespace": self.ns, "plural": "sandboxes"}),
                 "workers": (self.custom.list_namespaced_custom_object,
                             {"group": "hiclaw.io", "version": "v1beta1", "namespace": self.ns, "plural": "workers"})}
        for kind, (fn, kw) in kinds.items():
            t = threading.Thread(target=self._watch, args=(kind, fn, kw), daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._sweeper, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(20)

    def _watch(self, kind: str, fn, kw: dict) -> None:
        while not self._stop.is_set():
            try:
                if kind == "pods":
                    lst = self.api.sanitize_for_serialization(fn(**kw))
                else:
                    lst = fn(**kw)
                rv = lst["metadata"]["resourceVersion"]
                listed = set()
                for o in lst.get("items") or []:
                    listed.add(o["metadata"]["uid"])
                    self._event(kind, "ADDED", o)
                self._relisted(kind, listed, int(rv))
                self.healthy[kind] = True
                w = watch.Watch()
                for ev in w.stream(fn, resource_version=rv, timeout_seconds=60, _request_timeout=90, **kw):
                    if self._stop.is_set():
                        break
                    o = ev["object"]
                    if not isinstance(o, dict):
                        o = self.api.sanitize_for_serialization(o)
                    if ev["type"] == "ERROR":
                        break
                    self._event(kind, ev["type"], o)
            except Exception:
                self.healthy[kind] = False
                time.sleep(0.5)

    def _relisted(self, kind: str, listed: set, rv: int) -> None:
        """After a relist: tracked objects of that kind the list no longer has are gone. When they
        went is unknown — somewhere after the last revision seen of them, up to the list's (the
        watch was down in between) — so they count as alive only up to that last revision seen:
        an overlap is reported when it is certain, never inferred from the blind window."""
        want = {"pods": ("pod", "sandbox-pod"), "claims": ("claim",), "sandboxes": ("sandbox",), "workers": ()}[kind]
        with self.lock:
            for t in self.tracks.values():
                if t.kind in want and t.end == INF and t.uid not in listed:
                    t.end = min(rv, _rv(t.obj) + 1) if t.obj else rv
        if kind == "workers":
            for uid in list(self.workers):
                if uid not in listed:
                    self._worker_gone(uid)

    def _event(self, kind: str, etype: str, o: dict) -> None:
        md = o["metadata"]
        uid, rv = md["uid"], _rv(o)
        if kind == "workers":
            if etype == "DELETED":
                self._worker_gone(uid, o)
            else:
                with self.lock:
                    self.workers[uid] = o
                    p = (o.get("status") or {}).get("workerDepsPath")
                    if p:
                        self.deps_paths.setdefault(uid, set()).add(p)
            return
        labels = md.get("labels") or {}
        owner = _controller_owner(md)
        if kind == "pods":
            if owner and owner.get("kind") == "Worker":
                tkind, wuid = "pod", owner["uid"]
            elif labels.get(WORKER_UID_LABEL):
                tkind, wuid = "sandbox-pod", labels[WORKER_UID_LABEL]
            else:
                return
        elif kind == "claims":
            if not owner or owner.get("kind") != "Worker":
                return
            tkind, wuid = "claim", owner["uid"]
        else:
            if not labels.get(WORKER_UID_LABEL):
                return
            tkind, wuid = "sandbox", labels[WORKER_UID_LABEL]
        with self.lock:
            t = self.tracks.get(uid)
            if t is None:
                t = self.tracks[uid] = Track(tkind, uid, md["name"], wuid, rv)
            t.obj = o
            if md.get("deletionTimestamp") and t.deleting == INF:
                t.deleting = rv
            if etype == "DELETED" and t.end == INF:
                t.end = rv
        if tkind == "claim" and etype == "ADDED" and uid not in self.claims_checked:
            self.claims_checked.add(uid)
            threading.Thread(target=self._check_claim_deps, args=(o,), daemon=True).start()

    def _worker_gone(self, uid: str, last: Optional[dict] = None) -> None:
        with self.lock:
            w = self.workers.pop(uid, None) or last
            if uid not in self.worker_gone:
                self.worker_gone[uid] = (time.monotonic(), w, set(self.deps_paths.get(uid, set())))

    # ---- the checks --------------------------------------------------------------------------------
    def _check_claim_deps(self, claim: dict) -> None:
        """claim-before-deps: the env and token the claim mounts exist, owned by its Worker."""
        md = claim["metadata"]
        owner = _controller_owner(md)["uid"]
        subs = {m.get("mountPath"): m.get("subPath") for m in claim["spec"].get("dynamicVolumesMount") or []}
        keys = {"token": (subs.get("/var/run/secrets/hiclaw") or "") + "/token",
                "env": (subs.get("/mnt/hiclaw/env") or "") + "/env"}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not self._stop.is_set():
            try:
                missing = []
                for what, key in keys.items():
                    try:
                        h = self.s3.head_object(Bucket=self.tb.WC_S3_BUCKET, Key=key)
                        if h["Metadata"].get("hiclaw-owner-uid") not in (None, owner):
                            missing.append(f"{what} owned by {h['Metadata'].get('hiclaw-owner-uid')}")
                    except Exception as e:
                        code = getattr(e, "response", {}).get("Error", {}).get("Code")
                        if code in ("404", "NoSuchKey", "NotFound"):
                            missing.append(what)
                        else:
                            raise
                with self.lock:
                    self.checks += 1
                if missing:
                    t = self.tracks.get(md["uid"])
                    if t and (t.deleting != INF or t.end != INF):
                        return  # already being torn down: its deps may be going too
                    self.violate("claim-before-deps", md["uid"],
                                 f"claim {md['name']} of Worker uid {owner} appeared while {', '.join(missing)} "
                                 f"did not exist ({', '.join(keys.values())})")
                return
            except Exception:
                time.sleep(1)  # S3 unreachable (a fault): look again

    def _sweeper(self) -> None:
        last_slow = 0.0
        while not self._stop.wait(2.0):
            try:
                self.sweep()
                if time.monotonic() - last_slow > 20:
                    last_slow = time.monotonic()
                    self.sweep_slow()
            except Exception as e:
                self.log(f"checker sweep error (retrying): {e!r}")

    def sweep(self) -> None:
        with self.lock:
            tracks = list(self.tracks.values())
            workers = dict(self.workers)
        by_worker: dict = {}
        for t in tracks:
            by_worker.setdefault(t.worker_uid, []).append(t)
        self._check_overlaps(by_worker)
        self._check_running(workers, by_worker)
        self._check_two_writers()
        self._check_orphans(by_worker)
        self._check_mounts(tracks)

    def check_overlaps(self) -> None:
        """both-backends and duplicate-instance alone (the other checks need the bed's files)."""
        with self.lock:
            tracks = list(self.tracks.values())
        by_worker: dict = {}
        for t in tracks:
            by_worker.setdefault(t.worker_uid, []).append(t)
        self._check_overlaps(by_worker)

    def _check_overlaps(self, by_worker: dict) -> None:
        for wuid, ts in by_worker.items():
            pods = [t for t in ts if t.kind == "pod"]
            sbx = [t for t in ts if t.kind in ("claim", "sandbox")]
            self.checks += 2
            for p in pods:
                for s in sbx:
                    if _overlap(p.start, p.end, s.start, s.end):
                        self.violate("both-backends", f"{p.uid}/{s.uid}",
                                     f"Worker uid {wuid}: Pod {p.name} [{p.start},{p.end}) and {s.kind} {s.name} "
                                     f"[{s.start},{s.end}) alive at the same time")
            # Pods until gone; Sandboxes until their deletion began (OpenKruise replaces a failed
            # claim attempt's sandbox while the old one is deleted)
            for group, end_of in ((pods, lambda t: t.end),
                                  ([t for t in ts if t.kind == "sandbox"], lambda t: min(t.deleting, t.end))):
                for i, a in enumerate(group):
                    for b in group[i + 1:]:
                        if _overlap(a.start, end_of(a), b.start, end_of(b)):
                            self.violate("duplicate-instance", f"{a.uid}/{b.uid}",
                                         f"Worker uid {wuid}: two {a.kind}s {a.name} and {b.name} at once")

    def _check_running(self, workers: dict, by_worker: dict) -> None:
        """running-while-idle: status Running needs a running instance, within a grace period."""
        now = time.monotonic()
        if not all(self.healthy.values()):
            self.idle_since.clear()  # cannot see: judge nothing
            return
        for wuid, w in workers.items():
            st = w.get("status") or {}
            if st.get("phase") != "Running" or w["metadata"].get("deletionTimestamp"):
                self.idle_since.pop(wuid, None)
                continue
            self.checks += 1
            ts = by_worker.get(wuid, [])
            runs = False
            for t in ts:
                if t.end != INF:
                    continue
                s = t.obj.get("status") or {}
                if t.kind == "pod":
                    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in s.get("conditions") or [])
                    runs |= s.get("phase") == "Running" and ready
                elif t.kind == "sandbox" and t.deleting == INF:
                    runs |= s.get("phase") == "Running"
            if runs:
                self.idle_since.pop(wuid, None)
            else:
                since = self.idle_since.setdefault(wuid, now)
                if now - since > self.grace:
                    self.violate("running-while-idle", f"{wuid}@{int(since)}",
                                 f"Worker {w['metadata']['name']} (uid {wuid}) says Running, nothing of it has run for "
                                 f"{now - since:.0f}s")

    def _audit_size(self) -> int:
        import os
        try:
            return os.path.getsize(self.tb.WC_AUDIT_LOG)
        except OSError:
            return 0

    def _check_two_writers(self) -> None:
        """two-writers: never two controller identities writing in the same second."""
        try:
            with open(self.tb.WC_AUDIT_LOG, "r", errors="replace") as f:
                f.seek(self.audit_offset)
                data = f.read()
        except OSError:
            return
        cut = data.rfind("\n") + 1
        self.audit_offset += len(data[:cut].encode())
        seconds: dict = getattr(self, "_seconds", {})
        self._seconds = seconds
        for line in data[:cut].splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            user = (rec.get("user") or {}).get("username")
            if user not in self.controller_users or rec.get("stage") != "ResponseComplete":
                continue
            if (rec.get("objectRef") or {}).get("resource") == "leases":
                continue
            sec = (rec.get("requestReceivedTimestamp") or "")[:19]
            seconds.setdefault(sec, set()).add(user)
            self.checks += 1
            if len(seconds[sec]) > 1:
                self.violate("two-writers", sec, f"controller identities {sorted(seconds[sec])} both wrote in {sec}")

    def _check_orphans(self, by_worker: dict) -> None:
        """orphan: a Worker gone, after the grace period nothing of it may remain."""
        now = time.monotonic()
        for wuid, (t0, w, paths) in list(self.worker_gone.items()):
            if now - t0 < self.grace:
                continue
            left = [f"{t.kind} {t.name}" for t in by_worker.get(wuid, []) if t.end == INF]
            ns, name = self.ns, (w or {}).get("metadata", {}).get("name", "?")
            try:
                for sa in self.core.list_namespaced_service_account(ns, label_selector=f"hiclaw.io/worker={name}").items:
                    if any(r.uid == wuid for r in sa.metadata.owner_references or []):
                        left.append(f"ServiceAccount {sa.metadata.name}")
                for p in paths:
                    for k in ("token/token", "env/env", "data/.keep"):
                        try:
                            h = self.s3.head_object(Bucket=self.tb.WC_S3_BUCKET, Key=p + k)
                            if h["Metadata"].get("hiclaw-owner-uid") == wuid:
                                left.append(f"s3://{self.tb.WC_S3_BUCKET}/{p}{k}")
                        except Exception as e:
                            if getattr(e, "response", {}).get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                                raise
            except Exception:
                continue  # cannot look now (a fault): look again next sweep
            self.checks += 1
            if left:
                self.violate("orphan", wuid, f"Worker {name} (uid {wuid}) gone for {now - t0:.0f}s, still: {', '.join(left)}")
            del self.worker_gone[wuid]

    def _check_mounts(self, tracks: list) -> None:
        """foreign-deps: every env file a sandbox received names the Worker the sandbox is for."""
        try:
            calls = self.runtime.calls()
        except Exception:
            return
        sandboxes = {t.name: t for t in tracks if t.kind == "sandbox"}
        workers_by_uid = {}
        with self.lock:
            for uid, w in self.workers.items():
                workers_by_uid[uid] = w
            for uid, (_, w, _) in self.worker_gone.items():
                if w:
                    workers_by_uid[uid] = w
        for c in calls[self.runtime_calls_seen:]:
            self.runtime_calls_seen += 1
            if c.get("kind") != "mount" or not c.get("ok") or not (c.get("pod") or "").startswith(self.ns + "/"):
                continue
            sname = c["pod"].split("/", 1)[1]
            t = sandboxes.get(sname)
            if t is None:
                continue
            w = workers_by_uid.get(t.worker_uid)
            if not w:
                continue
            want = w["metadata"]["name"]
            self.checks += 1
            if c.get("target") == "/mnt/hiclaw/env":
                body = self.runtime.snapshot(self.ns, sname, "/mnt/hiclaw/env/env") or b""
                m = re.search(rb"^export HICLAW_WORKER_CR_NAME='([^']*)'", body, re.M)
                got = m.group(1).decode() if m else None
                if got is not None and got != want:
                    self.violate("foreign-deps", f"{sname}/env/{c['uid']}",
                                 f"Sandbox {sname} of Worker {want} mounted the env file of Worker {got}")

    def sweep_slow(self) -> None:
        """secret-leak: no planted value in logs, Events, Worker statuses, Pod/claim/Sandbox specs."""
        texts = {}
        for p in self.log_paths:
            try:
                with open(p, errors="replace") as f:
                    texts[f"log {p}"] = f.read()
            except OSError:
                pass
        try:
            for api_name, fn in (("events", client.EventsV1Api(self.api).list_namespaced_event),
                                 ("core events", self.core.list_namespaced_event)):
                texts[api_name] = fn(self.ns, _preload_content=False).data.decode(errors="replace")
            ws = self.custom.list_namespaced_custom_object("hiclaw.io", "v1beta1", self.ns, "workers")
            texts["Worker statuses"] = json.dumps([w.get("status") for w in ws.get("items") or []])
            pods = json.loads(self.core.list_namespaced_pod(self.ns, _preload_content=False).data)
            texts["Pod specs"] = json.dumps([p.get("spec") for p in pods.get("items") or []])
            for plural in ("sandboxclaims", "sandboxes"):
                items = self.custom.list_namespaced_custom_object(KG, KV, self.ns, plural).get("items") or []
                texts[plural] = json.dumps([o.get("spec") for o in items])
        except Exception:
            return
        self.checks += 1
        for where, text in texts.items():
            for v in self.planted:
                if v in text:
                    self.violate("secret-leak", f"{where}/{v[:6]}", f"a planted secret value appeared in {where}")
