"""Memory of an idle pouchd with no containers: every pouch process (containerd and its
shims excluded), set against a bare Python interpreter measured in the same run.

    python -m pouch.bench.memory [--runs N] [--json PATH]

Runs alternate: a bare interpreter (`python -c 'import time; time.sleep(...)'`,
the same python as pouchd's), then a freshly started pouchd, idle for a
moment. RSS counts shared pages in every process; PSS shares them out (and
also with any other process mapping the same files, such as other Python
programs running here); USS is what ending the process would give back.
The last pouchd is also measured after a little work (busybox loaded, five
`docker run --rm`), still with no containers. Then where it goes: PSS by
mapping (anonymous memory, the interpreter, each package's native code), and
for each role, what its imports cost in a fresh interpreter
(`pouch.bench.importprobe`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pouch.actors.supervisor.roles import ACTORS
from pouch.bench.common import MS, parser, ratio, run_main, summarize, table, write_json
from pouch.bench.importprobe import ROLES
from pouch.bench.pouchd import load_busybox, pouchd
from pouch.bench.procfs import MIB, children_of, descendants, mappings, memory
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.procs import cmdline

TARGET_MIB = {"rss": 150, "pss": 75}
DOCKERD_IDLE_MIB = 75  # dockerd 20.10 idle, from the issue
SETTLE = 2.0  # seconds after start-up before measuring, so start-up garbage is collected
KINDS = ("rss", "pss", "uss", "anon")


def role_of(pid: int) -> str:
    """A child of pouchd's supervisor: by the name a forked role gives itself (`pouch-NAME`),
    else by its command line (`... broker`, `... actor NAME`, `... zygote`)."""
    argv = cmdline(pid)
    if argv and os.path.basename(argv[0]).startswith("containerd"):
        return "containerd"
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        comm = ""
    name = comm.removeprefix("pouch-") if comm.startswith("pouch-") else argv[-1] if argv else ""
    if argv[-2:-1] == ["actor"]:
        name = argv[-1]
    if name in ("broker", "zygote", *ACTORS, "gateway"):
        return name
    return f"other ({pid})"


def pouch_processes(daemon: PouchDaemon) -> dict[str, int]:
    """Role -> pid of every process of this pouchd but containerd (shims are not its children)."""
    assert daemon.proc is not None
    found = {"supervisor": daemon.proc.pid}
    for pid in children_of(daemon.proc.pid):
        role = role_of(pid)
        if role == "containerd":
            continue
        found[role] = pid
        if role == "gateway":
            # With more than one, gunicorn's workers are forks of the gateway: its master.
            for n, worker in enumerate(descendants(pid)):
                found[f"gateway worker {n + 1}"] = worker
    return found


def measure(pids: dict[str, int]) -> dict[str, dict[str, int]]:
    return {role: memory(pid) for role, pid in pids.items()}


def bare_interpreter() -> dict[str, int]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                            stdin=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        return memory(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def settle(daemon: PouchDaemon) -> dict[str, int]:
    """The daemon's processes once every role is up and it has been idle for a moment."""
    deadline = time.monotonic() + 30
    # The CRI actor runs only with --enable-cri, which this daemon is not given.
    wanted = {"supervisor", "zygote", "broker", *ACTORS, "gateway"} - {"cri"}
    while time.monotonic() < deadline:
        pids = pouch_processes(daemon)
        if wanted <= set(pids):
            time.sleep(SETTLE)
            return pouch_processes(daemon)
        time.sleep(0.1)
    raise RuntimeError(f"not every role came up: {sorted(pouch_processes(daemon))}")


def a_little_work(daemon: PouchDaemon) -> None:
    load_busybox(daemon)
    for _ in range(5):
        daemon.docker("run", "--rm", "busybox", "true")
    daemon.docker("ps", "-a")
    daemon.docker("images")
    time.sleep(SETTLE)


# -- where it goes -----------------------------------------------------------------

SITE = re.compile(r"/site-packages/([^/]+)/")
NATIVE_OWNER = {"pyzmq.libs": "zmq", "grpcio.libs": "grpc", "google": "protobuf (upb)"}


def mapping_group(path: str) -> str:
    if not path.startswith("/") or path.startswith("/memfd:"):
        return "anonymous (Python heap, malloc arenas, thread stacks)"
    if re.search(r"/python3(\.\d+)?$", path):
        return "the python interpreter binary"
    m = SITE.search(path)
    if m:
        return f"native code: {NATIVE_OWNER.get(m.group(1), m.group(1))}"
    if "/lib" in path and ".so" in path:
        return f"system library: {os.path.basename(path).split('.so')[0]}"
    return "other files (locale archive, ...)"


def by_mapping(pids: dict[str, int]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for pid in pids.values():
        for path, sizes in mappings(pid).items():
            entry = out.setdefault(mapping_group(path), {"rss": 0, "pss": 0})
            entry["rss"] += sizes["rss"]
            entry["pss"] += sizes["pss"]
    return out


def import_costs(role: str) -> dict[str, Any]:
    probe = [sys.executable, "-m", "pouch.bench.importprobe"]
    listed = subprocess.run([*probe, "list", role], capture_output=True, text=True, check=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    stepped = subprocess.run([*probe, "steps", role], input=listed.stdout, capture_output=True,
                             text=True, check=True, timeout=60)
    result: dict[str, Any] = json.loads(stepped.stdout)
    return result


# -- the run -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0], default_runs=2).parse_args(argv)
    bare: list[dict[str, int]] = []
    idle: list[dict[str, dict[str, int]]] = []
    worked: dict[str, dict[str, int]] = {}
    groups: dict[str, dict[str, int]] = {}
    for run in range(args.runs):
        bare.append(bare_interpreter())
        with pouchd(busybox=False) as daemon:
            pids = settle(daemon)
            idle.append(measure(pids))
            if run == args.runs - 1:
                groups = by_mapping(pids)
                a_little_work(daemon)
                worked = measure(pouch_processes(daemon))
    imports = {role: import_costs(role) for role in ROLES}
    return report(args, bare, idle, worked, groups, imports)


def report(args: Any, bare: list[dict[str, int]], idle: list[dict[str, dict[str, int]]],
           worked: dict[str, dict[str, int]], groups: dict[str, dict[str, int]],
           imports: dict[str, dict[str, Any]]) -> int:
    roles = list(idle[-1])
    med = {role: {k: summarize([run[role][k] for run in idle if role in run])["median"]
                  for k in KINDS} for role in roles}
    base = {k: summarize([b[k] for b in bare])["median"] for k in KINDS}
    total = {k: sum(med[r][k] for r in roles) for k in KINDS}
    rows = [[role, *(med[role][k] / MIB for k in KINDS),
             worked.get(role, {}).get("rss", 0) / MIB, ratio(med[role]["rss"], base["rss"])]
            for role in roles]
    rows.append(["total (pouch, no containerd)", *(total[k] / MIB for k in KINDS),
                 sum(v["rss"] for v in worked.values()) / MIB, ratio(total["rss"], base["rss"])])
    rows.append(["bare interpreter (baseline)", *(base[k] / MIB for k in KINDS), "", 1.0])
    print(f"idle pouchd, no containers: MiB, median of {len(idle)} fresh start(s)")
    print(table(["process", "RSS", "PSS", "USS", "anon", "RSS after work", "RSS x bare"], rows))
    n = len(roles)
    print(f"\n{n} processes; {n} bare interpreters would hold {n * base['rss'] / MIB:.1f} MiB RSS:"
          f" pouch holds {ratio(total['rss'], n * base['rss']):.2f}x that")
    for kind, target in TARGET_MIB.items():
        verdict = "met" if total[kind] / MIB <= target else "NOT met"
        print(f"target <= {target} MiB ({kind.upper()} sum): {verdict} "
              f"({total[kind] / MIB:.1f} MiB; dockerd 20.10 idle: {DOCKERD_IDLE_MIB} MiB, "
              f"{ratio(total[kind] / MIB, DOCKERD_IDLE_MIB):.2f}x)")

    print("\nwhere it goes: PSS by mapping, summed over the pouch processes (MiB)")
    ordered = sorted(groups.items(), key=lambda kv: -kv[1]["pss"])
    shown = ordered[:10]
    rest = ordered[10:]
    print(table(["mapping", "PSS", "RSS"], [
        *([name, g["pss"] / MIB, g["rss"] / MIB] for name, g in shown),
        [f"{len(rest)} more", sum(g["pss"] for _, g in rest) / MIB,
         sum(g["rss"] for _, g in rest) / MIB]]))

    print("\nwhat each role's imports cost in a fresh interpreter: RSS and its anonymous part"
          " (private: Python objects, malloc) in MiB, import ms; a package is charged with what"
          " it first pulls in")
    rows = []
    for role, probe in imports.items():
        steps = sorted(probe["steps"], key=lambda s: -s["anon"])
        top = ", ".join(f"{s['package']} {s['anon'] / MIB:.1f}" for s in steps[:4])
        rows.append([role, probe["start_rss"] / MIB, probe["start_anon"] / MIB,
                     (probe["end_rss"] - probe["start_rss"]) / MIB,
                     (probe["end_anon"] - probe["start_anon"]) / MIB,
                     sum(s["seconds"] for s in probe["steps"]) * MS, top])
    print(table(["role", "interp RSS", "anon", "+imports RSS", "anon", "import ms",
                 "largest anon (MiB)"], rows))
    heavy: dict[str, tuple[int, int, list[str], list[str]]] = {}
    for role, probe in imports.items():
        for s in probe["steps"]:
            if s["rss"] >= MIB:
                pulled = [p for p in s["pulled_in"] if not p.startswith("_")]
                heavy.setdefault(s["package"], (s["rss"], s["anon"], pulled, []))[3].append(role)
    print("\npackages costing >= 1 MiB RSS (anon), with what they pull in (first role's probe):")
    for package, (size, private, pulled, users) in sorted(heavy.items(), key=lambda kv: -kv[1][0]):
        print(f"  {package} {size / MIB:.1f} ({private / MIB:.1f}) MiB in {', '.join(users)}"
              + (f"; pulls in {', '.join(pulled)}" if pulled else ""))

    write_json(args.json, {
        "benchmark": "memory", "unit": "bytes", "target_mib": TARGET_MIB,
        "dockerd_idle_mib": DOCKERD_IDLE_MIB, "bare_interpreter": base, "idle_median": med,
        "idle_total": total, "idle_runs": idle, "after_work": worked, "by_mapping": groups,
        "imports": imports})
    return 0


if __name__ == "__main__":
    run_main(main)
