"""containerd's config.toml, rendered for a containerd that pouch owns as a child.

The daemon only listens on unix sockets under pouch's own dirs: pouch serves
CRI itself, so containerd's CRI plugin is off, and snapshotters that cannot
work on a plain host (aufs, btrfs, zfs, devmapper) are off too, since they
only log failures at every start.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Final

from pouch.actors.fsutil import atomic_write

OOM_SCORE_MIN: Final = -1000
OOM_SCORE_MAX: Final = 1000
MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024

DISABLED_PLUGINS: Final = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.devmapper",
)

# Run in a throwaway child, so that this process keeps its own score. Linux
# refuses a value below the process's oom_score_adj_min unless the writer has
# CAP_SYS_RESOURCE; that minimum cannot be read, only probed, and a refused
# write changes nothing, so a bisection between the wanted value (refused)
# and the current one (always accepted) finds the lowest value allowed.
_PROBE: Final = """
import os, sys
def accepted(value):
    fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
    try:
        os.write(fd, str(value).encode())
        return True
    except PermissionError:
        return False
    finally:
        os.close(fd)
low, high = int(sys.argv[1]), int(sys.argv[2])
if accepted(low):
    print(low)
    sys.exit(0)
while high - low > 1:
    middle = (low + high) // 2
    if accepted(middle):
        high = middle
    else:
        low = middle
print(high)
"""


def current_oom_score_adj() -> int:
    return int(Path("/proc/self/oom_score_adj").read_text().strip())


def allowed_oom_score_adj(wanted: int) -> int:
    """The value nearest to `wanted` that this process (and so its children) may set.

    Raising the score is always allowed. Lowering it is allowed down to the
    process's hidden minimum, or without limit with CAP_SYS_RESOURCE, which
    root in some containers and VMs lacks: there a negative score is refused
    (EACCES), and containerd would log an error at every start.
    """
    wanted = max(OOM_SCORE_MIN, min(OOM_SCORE_MAX, wanted))
    current = current_oom_score_adj()
    if wanted >= current:
        return wanted
    probe = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _PROBE, str(wanted), str(current)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        return current
    return int(probe.stdout.strip())


def _toml_string(value: str) -> str:
    escaped = []
    for char in value:
        if char in ('"', "\\"):
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def render_config(
    *, root: Path, state: Path, address: Path, oom_score: int = 0, debug: bool = False,
    stock_gc: bool = False
) -> str:
    """containerd 1.6 config (version 2) for a daemon listening only on `address`; with
    `stock_gc`, its garbage collector scheduled as containerd's defaults have it."""
    disabled = ", ".join(_toml_string(plugin) for plugin in DISABLED_PLUGINS)
    lines = [
        "version = 2",
        f"root = {_toml_string(str(root))}",
        f"state = {_toml_string(str(state))}",
        f"oom_score = {allowed_oom_score_adj(oom_score)}",
        f"disabled_plugins = [{disabled}]",
        "",
        "[grpc]",
        f"  address = {_toml_string(str(address))}",
        '  tcp_address = ""',
        f"  max_recv_message_size = {MAX_MESSAGE_SIZE}",
        f"  max_send_message_size = {MAX_MESSAGE_SIZE}",
        "",
        # An empty ttrpc address makes containerd use "<grpc address>.ttrpc",
        # still a unix socket: the shims publish their events there.
        "[ttrpc]",
        '  address = ""',
        "",
        "[debug]",
        '  address = ""',
        f"  level = {_toml_string('debug' if debug else 'warn')}",
        "",
        "[metrics]",
        '  address = ""',
        "",
        '[plugins."io.containerd.internal.v1.opt"]',
        f"  path = {_toml_string(str(root / 'opt'))}",
        "",
    ]
    if not stock_gc:
        lines += [
            # By default the collector looks for work every (its runs' average time) /
            # pause_threshold: every 5 ms for a small database, 200 wake-ups a second of
            # an idle daemon. Without a pause threshold it looks every second: garbage
            # left by deletions is collected within a second (a collection asked for, as
            # an image's removal asks, still runs at once), and a burst of removals
            # costs one collection's database write, not one every 5 ms.
            '[plugins."io.containerd.gc.v1.scheduler"]',
            "  pause_threshold = 0.0",
            "",
        ]
    return "\n".join(lines)


def write_config(path: Path, text: str) -> None:
    """Replace `path` atomically: a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode())
