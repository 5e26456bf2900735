"""What importing one pouchd role costs, package by package, in a fresh interpreter.

    python -m pouch.bench.importprobe list ROLE     the modules ROLE imports, in order, as JSON
    python -m pouch.bench.importprobe steps ROLE    (that JSON on stdin) RSS and time per package

`steps` imports, in turn, every top-level package the role uses (with the
submodules it uses), in the order the role first imports them, and last the
role's own pouch modules; a package is charged with what it pulls in that is
not loaded yet, so shared dependencies count once, with their first user.
Run each mode in its own process: only a fresh interpreter shows the cost.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

# The modules a role's process imports, as `pouchd` (actors/supervisor/main.py) loads them.
COMMON = ["pouch.actors.supervisor.main"]
ACTOR = [*COMMON, "pouch.actors.handoff", "pouch.actors.host"]
ROLES = {
    "supervisor": [*COMMON, "pouch.actors.supervisor.run"],
    "broker": [*COMMON, "pouch.actors.host", "pouch.actors.sdnotify", "pouch.broker.router"],
    "system": [*ACTOR, "pouch.actors.system"],
    "image": [*ACTOR, "pouch.actors.image.actor"],
    "container": [*ACTOR, "pouch.actors.container.actor"],
    "gateway master": [*COMMON, "pouch.gateway.server"],
    "gateway worker": [*COMMON, "pouch.gateway.server", "pouch.gateway.app"],
}


def status(field: str) -> int:
    """A size from /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


def rss() -> int:
    return status("VmRSS")


def anon() -> int:
    """The private part of RSS: Python objects and malloc'd memory, not mapped files."""
    return status("RssAnon")


def top_level(name: str) -> str:
    return name.split(".", 1)[0]


def role_modules(role: str) -> list[str]:
    """Modules the role imports that were not loaded at start, in import order."""
    before = set(sys.modules)
    for module in ROLES[role]:
        importlib.import_module(module)
    return [name for name in sys.modules if name not in before]


def kind(package: str) -> str:
    if package == "pouch":
        return "pouch"
    if package in sys.stdlib_module_names or package.startswith("_"):
        return "stdlib"
    return "third-party"


def steps(role: str, modules: list[str]) -> list[dict[str, object]]:
    packages: dict[str, list[str]] = {}
    for name in modules:
        if top_level(name) != "pouch":
            packages.setdefault(top_level(name), []).append(name)
    groups = [*packages.items(), ("pouch", ROLES[role])]
    out: list[dict[str, object]] = []
    for label, members in groups:
        loaded = set(sys.modules)
        mem = rss()
        private = anon()
        start = time.perf_counter()
        for module in members:
            try:
                importlib.import_module(module)
            except ImportError:
                continue  # a private or platform module that only its parent imports
        grown = rss() - mem
        grown_anon = anon() - private
        elapsed = time.perf_counter() - start
        new = [name for name in sys.modules if name not in loaded]
        pulled = dict.fromkeys(top_level(n) for n in new if top_level(n) != label)
        out.append({"package": label, "kind": kind(label), "rss": grown, "anon": grown_anon,
                    "seconds": elapsed,
                    "modules": len(new), "pulled_in": list(pulled)})
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("list", "steps") or argv[1] not in ROLES:
        print(__doc__, file=sys.stderr)
        return 2
    mode, role = argv[0], argv[1]
    if mode == "list":
        print(json.dumps({"modules": role_modules(role)}))
    else:
        modules = json.loads(sys.stdin.read())["modules"]
        start, start_anon = rss(), anon()
        done = steps(role, modules)
        print(json.dumps({"start_rss": start, "start_anon": start_anon, "steps": done,
                          "end_rss": rss(), "end_anon": anon()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
