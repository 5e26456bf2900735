"""Pods' networks: the host's for hostNetwork pods; for the others, CNI plugins run in the
pause container's network namespace (pouch.actors.cri.cni), their results kept on
disk under the exec root, so that a restarted CRI actor knows its pods' addresses."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from cri_api.v1 import api_pb2 as cri

from pouch.actors.cri import cni
from pouch.proto.config import DaemonConfig
from pouch.proto.envelope import PouchError
from pouch.proto.stubs import Calls

log = logging.getLogger("pouch.cri")
IFNAME = "eth0"


class PodNetwork:
    def __init__(self, calls: Calls, config: DaemonConfig) -> None:
        self.calls = calls
        self.config = config
        self.state_dir = config.exec_root_dir / "cri" / "pods"
        self.pod_cidr = ""
        self._lock = threading.Lock()

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cni.write_default_config(self.config.cni_conf_dir, self.pod_cidr)

    def ready(self) -> tuple[bool, str]:
        try:
            cni.load_config(self.config.cni_conf_dir, self.config.cni_bin_dir)
        except PouchError as error:
            return False, error.message
        return True, ""

    def set_pod_cidr(self, cidr: str) -> None:
        self.pod_cidr = cidr
        cni.write_default_config(self.config.cni_conf_dir, cidr)

    def set_up(self, pod: str, config: cri.PodSandboxConfig) -> None:
        """Run the CNI plugins' ADD in the pause container's namespace. Errors: unavailable
        (no network configuration or plugin), internal (a plugin failed)."""
        netconf = cni.load_config(self.config.cni_conf_dir, self.config.cni_bin_dir)
        doc = self.calls.container.inspect(id=pod)
        pid = int((doc.get("State") or {}).get("Pid") or 0)
        if not pid:
            raise PouchError("internal", f"pod {pod}: its pause container has no process")
        netns = self._pin(pod, pid)
        args = cni.pod_args(config.metadata.name, config.metadata.namespace, pod)
        mappings = [{"hostPort": p.host_port, "containerPort": p.container_port,
                     "protocol": cri.Protocol.Name(p.protocol).lower(),
                     "hostIP": p.host_ip} for p in config.port_mappings if p.host_port]
        runtime = {"portMappings": mappings} if mappings else {}
        self._save(pod, {"netns": str(netns), "netconf": netconf.raw, "ip": ""})
        result = cni.add(netconf, self.config.cni_bin_dir, pod, str(netns), IFNAME, args,
                         runtime)
        self._save(pod, {"netns": str(netns), "netconf": netconf.raw, "ip": cni.ip_of(result),
                         "args": args, "runtime": runtime})

    def tear_down(self, pod: str) -> None:
        """CNI DEL (idempotent: a pod never set up, or torn down already, is left alone)."""
        state = self._load(pod)
        if state is None or state.get("deleted"):
            return
        netconf = cni.NetConf(state["netconf"])
        netns = state["netns"] if Path(state["netns"]).exists() else ""
        try:
            cni.delete(netconf, self.config.cni_bin_dir, pod, netns, IFNAME,
                       state.get("args") or "", state.get("runtime") or {})
        except PouchError as error:
            log.warning("pod %s: CNI DEL failed: %s", pod[:12], error.message)
        self._unpin(pod)
        self._save(pod, {**state, "deleted": True, "ip": ""})

    def forget(self, pod: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / f"{pod}.json").unlink()

    def netns_of(self, pod: str) -> str:
        """The pinned namespace of a pod on a CNI network ("" for host pods)."""
        state = self._load(pod)
        return str(state.get("netns", "")) if state and not state.get("deleted") else ""

    def ip_of(self, pod: str) -> str:
        state = self._load(pod)
        return str(state.get("ip", "")) if state else ""

    def intact(self, doc: dict[str, Any]) -> bool:
        """Whether a running pod still has the network it was given (host pods always)."""
        labels = (doc.get("Config") or {}).get("Labels") or {}
        if labels.get("io.pouch.cri.network") == "host":
            return True
        state = self._load(doc["Id"])
        return bool(state and state.get("ip") and Path(state["netns"]).exists())

    # -- the netns, pinned by a bind mount so it outlives nothing but the pod -----

    def _pin(self, pod: str, pid: int) -> Path:
        pinned = self.state_dir / f"{pod}.netns"
        pinned.touch()
        cni.bind_mount(f"/proc/{pid}/ns/net", pinned)
        return pinned

    def _unpin(self, pod: str) -> None:
        pinned = self.state_dir / f"{pod}.netns"
        cni.unmount(pinned)
        with contextlib.suppress(FileNotFoundError):
            pinned.unlink()

    def _save(self, pod: str, state: dict[str, Any]) -> None:
        path = self.state_dir / f"{pod}.json"
        tmp = path.with_suffix(".tmp")
        with self._lock:
            tmp.write_text(json.dumps(state))
            os.replace(tmp, path)

    def _load(self, pod: str) -> dict[str, Any] | None:
        try:
            state = json.loads((self.state_dir / f"{pod}.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return state if isinstance(state, dict) else None
