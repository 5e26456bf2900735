"""Install the example plugin as a distribution in a folder of its own: a `*.dist-info`
with an `entry_points.txt`, which importlib.metadata finds once the folder is on the
path (PYTHONPATH of the pouchd under test). The code itself is imported from pouch."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pouch.actors.plugins import GROUP

NAME = "pouch_example_plugin"
VERSION = "0.1.0"
# Where the plugin appends a JSON line per hook it ran (read by the tests).
LOG_ENV = "POUCH_EXAMPLE_PLUGIN_LOG"
# Set: its daemon_pre_start fails (pouchd must not start then).
FAIL_START_ENV = "POUCH_EXAMPLE_PLUGIN_FAIL_START"
ENTRY_POINTS = {
    "example": "pouch.tests.support.example_plugin.plugin:ExamplePlugin",
    # A plugin whose module does not exist: skipped at load, and said so.
    "broken": "pouch.tests.support.example_plugin.missing:Nothing",
}


def install(folder: Path, entry_points: Mapping[str, str] = ENTRY_POINTS) -> Path:
    """Write the distribution's metadata under `folder`; the folder."""
    info = folder / f"{NAME}-{VERSION}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n")
    lines = [f"[{GROUP}]", *(f"{name} = {target}" for name, target in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return folder
