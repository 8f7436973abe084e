"""One pod on this node: sandbox, files, init containers, containers, status, termination."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import time
from typing import Any

from servicenet.api.views import Obj
from servicenet.common import log
from servicenet.common.component import cancel_and_wait
from servicenet.node import container as ct
from servicenet.node import podinit, projected, reaper
from servicenet.node.envvars import EnvError, container_env, expand_command
from servicenet.node.host import PodHost
from servicenet.node.network import PodSandbox
from servicenet.node.podsecurity import PodSecurityError, RunAs, run_as
from servicenet.node.podspec import (
    ImageNotRunnable,
    container_argv,
    pod_hostname,
    render_hosts,
    render_resolv_conf,
)
from servicenet.node.process import ContainerProcess, spawn
from servicenet.node.status import KUBELET_CONDITIONS, compute_pod_status, waiting_state

__all__ = ["PodWorker"]

_log = log.get("node.pod")


class PodWorker:
    def __init__(self, runtime: PodHost, pod: Obj, *, sandbox: PodSandbox | None = None,
                 adopted: dict[str, dict[str, Any]] | None = None, start_time: str | None = None) -> None:
        self.runtime = runtime
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta.get("uid") or f"{meta.get('namespace')}/{meta['name']}"
        self.key = f"{meta.get('namespace', 'default')}/{meta['name']}"
        self.dir = os.path.join(runtime.cfg.data_dir, "pods", f"{meta.get('namespace', 'default')}_{meta['name']}_{self.uid}")
        self.sandbox = sandbox
        self.start_time = start_time or ct.now_str()
        spec = pod.get("spec") or {}
        self.inits = [ct.ContainerRun(c, init=True) for c in spec.get("initContainers") or []]
        self.runs = [ct.ContainerRun(c) for c in spec.get("containers") or []]
        self.terminating = False
        self.finished = False
        self._adopted = adopted or {}
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._main: asyncio.Task[None] | None = None
        self._status_task: asyncio.Task[None] | None = None
        self._last_status: Obj | None = None
        self._created_paths: list[str] = []
        self._refresh: dict[str, asyncio.Task[None]] = {}  # projected volume -> token refresher
        self.status_written = asyncio.Event()

    # -- helpers used by containers -------------------------------------------------------------
    def pod_ip(self) -> str:
        return self.sandbox.ip if self.sandbox else ""

    def grace_seconds(self) -> float:
        g = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        return float(30 if g is None else g)

    def mark_dirty(self) -> None:
        self._dirty.set()

    def event(self, etype: str, reason: str, message: str) -> None:
        self.runtime.emit_event(self.pod, etype, reason, message)

    def container_finished(self, run: ct.ContainerRun) -> None:
        self.mark_dirty()

    def run_by_name(self, name: str | None) -> ct.ContainerRun | None:
        runs = self.runs + self.inits
        if not name:
            return self.runs[0] if self.runs else None
        return next((r for r in runs if r.name == name), None)

    def exec_argv(self, run: ct.ContainerRun, argv: list[str]) -> list[str]:
        """argv that runs ``argv`` inside the container's namespaces, as the container's user."""
        if self.sandbox is not None and self.sandbox.netns and run.proc is not None:
            as_user: list[str] = []
            with contextlib.suppress(PodSecurityError):
                user = self._run_as(run)
                if user is not None and not user.root:
                    as_user = ["-S", str(user.uid), "-G", str(user.gid)]
            return ["nsenter", "-t", str(run.proc.pid), "-n", "-u", "-m", *as_user, "--", *argv]
        return argv

    def _run_as(self, run: ct.ContainerRun) -> RunAs | None:
        """The user a netns-mode container runs as (None: the agent's own, loopback mode)."""
        default = self.runtime.cfg.default_user
        if default is None or self.runtime.network.mode != "netns":
            return None
        return run_as(self.pod, run.spec, default)

    async def exec_probe(self, run: ct.ContainerRun, argv: list[str], timeout: float) -> int:
        proc = await asyncio.create_subprocess_exec(
            *self.exec_argv(run, argv), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **run.env},
            start_new_session=True)
        try:
            async with asyncio.timeout(timeout):
                return await proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        self._status_task = asyncio.create_task(self._status_loop(), name=f"status {self.key}")
        self._main = asyncio.create_task(self._run(), name=f"pod {self.key}")

    def update(self, pod: Obj) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp") and not self.terminating:
            asyncio.create_task(self.terminate(finalize=True))
        else:
            self.mark_dirty()  # e.g. readiness gate conditions changed

    async def _run(self) -> None:
        try:
            if self.sandbox is None:
                self.sandbox = await self.runtime.network.add_pod(self.uid)
            os.makedirs(self.dir, exist_ok=True)
            self.save_state()
            self._write_files()
            self.mark_dirty()
            if self.runtime.network.mode == "virtual":
                await asyncio.sleep(self.runtime.cfg.virtual_ready_delay)
                for run in self.runs:
                    run.state, run.ready, run.started = ct.running_state(ct.now_str()), True, True
                self.mark_dirty()
                return
            for run in self.inits:
                if run.name in self._adopted.get("done_inits", {}):
                    run.done, run.state = True, self._adopted["done_inits"][run.name]
                    continue
                await ct.supervise(self, run, self._start_container)
                if not run.done or (run.state.get("terminated") or {}).get("exitCode") != 0:
                    return  # init failed for good (restartPolicy Never) or pod terminating
            adopted = self._adopted.get("containers", {})
            for run in self.runs:
                proc = self._adopt_proc(run, adopted.get(run.name))
                self._tasks.append(asyncio.create_task(ct.supervise(self, run, self._start_container, proc)))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _log.exception("pod setup failed", pod=self.key)
            self.event("Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {exc}")

    def _adopt_proc(self, run: ct.ContainerRun, saved: dict[str, Any] | None) -> ContainerProcess | None:
        if not saved:
            return None
        proc = ContainerProcess(pid=saved["pid"], start_ticks=saved.get("start_ticks"))
        run.restart_count = saved.get("restart_count", 0)
        run.log_path = saved.get("log", "")
        run.env = saved.get("env", {})
        if proc.alive():
            run.state = ct.running_state(saved.get("started_at") or ct.now_str())
            return proc
        return None

    def _write_files(self) -> None:
        cfg = self.runtime.cfg
        with open(os.path.join(self.dir, "resolv.conf"), "w") as f:
            f.write(render_resolv_conf(self.pod, cfg.cluster_dns, cfg.cluster_domain, cfg.host_resolv))
        with open(os.path.join(self.dir, "hosts"), "w") as f:
            f.write(render_hosts(self.pod, [self.pod_ip()] if self.pod_ip() else [], cfg.cluster_domain))

    async def _volumes(self) -> dict[str, str]:
        """Materialise volumes under the pod dir; name -> host path."""
        out: dict[str, str] = {}
        ns = self.pod["metadata"].get("namespace") or "default"
        for vol in (self.pod.get("spec") or {}).get("volumes") or []:
            path = os.path.join(self.dir, "volumes", vol["name"])
            if "hostPath" in vol:
                out[vol["name"]] = vol["hostPath"]["path"]
                continue
            if "projected" in vol:
                await self._projected(vol, path)
                out[vol["name"]] = path
                continue
            os.makedirs(path, exist_ok=True)
            if "emptyDir" in vol:
                os.chmod(path, 0o777)  # writable whatever user the containers run as (as upstream)
            src = vol.get("configMap") or vol.get("secret")
            if src is not None:
                kind = "configmaps" if "configMap" in vol else "secrets"
                name = src.get("name") or src.get("secretName") or ""
                obj = await self.runtime.fetch(kind, ns, name)
                data: dict[str, bytes] = {}
                if obj is not None:
                    for k, v in (obj.get("data") or {}).items():
                        data[k] = base64.b64decode(v) if kind == "secrets" else v.encode()
                    for k, v in (obj.get("binaryData") or {}).items():
                        data[k] = base64.b64decode(v)
                items = src.get("items")
                pairs = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
                for key, rel in pairs:
                    if key in data:
                        target = os.path.join(path, rel)
                        os.makedirs(os.path.dirname(target), exist_ok=True)
                        with open(target, "wb") as f:
                            f.write(data[key])
            out[vol["name"]] = path
        return out

    def _token_owner(self, vol: Obj) -> tuple[set[str], int, int] | None:
        """Token files are 0600 and owned by the containers' user when they all run as one user
        (the kubelet's rule); otherwise the volume's mode applies."""
        paths = projected.token_paths(vol)
        if not paths:
            return None
        users: set[tuple[int, int]] = set()
        for run in self.runs + self.inits:
            try:
                ra = self._run_as(run)
            except PodSecurityError:
                continue
            users.add((ra.uid, ra.gid) if ra is not None else (os.getuid(), os.getgid()))
        if len(users) != 1:
            return None
        uid, gid = users.pop()
        return paths, uid, gid

    async def _projected(self, vol: Obj, path: str) -> None:
        """Write a projected volume; keep its ServiceAccount token fresh (80 % of its lifetime)."""
        rt = self.runtime
        files, at = await projected.collect(self.pod, vol, rt.fetch, rt.request_token)
        projected.write_atomic(path, files, int(vol["projected"].get("defaultMode") or 0o644), self._token_owner(vol))
        old = self._refresh.pop(vol["name"], None)
        if old is not None:
            old.cancel()
        if at:
            self._refresh[vol["name"]] = asyncio.create_task(self._refresh_later(vol, path, at))

    async def _refresh_later(self, vol: Obj, path: str, at: float) -> None:
        while True:
            await asyncio.sleep(max(at - time.time(), 0.0))
            try:
                files, at = await projected.collect(self.pod, vol, self.runtime.fetch, self.runtime.request_token)
                projected.write_atomic(path, files, int(vol["projected"].get("defaultMode") or 0o644),
                                       self._token_owner(vol))
            except Exception as exc:  # the API may be briefly unreachable: try again soon
                _log.warning("projected volume refresh failed", pod=self.key, volume=vol["name"], error=repr(exc))
                at = time.time() + 10.0

    async def _start_container(self, run: ct.ContainerRun) -> bool:
        """Start one container process; False if it cannot start (stays waiting)."""
        try:
            sources = await self.runtime.env_sources(self.pod, run.spec)
            env = container_env(self.pod_with_ips(), run.spec, sources)
            argv = expand_command(container_argv(run.spec), env)
            user = self._run_as(run)
        except (EnvError, ImageNotRunnable, PodSecurityError) as exc:
            reason = "ErrImageNeverPull" if isinstance(exc, ImageNotRunnable) else "CreateContainerConfigError"
            run.state = waiting_state(reason, str(exc))
            self.mark_dirty()
            self.event("Warning", "Failed", f"Error: {exc}")
            return False
        mode = self.runtime.network.mode
        hostname = pod_hostname(self.pod)
        env.setdefault("HOSTNAME", hostname)
        builtin = not run.spec.get("command") and argv[:2] == [container_argv(run.spec)[0], "-m"]
        ports = [str(p["containerPort"]) for p in run.spec.get("ports") or [] if p.get("containerPort")]
        if builtin:
            env["SERVICENET_PORTS"] = ",".join(ports)
        try:
            volumes = await self._volumes()
        except Exception as exc:  # e.g. the token or a referenced object cannot be fetched yet
            run.state = waiting_state("ContainerCreating", "")
            self.mark_dirty()
            self.event("Warning", "FailedMount", f"MountVolume.SetUp failed: {exc}")
            return False
        mounts: list[tuple[str, str, bool]] = []
        if mode == "netns":
            mounts = [(os.path.join(self.dir, "resolv.conf"), "/etc/resolv.conf", False),
                      (os.path.join(self.dir, "hosts"), "/etc/hosts", False)]
            for m in run.spec.get("volumeMounts") or []:
                if m["name"] in volumes:
                    src = os.path.join(volumes[m["name"]], m.get("subPath") or "")
                    mounts.append((src.rstrip("/") or "/", m["mountPath"], bool(m.get("readOnly"))))
                    if podinit.made_on_host(m["mountPath"]):  # others are made in the pod's namespace
                        self._created_paths.append(m["mountPath"])
        else:
            env.setdefault("POD_IP", self.pod_ip())
            env["SERVICENET_BIND_IP"] = self.pod_ip()
            for m in run.spec.get("volumeMounts") or []:
                if m["name"] in volumes:
                    var = "SERVICENET_VOLUME_" + m["name"].upper().replace("-", "_").replace(".", "_")
                    env[var] = volumes[m["name"]]
                    if builtin and m["mountPath"].rstrip("/") == "/usr/share/nginx/html":
                        env["SERVICENET_HTML_DIR"] = volumes[m["name"]]
        run.env = env
        run.log_path = ct.log_file(os.path.join(self.dir, "logs"), run)
        journal = self.runtime.journal
        journal.record({"op": "spawn", "uid": self.uid, "container": run.name, "t": time.time(),
                        "netns": self.sandbox.netns if self.sandbox else None, "ip": self.pod_ip()})
        try:
            proc = spawn(argv, env, run.log_path, netns=self.sandbox.netns if self.sandbox else None,
                         hostname=hostname, mounts=mounts, cwd=run.spec.get("workingDir"), builtin=builtin,
                         user=(user.uid, user.gid, list(user.groups)) if user is not None else None)
        except OSError as exc:
            run.state = waiting_state("RunContainerError", f"failed to start container {run.name}: {exc}")
            self.event("Warning", "Failed", f"Error: {exc}")
            self.mark_dirty()
            return False
        journal.record({"op": "pid", "uid": self.uid, "container": run.name, "pid": proc.pid,
                        "ticks": proc.start_ticks})
        ct.mark_running(run, proc)
        self.save_state()
        self.mark_dirty()
        self.event("Normal", "Started", f"Started container {run.name}")
        return True

    def pod_with_ips(self) -> Obj:
        pod = dict(self.pod)
        st = dict(pod.get("status") or {})
        if self.pod_ip():
            st["podIP"] = self.pod_ip()
            st["podIPs"] = [{"ip": self.pod_ip()}]
        st["hostIP"] = self.runtime.network.node_ip
        st["hostIPs"] = [{"ip": self.runtime.network.node_ip}]
        pod["status"] = st
        return pod

    # -- status -------------------------------------------------------------------------------------
    def _status_base(self) -> Obj:
        """The pod as the status computation should see it.

        The informer's copy can lag behind our own writes; deriving transition times from it
        makes two stale copies ping-pong forever. The kubelet's own conditions therefore come
        from the last status we wrote; conditions owned by others (readiness gates) from the API.
        """
        if self._last_status is None:
            return self.pod
        theirs = [c for c in (self.pod.get("status") or {}).get("conditions") or []
                  if c.get("type") not in KUBELET_CONDITIONS]
        mine = [c for c in self._last_status.get("conditions") or [] if c.get("type") in KUBELET_CONDITIONS
                or c.get("type") == "PodScheduled"]
        have = {c.get("type") for c in mine}
        status = dict(self.pod.get("status") or {})
        status["conditions"] = mine + [c for c in theirs if c.get("type") not in have]
        return {**self.pod, "status": status}

    def build_status(self) -> Obj:
        inits = [r.status() for r in self.inits]
        conts = [r.status() for r in self.runs]
        return compute_pod_status(
            self._status_base(), init_statuses=inits, statuses=conts, pod_ips=[self.pod_ip()] if self.pod_ip() else [],
            host_ip=self.runtime.network.node_ip, sandbox_ready=self.sandbox is not None and not self.finished,
            start_time=self.start_time, now=ct.now_str())

    def _api_diverged(self, status: Obj) -> bool:
        """The API's Ready differs from what we wrote (e.g. the node lifecycle controller set it False
        while this node was unreachable): write ours again, as the kubelet's status manager does."""
        def ready(st: Obj) -> str | None:
            return next((c.get("status") for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
        api = ready(self.pod.get("status") or {})
        return api is not None and api != ready(status)

    async def _status_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            status = self.build_status()
            if status == self._last_status and not self._api_diverged(status):
                continue
            try:
                await self.runtime.write_status(self.pod, status)
                self._last_status = status
                self.status_written.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("status write failed", pod=self.key, error=repr(exc))
                await asyncio.sleep(0.5)
                self._dirty.set()

    # -- persistence ------------------------------------------------------------------------------
    def save_state(self) -> None:
        if self.sandbox is None:
            return
        state = {
            "pod": {"metadata": {k: self.pod["metadata"].get(k) for k in ("name", "namespace", "uid")}},
            "sandbox": {"key": self.sandbox.key, "ip": self.sandbox.ip, "netns": self.sandbox.netns,
                        "index": self.sandbox.index},
            "start_time": self.start_time,
            "created_paths": self._created_paths,
            "done_inits": {r.name: r.state for r in self.inits if r.done},
            "containers": {r.name: {"pid": r.proc.pid, "start_ticks": r.proc.start_ticks,
                                    "restart_count": r.restart_count, "log": r.log_path, "env": r.env,
                                    "started_at": (r.state.get("running") or {}).get("startedAt")}
                           for r in self.runs if r.proc is not None},
        }
        tmp = os.path.join(self.dir, "state.json.tmp")
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, os.path.join(self.dir, "state.json"))

    # -- termination ------------------------------------------------------------------------------
    async def terminate(self, finalize: bool, grace: float | None = None) -> None:
        """Stop every container (preStop, SIGTERM, grace, SIGKILL), tear down, optionally finalize."""
        if self.terminating:
            return
        self.terminating = True
        if grace is None:
            meta_grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
            grace = float(meta_grace) if meta_grace is not None else self.grace_seconds()
        for run in self.inits + self.runs:
            run._wake.set()
        if self._main is not None and not self._main.done():
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._main
        stops = [ct.stop_process(self, r, r.proc, grace, pre_stop=True)
                 for r in self.inits + self.runs if r.proc is not None and r.proc.alive()]
        if stops:
            self.event("Normal", "Killing", "Stopping container " + ", ".join(
                r.name for r in self.runs if r.proc is not None))
        await asyncio.gather(*stops, return_exceptions=True)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        now = ct.now_str()
        for r in self.runs + self.inits:
            r.ready = False
            if "terminated" not in r.state:
                code = r.proc.exit_code if r.proc is not None and r.proc.exit_code is not None else 137
                started = (r.state.get("running") or {}).get("startedAt")
                if r.proc is None:
                    r.state = {"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown",
                                              "message": "The container could not be located when the pod was deleted.",
                                              "startedAt": None, "finishedAt": now}}
                else:
                    r.state = ct.terminated_state(code, started, now, signal=r.proc.term_signal)
        self.finished = True
        await self._teardown()
        if finalize:
            try:
                status = self.build_status()
                if self.runs and all(((r.state.get("terminated") or {}).get("exitCode") == 0) for r in self.runs):
                    status["phase"] = "Succeeded"
                elif self.runs:
                    status["phase"] = "Failed"
                await self.runtime.write_status(self.pod, status)
            except Exception as exc:
                _log.warning("final status write failed", pod=self.key, error=repr(exc))
            await self.runtime.finalize(self.pod)
        await self.close()

    async def _teardown(self) -> None:
        if self.sandbox is not None:
            if self.sandbox.netns:  # whatever still runs in the namespace (escaped children, exec)
                await reaper.kill_and_wait(reaper.find_processes(netns=[self.sandbox.netns]))
            await self.runtime.network.remove_pod(self.sandbox)
        for p in reversed(self._created_paths):
            with contextlib.suppress(OSError):
                if os.path.isdir(p):
                    os.rmdir(p)
                elif os.path.isfile(p) and os.path.getsize(p) == 0:
                    os.unlink(p)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.runtime.journal.record({"op": "gone", "uid": self.uid})

    async def close(self) -> None:
        """Flush the last status and stop background tasks."""
        for t in self._refresh.values():
            t.cancel()
        await cancel_and_wait(self._status_task)
        self.runtime.forget(self)
