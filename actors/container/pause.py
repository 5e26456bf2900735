"""A pod's pause container, as the CRI marks it: a process that only holds the pod's
namespaces, reads no file and writes nothing.

containerd's CRI makes its sandboxes so, and so does the container actor for a
container labelled KIND_LABEL=SANDBOX_KIND: its task gets no output streams (the shim
gives the process /dev/null, and nothing is logged), and no /sys/fs/cgroup,
/etc/hosts or /etc/hostname of its own (on cgroup v1, runc mounts every
hierarchy one by one). That is runc's and the shim's work saved on every pod's
start; the container is otherwise a container like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

KIND_LABEL: Final = "io.pouch.cri.kind"  # the CRI's: "sandbox" or "container"
SANDBOX_KIND: Final = "sandbox"
UNMOUNTED: Final = frozenset(("/sys/fs/cgroup", "/etc/hosts", "/etc/hostname"))


def is_pause(labels: Mapping[str, str] | None) -> bool:
    return (labels or {}).get(KIND_LABEL) == SANDBOX_KIND
