"""runtime.v1 RuntimeService: pods and containers as messages to the container actor.

Each call runs on one of the gRPC server's threads and ends in calls through
the typed stubs; nothing is kept here that the container actor's labels do not
keep (see pouch.actors.cri.translate).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from cri_api.v1 import api_pb2 as cri
from cri_api.v1 import api_pb2_grpc

from pouch.actors.containerd.config import allowed_oom_score_adj
from pouch.actors.cri import translate as tr
from pouch.actors.cri.errors import answered, precondition
from pouch.actors.cri.execsync import exec_sync
from pouch.actors.cri.images import full_names
from pouch.actors.cri.network import PodNetwork
from pouch.actors.cri.stats import container_stats, docker_stats
from pouch.actors.cri.streaming import StreamServer
from pouch.proto.config import DaemonConfig
from pouch.proto.envelope import PouchError, not_found
from pouch.proto.shapes import ContainerSummary
from pouch.proto.stubs import Calls

log = logging.getLogger("pouch.cri")

RUNTIME_NAME = "pouch"
API_VERSION = "v1"
KUBE_API_VERSION = "0.1.0"  # the CRI's own, as containerd reports it
RUNTIME_HANDLERS = ("", "runc")  # the default handler is runc, as containerd's
POD_THREADS = 8  # a pod's containers are stopped and removed together
EVENT_WINDOW = 1.0  # s: how long one read of the event stream lasts (a cancel is seen after)
CONTAINER_EVENTS = {"create": cri.CONTAINER_CREATED_EVENT, "start": cri.CONTAINER_STARTED_EVENT,
                    "die": cri.CONTAINER_STOPPED_EVENT, "destroy": cri.CONTAINER_DELETED_EVENT}


@contextlib.contextmanager
def missing_is_done() -> Iterator[None]:
    """Stop and remove are idempotent: what is gone already is done."""
    try:
        yield
    except PouchError as error:
        if error.code != "not_found":
            raise


class RuntimeService(api_pb2_grpc.RuntimeServiceServicer):
    def __init__(self, calls: Calls, config: DaemonConfig, network: PodNetwork,
                 streams: StreamServer) -> None:
        self.calls = calls
        self.config = config
        self.network = network
        self.streams = streams
        self._pool = futures.ThreadPoolExecutor(POD_THREADS, "cri-pod")
        self._oom_min: int | None = None

    # -- the runtime ---------------------------------------------------------------

    @answered
    def Version(self, request: cri.VersionRequest, context: grpc.ServicerContext,
                ) -> cri.VersionResponse:
        info = self.calls.system.version()
        return cri.VersionResponse(version=KUBE_API_VERSION, runtime_name=RUNTIME_NAME,
                                   runtime_version=info["Version"],
                                   runtime_api_version=API_VERSION)

    @answered
    def Status(self, request: cri.StatusRequest, context: grpc.ServicerContext,
               ) -> cri.StatusResponse:
        conditions = []
        try:
            self.calls.container.counts()
            conditions.append(cri.RuntimeCondition(type="RuntimeReady", status=True))
        except PouchError as error:
            conditions.append(cri.RuntimeCondition(type="RuntimeReady", status=False,
                                                   reason="ContainerActorDown",
                                                   message=error.message))
        ready, why = self.network.ready()
        conditions.append(cri.RuntimeCondition(
            type="NetworkReady", status=ready,
            reason="" if ready else "NetworkPluginNotReady", message=why))
        response = cri.StatusResponse(status=cri.RuntimeStatus(conditions=conditions))
        if request.verbose:
            # crictl reads every value as JSON.
            response.info["config"] = json.dumps({
                "sandboxImage": self.config.sandbox_image,
                "cniConfDir": str(self.config.cni_conf_dir),
                "cniBinDir": str(self.config.cni_bin_dir)})
        return response

    @answered
    def UpdateRuntimeConfig(self, request: cri.UpdateRuntimeConfigRequest,
                            context: grpc.ServicerContext) -> cri.UpdateRuntimeConfigResponse:
        cidr = request.runtime_config.network_config.pod_cidr
        if cidr:
            self.network.set_pod_cidr(cidr)
        return cri.UpdateRuntimeConfigResponse()

    # -- pods ----------------------------------------------------------------------

    @answered
    def RunPodSandbox(self, request: cri.RunPodSandboxRequest, context: grpc.ServicerContext,
                      ) -> cri.RunPodSandboxResponse:
        config = request.config
        if not config.metadata.name or not config.metadata.namespace:
            raise PouchError("invalid", "a pod needs metadata with a name and a namespace")
        if request.runtime_handler not in RUNTIME_HANDLERS:
            raise PouchError("invalid", f"no runtime for {request.runtime_handler!r} is "
                             "configured (pouch has runc)")
        image = self.config.sandbox_image
        body = tr.sandbox_body(config, image)
        name = tr.sandbox_name(config.metadata)
        resolv = tr.resolv_conf(config.dns_config)
        if resolv:
            path = self._resolv_path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(resolv)
            os.replace(tmp, path)
            tr.with_resolv_conf(body, str(path))
            body["Labels"][tr.RESOLV_CONF] = str(path)
        try:
            try:
                created = self.calls.container.create(name=name, config=body)
            except PouchError as error:
                # The sandbox image is pulled if missing, as containerd's CRI does; asked
                # about only then, so that a pod costs no round trip for it.
                if error.code != "not_found" or not self._ensure_image(image):
                    raise
                created = self.calls.container.create(name=name, config=body)
        except BaseException:
            self._forget_resolv(name)
            raise
        pod = created["Id"]
        try:
            self.calls.container.start(id=pod)
            if not tr.host_network(config):
                self.network.set_up(pod, config)
        except BaseException:
            with contextlib.suppress(PouchError):
                self.network.tear_down(pod)
            with contextlib.suppress(PouchError):
                self.calls.container.remove(id=pod, force=True)
            self._forget_resolv(name)
            raise
        return cri.RunPodSandboxResponse(pod_sandbox_id=pod)

    def _ensure_image(self, name: str) -> bool:
        """Pull the sandbox image if it is missing, as containerd's CRI does; whether it
        was (False: it is there, so something else was missing)."""
        try:
            self.calls.image.inspect(name=name)
            return False
        except PouchError as error:
            if error.code != "not_found":
                raise
        stream = self.calls.image.pull(image=name)
        try:
            for _progress in stream:
                pass
        except PouchError as error:
            raise PouchError(error.code, f"sandbox image {name} is missing and its pull failed "
                             f"({error.message}); `make image` builds an offline one: "
                             "docker load -i build/pause.tar") from None
        finally:
            stream.close()
        return True

    def _resolv_path(self, name: str) -> Path:
        return self.config.exec_root_dir / "cri" / "resolv" / f"{name}.conf"

    def _forget_resolv(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._resolv_path(name).unlink()

    @answered
    def StopPodSandbox(self, request: cri.StopPodSandboxRequest,
                       context: grpc.ServicerContext) -> cri.StopPodSandboxResponse:
        doc, members = self._pod_and_members(request.pod_sandbox_id)
        if doc is None:
            return cri.StopPodSandboxResponse()
        pod = str(doc["Id"])
        # A forced stop, as containerd's: every process of the pod is killed at once.
        self._each(lambda cid: self._stop(cid, 0), [item["Id"] for item in members] + [pod])
        self.network.tear_down(pod)
        return cri.StopPodSandboxResponse()

    @answered
    def RemovePodSandbox(self, request: cri.RemovePodSandboxRequest,
                         context: grpc.ServicerContext) -> cri.RemovePodSandboxResponse:
        doc, members = self._pod_and_members(request.pod_sandbox_id)
        if doc is None:
            return cri.RemovePodSandboxResponse()
        pod = str(doc["Id"])
        # All at once: the pod's namespaces are its pause's, which the others only join
        # at their starts; its network namespace is pinned, so it outlives the pause.
        self._each(lambda cid: self.calls.container.remove(id=cid, force=True),
                   [item["Id"] for item in members] + [pod])
        self.network.tear_down(pod)
        self.network.forget(pod)
        self._forget_resolv(str(doc.get("Name", "")).lstrip("/"))
        return cri.RemovePodSandboxResponse()

    @answered
    def PodSandboxStatus(self, request: cri.PodSandboxStatusRequest,
                         context: grpc.ServicerContext) -> cri.PodSandboxStatusResponse:
        doc = self._sandbox(request.pod_sandbox_id)
        ip = self.network.ip_of(doc["Id"])
        status = tr.sandbox_status(doc, ip)
        if status.state == cri.SANDBOX_READY and not self.network.intact(doc):
            status.state = cri.SANDBOX_NOTREADY  # its network was lost: never dropped
        response = cri.PodSandboxStatusResponse(status=status)
        if request.verbose:
            response.info["info"] = json.dumps({
                "pid": (doc.get("State") or {}).get("Pid", 0),
                "image": (doc.get("Config") or {}).get("Image", ""),
                "netns": self.network.netns_of(doc["Id"]), "config": doc.get("HostConfig"),
                "runtimeSpec": self.calls.container.runtime_spec(id=doc["Id"])})
        return response

    @answered
    def ListPodSandbox(self, request: cri.ListPodSandboxRequest,
                       context: grpc.ServicerContext) -> cri.ListPodSandboxResponse:
        f = request.filter
        items = self.calls.container.list(all=True, created_ns=True, filters=tr.list_filters(
            tr.SANDBOX_KIND, id=f.id, labels=dict(f.label_selector)))
        pods = [tr.sandbox_of(item) for item in items]
        if f.HasField("state"):
            pods = [p for p in pods if p.state == f.state.state]
        return cri.ListPodSandboxResponse(items=pods)

    # -- containers ----------------------------------------------------------------

    @answered
    def CreateContainer(self, request: cri.CreateContainerRequest,
                        context: grpc.ServicerContext) -> cri.CreateContainerResponse:
        sandbox = self._sandbox(request.pod_sandbox_id)
        if (sandbox.get("State") or {}).get("Status") != "running":
            # Its namespaces are gone with its pause process: nothing could join them.
            raise precondition(f"pod sandbox {request.pod_sandbox_id} is not ready")
        config = request.config
        if not config.metadata.name:
            raise PouchError("invalid", "a container needs metadata with a name")
        if not config.image.image:
            raise PouchError("invalid", "a container needs an image")
        labels = (sandbox.get("Config") or {}).get("Labels") or {}
        pod_meta = tr.sandbox_metadata(labels)
        # The container actor resolves the image (not_found if it is missing).
        body = tr.container_body(config, sandbox, config.image.image, request.sandbox_config,
                                 self._oom_floor())
        log_path = body["Labels"].get(tr.LOG_PATH)
        if log_path:
            body["HostConfig"]["LogConfig"] = {"Type": "cri", "Config": {"path": log_path}}
        created = self.calls.container.create(name=tr.container_name(config.metadata, pod_meta),
                                              config=body)
        return cri.CreateContainerResponse(container_id=created["Id"])

    @answered
    def StartContainer(self, request: cri.StartContainerRequest,
                       context: grpc.ServicerContext) -> cri.StartContainerResponse:
        doc = self._container(request.container_id)
        if (doc.get("State") or {}).get("Status") != "created":
            raise precondition(f"container {request.container_id} is not in created state")
        self.calls.container.start(id=doc["Id"])
        return cri.StartContainerResponse()

    @answered
    def StopContainer(self, request: cri.StopContainerRequest,
                      context: grpc.ServicerContext) -> cri.StopContainerResponse:
        doc = self._container(request.container_id)
        self._stop(doc["Id"], int(request.timeout))
        return cri.StopContainerResponse()

    def _stop(self, cid: str, timeout: int) -> None:
        """As containerd's CRI stops a container: its stop signal and SIGKILL after a
        positive `timeout`; SIGKILL alone otherwise (one signal, not two in a row)."""
        if timeout > 0:
            self.calls.container.stop(id=cid, timeout=timeout)
        else:
            self.calls.container.stop(id=cid, timeout=0, signal="SIGKILL")

    @answered
    def RemoveContainer(self, request: cri.RemoveContainerRequest,
                        context: grpc.ServicerContext) -> cri.RemoveContainerResponse:
        with missing_is_done():
            doc = self._container(request.container_id)
            self.calls.container.remove(id=doc["Id"], force=True)
        return cri.RemoveContainerResponse()

    @answered
    def ListContainers(self, request: cri.ListContainersRequest,
                       context: grpc.ServicerContext) -> cri.ListContainersResponse:
        f = request.filter
        items = self.calls.container.list(all=True, created_ns=True, filters=tr.list_filters(
            tr.CONTAINER_KIND, id=f.id, sandbox=f.pod_sandbox_id,
            labels=dict(f.label_selector)))
        containers = [self._listed(item) for item in items]
        if f.HasField("state"):
            containers = [c for c in containers if c.state == f.state.state]
        return cri.ListContainersResponse(containers=containers)

    def _listed(self, item: ContainerSummary) -> cri.Container:
        container = tr.container_of(item)
        if container.state == cri.CONTAINER_CREATED:
            # A start that failed leaves it created to Docker, exited to the CRI: only its
            # status tells which (the list says nothing of errors).
            with missing_is_done():
                container.state = tr.container_status(self._container(item["Id"])).state
        return container

    @answered
    def ContainerStatus(self, request: cri.ContainerStatusRequest,
                        context: grpc.ServicerContext) -> cri.ContainerStatusResponse:
        doc = self._container(request.container_id)
        status = tr.container_status(doc)
        with missing_is_done():  # its image removed since: named as it was asked for
            tags, digests = full_names(self.calls.image.inspect(name=doc["Image"]),
                                       self.config.default_registry)
            # As containerd's CRI: a kubelet creates a container from an image's ID, and
            # shows the pod's users this name instead.
            if tags:
                status.image.image = tags[0]
            if digests:
                status.image_ref = digests[0]
        response = cri.ContainerStatusResponse(status=status)
        if request.verbose:
            # As containerd's CRI: what `crictl inspect` users read (.info.pid, the
            # namespaces and mounts of .info.runtimeSpec) has the same place.
            labels = (doc.get("Config") or {}).get("Labels") or {}
            response.info["info"] = json.dumps({
                "sandboxID": labels.get(tr.SANDBOX, ""),
                "pid": (doc.get("State") or {}).get("Pid", 0), "config": doc.get("Config"),
                "hostConfig": doc.get("HostConfig"),
                "runtimeSpec": self.calls.container.runtime_spec(id=doc["Id"])})
        return response

    @answered
    def UpdateContainerResources(self, request: cri.UpdateContainerResourcesRequest,
                                 context: grpc.ServicerContext,
                                 ) -> cri.UpdateContainerResourcesResponse:
        doc = self._container(request.container_id)
        update = tr.update_body(request.linux)
        if update:
            self.calls.container.update(id=doc["Id"], config=update)
        return cri.UpdateContainerResourcesResponse()

    @answered
    def ReopenContainerLog(self, request: cri.ReopenContainerLogRequest,
                           context: grpc.ServicerContext) -> cri.ReopenContainerLogResponse:
        doc = self._running(request.container_id)
        self.calls.container.reopen_log(id=doc["Id"])
        return cri.ReopenContainerLogResponse()

    @answered
    def ExecSync(self, request: cri.ExecSyncRequest, context: grpc.ServicerContext,
                 ) -> cri.ExecSyncResponse:
        if not request.cmd:
            raise PouchError("invalid", "ExecSync needs a command")
        doc = self._container(request.container_id)
        if (doc.get("State") or {}).get("Status") != "running":
            raise precondition(f"container {request.container_id} is not running")
        result = exec_sync(self.calls, self.config.handoff_dir, doc["Id"], list(request.cmd),
                           float(request.timeout))
        return cri.ExecSyncResponse(stdout=result.stdout, stderr=result.stderr,
                                    exit_code=result.exit_code)

    # -- events ----------------------------------------------------------------------

    def GetContainerEvents(self, request: cri.GetEventsRequest,
                           context: grpc.ServicerContext) -> Iterator[cri.ContainerEventResponse]:
        """The kubelet's evented PLEG: CRI containers' (and pods') create, start, stop and
        delete, from the system actor's events, until the client goes."""
        since = time.time()
        seen = 0
        filters = {"type": ["container"], "event": list(CONTAINER_EVENTS)}
        while context.is_active():
            until = time.time() + EVENT_WINDOW
            stream = self.calls.system.events(since=since, until=until, filters=filters)
            try:
                for event in stream:
                    if event["timeNano"] <= seen:
                        continue
                    seen = event["timeNano"]
                    response = self._container_event(event)
                    if response is not None:
                        yield response
            except PouchError as error:
                log.warning("container events: %s", error.message)
                time.sleep(EVENT_WINDOW)
            finally:
                stream.close()
            since = until

    def _container_event(self, event: Any) -> cri.ContainerEventResponse | None:
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        kind = attributes.get(tr.KIND)
        if kind not in (tr.CONTAINER_KIND, tr.SANDBOX_KIND):
            return None
        cid = str((event.get("Actor") or {}).get("ID", ""))
        pod = cid if kind == tr.SANDBOX_KIND else str(attributes.get(tr.SANDBOX, ""))
        response = cri.ContainerEventResponse(
            container_id=cid, container_event_type=CONTAINER_EVENTS[event["Action"]],
            created_at=int(event["timeNano"]))
        try:
            doc = self._sandbox(pod)
            response.pod_sandbox_status.CopyFrom(
                tr.sandbox_status(doc, self.network.ip_of(doc["Id"])))
            for item in self._members(doc["Id"]):
                with missing_is_done():
                    response.containers_statuses.append(
                        tr.container_status(self._container(item["Id"])))
        except PouchError:
            pass  # the pod is gone: the event alone tells it
        return response

    # -- stats ---------------------------------------------------------------------

    @answered
    def ContainerStats(self, request: cri.ContainerStatsRequest,
                       context: grpc.ServicerContext) -> cri.ContainerStatsResponse:
        doc = self._container(request.container_id, size=True)
        return cri.ContainerStatsResponse(stats=self._stats(doc))

    @answered
    def ListContainerStats(self, request: cri.ListContainerStatsRequest,
                           context: grpc.ServicerContext) -> cri.ListContainerStatsResponse:
        f = request.filter
        items = self.calls.container.list(all=False, filters=tr.list_filters(
            tr.CONTAINER_KIND, id=f.id, sandbox=f.pod_sandbox_id,
            labels=dict(f.label_selector)))
        return cri.ListContainerStatsResponse(stats=self._gather(items))

    @answered
    def PodSandboxStats(self, request: cri.PodSandboxStatsRequest,
                        context: grpc.ServicerContext) -> cri.PodSandboxStatsResponse:
        doc = self._sandbox(request.pod_sandbox_id)
        return cri.PodSandboxStatsResponse(stats=self._pod_stats(doc))

    @answered
    def ListPodSandboxStats(self, request: cri.ListPodSandboxStatsRequest,
                            context: grpc.ServicerContext) -> cri.ListPodSandboxStatsResponse:
        f = request.filter
        items = self.calls.container.list(all=False, filters=tr.list_filters(
            tr.SANDBOX_KIND, id=f.id, labels=dict(f.label_selector)))
        stats = []
        for item in items:
            with missing_is_done():
                stats.append(self._pod_stats(self._sandbox(item["Id"])))
        return cri.ListPodSandboxStatsResponse(stats=stats)

    def _stats(self, doc: dict[str, Any]) -> cri.ContainerStats:
        return container_stats(doc, docker_stats(self.config.handoff_dir, doc["Id"]))

    def _gather(self, items: list[Any]) -> list[cri.ContainerStats]:
        stats = []
        for item in items:
            with missing_is_done():  # removed meanwhile
                stats.append(self._stats(self._container(item["Id"], size=True)))
        return stats

    def _pod_stats(self, doc: dict[str, Any]) -> cri.PodSandboxStats:
        labels = (doc.get("Config") or {}).get("Labels") or {}
        members = self.calls.container.list(all=False, filters=tr.list_filters(
            tr.CONTAINER_KIND, sandbox=doc["Id"]))
        containers = self._gather(members)
        out = cri.PodSandboxStats(attributes=cri.PodSandboxAttributes(
            id=doc["Id"], metadata=tr.sandbox_metadata(labels), labels=tr.cri_labels(labels),
            annotations=tr.cri_annotations(labels)))
        out.linux.containers.extend(containers)
        pause = self._stats(doc)
        now = pause.cpu.timestamp
        out.linux.cpu.timestamp = out.linux.memory.timestamp = now
        out.linux.cpu.usage_core_nano_seconds.value = pause.cpu.usage_core_nano_seconds.value \
            + sum(c.cpu.usage_core_nano_seconds.value for c in containers)
        out.linux.memory.working_set_bytes.value = pause.memory.working_set_bytes.value \
            + sum(c.memory.working_set_bytes.value for c in containers)
        out.linux.memory.usage_bytes.value = pause.memory.usage_bytes.value \
            + sum(c.memory.usage_bytes.value for c in containers)
        return out

    # -- streams: URLs on the streaming server (pouch.actors.cri.streaming) -------

    @answered
    def Exec(self, request: cri.ExecRequest, context: grpc.ServicerContext,
             ) -> cri.ExecResponse:
        if not request.cmd:
            raise PouchError("invalid", "Exec needs a command")
        self._check_streams(request.tty, request.stdin, request.stdout, request.stderr)
        doc = self._running(request.container_id)
        return cri.ExecResponse(url=self.streams.mint("exec", {
            "container_id": doc["Id"], "cmd": list(request.cmd), "tty": request.tty,
            "stdin": request.stdin, "stdout": request.stdout, "stderr": request.stderr}))

    @answered
    def Attach(self, request: cri.AttachRequest, context: grpc.ServicerContext,
               ) -> cri.AttachResponse:
        self._check_streams(request.tty, request.stdin, request.stdout, request.stderr)
        doc = self._running(request.container_id)
        return cri.AttachResponse(url=self.streams.mint("attach", {
            "container_id": doc["Id"], "tty": request.tty, "stdin": request.stdin,
            "stdout": request.stdout, "stderr": request.stderr}))

    @answered
    def PortForward(self, request: cri.PortForwardRequest, context: grpc.ServicerContext,
                    ) -> cri.PortForwardResponse:
        doc = self._sandbox(request.pod_sandbox_id)
        if (doc.get("State") or {}).get("Status") != "running":
            raise precondition(f"pod sandbox {request.pod_sandbox_id} is not ready")
        args: dict[str, Any] = {"container_id": doc["Id"], "ports": list(request.port)}
        netns = self.network.netns_of(doc["Id"])
        if netns:
            args["netns"] = netns
        return cri.PortForwardResponse(url=self.streams.mint("portforward", args))

    @staticmethod
    def _check_streams(tty: bool, stdin: bool, stdout: bool, stderr: bool) -> None:
        """As the kubelet checks them before it asks for a URL."""
        if not (stdin or stdout or stderr):
            raise PouchError("invalid", "one of stdin, stdout, or stderr must be set")
        if tty and stderr:
            raise PouchError("invalid", "tty and stderr cannot both be true")

    def _running(self, ref: str) -> dict[str, Any]:
        doc = self._container(ref)
        if (doc.get("State") or {}).get("Status") != "running":
            raise precondition(f"container {ref} is not running")
        return doc

    # -- lookups -------------------------------------------------------------------

    def _sandbox(self, ref: str) -> dict[str, Any]:
        """A pod's pause container (inspect document). Errors: not_found."""
        doc = self._inspect(ref, "pod sandbox")
        if ((doc.get("Config") or {}).get("Labels") or {}).get(tr.KIND) != tr.SANDBOX_KIND:
            raise not_found(f"pod sandbox {ref} not found")
        return doc

    def _container(self, ref: str, size: bool = False) -> dict[str, Any]:
        """A container (inspect document; with `size`, with what its writable layer
        holds: SizeRw). Errors: not_found."""
        doc = self._inspect(ref, "container", size)
        if ((doc.get("Config") or {}).get("Labels") or {}).get(tr.KIND) != tr.CONTAINER_KIND:
            raise not_found(f"container {ref} not found")
        return doc

    def _inspect(self, ref: str, what: str, size: bool = False) -> dict[str, Any]:
        if not ref:
            raise PouchError("invalid", f"no {what} id given")
        try:
            return dict(self.calls.container.inspect(id=ref, size=size))
        except PouchError as error:
            if error.code == "not_found":
                raise not_found(f"{what} {ref} not found") from None
            raise

    def _oom_floor(self) -> int:
        """The lowest OOM score adjustment this machine allows (probed once)."""
        if self._oom_min is None:
            self._oom_min = allowed_oom_score_adj(-1000)
        return self._oom_min

    def _each(self, call: Callable[[str], object], ids: list[str]) -> None:
        """`call` for every id at once; one already gone is done; the first other error
        is raised once all have ended."""
        def one(cid: str) -> None:
            with missing_is_done():
                call(cid)

        if len(ids) == 1:
            one(ids[0])
            return
        for job in [self._pool.submit(one, cid) for cid in ids]:
            job.result()

    def _pod_and_members(self, ref: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """A pod's pause container (None: gone) and its containers, asked together when
        `ref` is a full id (as a kubelet gives it), one after the other otherwise."""
        listed = self._pool.submit(self._members, ref) if len(ref) == 64 else None
        try:
            doc = self._sandbox(ref)
        except PouchError as error:
            if error.code != "not_found":
                raise
            return None, []
        finally:
            if listed is not None:
                futures.wait([listed])
        if listed is None or listed.exception() is not None or doc["Id"] != ref:
            return doc, self._members(str(doc["Id"]))
        return doc, listed.result()

    def _members(self, pod: str) -> list[dict[str, Any]]:
        return [dict(item) for item in self.calls.container.list(
            all=True, filters=tr.list_filters(tr.CONTAINER_KIND, sandbox=pod))]
