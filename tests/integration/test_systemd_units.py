"""pouch's systemd units: systemd accepts them, and started in their order they make a daemon.

systemd is not PID 1 here, so the daemon test stands in for it: it starts each
unit's ExecStart= in the order After= gives, in systemd's clean environment,
waits for each Type=notify unit's READY=1 on a notify socket it reads, hands
the gateway its listening socket as socket activation does (LISTEN_FDS), and
stops everything in reverse with SIGTERM.
"""

from __future__ import annotations

import contextlib
import graphlib
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

from pouch.tests.support.containerd import mounts_under, require_containerd, shims_of
from pouch.tests.support.daemon import CLOSED_PROXY, PouchDaemon
from pouch.tests.support.procs import alive
from pouch.tests.support.tools import require

REPO = Path(__file__).resolve().parents[2]
RENDER = REPO / "deploy" / "systemd" / "render.py"
TARGET = "pouch.target"
# DESIGN's start order, as units.
DESIGN_ORDER = ["pouch-broker.service", "pouch-supervisor.service",
                "pouch-actor@system.service", "pouch-actor@image.service",
                "pouch-actor@volume.service", "pouch-actor@network.service",
                "pouch-actor@container.service", "pouch-actor@builder.service",
                "pouch-gateway.service"]
# What systemd gives a system service: no inherited environment, this PATH, cwd /.
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The units' WatchdogSec=, shortened so that a test run sees the pings.
TEST_WATCHDOG_USEC = 1_000_000
READY_TIMEOUT = 60.0
SD_LISTEN_FDS_START = 3
# Settings that would change how a service runs, which the stand-in does not do.
UNEMULATED = {"EnvironmentFile", "ExecStartPre", "ExecStartPost", "User", "Group",
              "WorkingDirectory", "RootDirectory", "PassEnvironment"}
UCRED = struct.Struct("iII")  # pid, uid, gid: what SCM_CREDENTIALS carries


# -- reading units ----------------------------------------------------------

Section = dict[str, list[str]]


@dataclass
class Unit:
    name: str
    sections: dict[str, Section]

    @property
    def kind(self) -> str:
        return self.name.rpartition(".")[2]

    def values(self, section: str, key: str) -> list[str]:
        return self.sections.get(section, {}).get(key, [])

    def value(self, section: str, key: str, default: str = "") -> str:
        """A single-valued setting: its last assignment wins."""
        found = self.values(section, key)
        return found[-1] if found else default

    def names(self, section: str, key: str) -> list[str]:
        """A list setting (After=, Wants=, ...): every name of every assignment."""
        return [name for value in self.values(section, key) for name in value.split()]

    @property
    def activated_service(self) -> str:
        """The service a socket unit passes its sockets to."""
        return self.value("Socket", "Service", self.name.rpartition(".")[0] + ".service")


def _expand(value: str, specifiers: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in specifiers:
            raise AssertionError(f"specifier %{key} in {value!r} is not emulated here")
        return specifiers[key]
    return re.sub(r"%(.)", one, value)


def _parse_into(sections: dict[str, Section], text: str, specifiers: dict[str, str]) -> None:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    section = ""
    for line in lines:
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep and section, f"not a setting: {line!r}"
        values = sections.setdefault(section, {}).setdefault(key.strip(), [])
        value = _expand(value.strip(), specifiers)
        if value:
            values.append(value)
        else:
            values.clear()  # an empty assignment resets a list


def load_unit(folder: Path, name: str) -> Unit:
    """A unit as systemd reads it: its file (or template), its drop-ins, specifiers expanded."""
    stem, _, suffix = name.rpartition(".")
    prefix, at, instance = stem.partition("@")
    file_name = f"{prefix}@.{suffix}" if at else name
    specifiers = {"%": "%", "n": name, "N": stem, "p": prefix, "i": instance, "I": instance}
    sections: dict[str, Section] = {}
    _parse_into(sections, (folder / file_name).read_text(), specifiers)
    drop_ins = [conf for d in dict.fromkeys([f"{file_name}.d", f"{name}.d"])
                for conf in (folder / d).glob("*.conf")]
    for conf in sorted(drop_ins, key=lambda p: p.name):
        _parse_into(sections, conf.read_text(), specifiers)
    return Unit(name, sections)


def target_units(folder: Path) -> dict[str, Unit]:
    """Every unit pouch.target pulls in, by name."""
    target = load_unit(folder, TARGET)
    names = target.names("Unit", "Wants") + target.names("Unit", "Requires")
    return {name: load_unit(folder, name) for name in names}


def start_order(units: dict[str, Unit]) -> list[str]:
    """The order systemd starts `units` in, from After=/Before= and socket activation."""
    graph: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for name, unit in units.items():
        graph.add(name, *(dep for dep in unit.names("Unit", "After") if dep in units))
        for later in unit.names("Unit", "Before"):
            if later in units:
                graph.add(later, name)
        if unit.kind == "socket":
            graph.add(unit.activated_service, name)
    return list(graph.static_order())


def seconds(value: str) -> float:
    """A systemd time span such as "100ms", "20s", "1min"."""
    total = 0.0
    scale = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "m": 60.0, "min": 60.0}
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * scale[unit]
    return total


# -- standing in for systemd ------------------------------------------------

class StandInSystemd:
    """Starts units' commands as systemd would, and stops them in reverse order."""

    def __init__(self, base: Path, config_file: Path, listen_paths: dict[str, Path]) -> None:
        self.base = base
        self.config_file = config_file
        self.listen_paths = listen_paths  # a unit's ListenStream= -> where the test listens
        self.notify_path = base / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # Like systemd, learn each message's sender from the kernel, not from the message.
        self.notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.notify.bind(str(self.notify_path))
        self.messages: defaultdict[int, list[str]] = defaultdict(list)
        self.started: list[Unit] = []
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        # By the service they activate: the socket, its path, the socket unit's name.
        self.sockets: dict[str, tuple[socket.socket, Path, str]] = {}
        self.socket_inodes: dict[Path, int] = {}

    def __enter__(self) -> StandInSystemd:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for sock, _, _ in self.sockets.values():
            sock.close()
        self.notify.close()

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def start(self, unit: Unit) -> None:
        if unit.kind == "socket":
            self._listen(unit)
        elif unit.kind == "service":
            self._run(unit)
        else:
            raise AssertionError(f"{unit.name}: a {unit.kind} unit has nothing to start")
        self.started.append(unit)

    def _listen(self, unit: Unit) -> None:
        path = self.listen_paths[unit.value("Socket", "ListenStream")]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        os.chmod(path, int(unit.value("Socket", "SocketMode", "0666"), 8))
        sock.listen()
        self.sockets[unit.activated_service] = (sock, path, unit.name)
        self.socket_inodes[path] = path.stat().st_ino

    def _run(self, unit: Unit) -> None:
        unemulated = UNEMULATED & set(unit.sections.get("Service", {}))
        assert not unemulated, f"{unit.name}: {', '.join(sorted(unemulated))} not emulated here"
        argv = shlex.split(unit.value("Service", "ExecStart").lstrip("-@:+!"))
        # The deployment's settings file: the one thing the test changes in a unit.
        argv[1:1] = ["--config-file", str(self.config_file)]
        env = {"PATH": SERVICE_PATH, "NOTIFY_SOCKET": str(self.notify_path),
               "HTTP_PROXY": CLOSED_PROXY, "HTTPS_PROXY": CLOSED_PROXY,
               "http_proxy": CLOSED_PROXY, "https_proxy": CLOSED_PROXY}
        for assignment in unit.values("Service", "Environment"):
            for item in shlex.split(assignment):
                key, _, value = item.partition("=")
                env[key] = value
        # Variables that name the service's own pid are set by a shell that then
        # execs the service, so the pid is right. bash, as dash redirects no fd above 9.
        own_pid = []
        redirect = ""
        pass_fds: tuple[int, ...] = ()
        if unit.value("Service", "WatchdogSec"):
            env["WATCHDOG_USEC"] = str(TEST_WATCHDOG_USEC)
            own_pid.append("WATCHDOG_PID")
        if unit.name in self.sockets:
            sock, _, socket_unit = self.sockets[unit.name]
            fd = sock.fileno()
            env["LISTEN_FDS"] = "1"
            env["LISTEN_FDNAMES"] = socket_unit
            own_pid.append("LISTEN_PID")
            pass_fds = (fd,)
            if fd != SD_LISTEN_FDS_START:
                redirect = f" {SD_LISTEN_FDS_START}<&{fd} {fd}<&-"
        script = "".join(f"export {name}=$$; " for name in own_pid) + 'exec "$@"' + redirect
        with open(self.log_path(unit.name), "ab") as log:
            proc = subprocess.Popen(["bash", "-c", script, "bash", *argv], env=env, cwd="/",
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    pass_fds=pass_fds, start_new_session=True)
        self.processes[unit.name] = proc
        kind = unit.value("Service", "Type", "simple")
        if kind == "notify":
            self._wait_ready(unit.name, proc)
        elif kind != "simple":
            raise AssertionError(f"{unit.name}: Type={kind} is not emulated here")

    def _wait_ready(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while "READY=1" not in self.messages[proc.pid]:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode} before READY=1:\n"
                                     f"{self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} sent no READY=1 within {READY_TIMEOUT:.0f} s:\n"
                                     f"{self.log_tail(name)}")
            self.receive(0.1)

    def receive(self, timeout: float = 0.0) -> None:
        """Read what the services told the notify socket, by sender pid."""
        readable, _, _ = select.select([self.notify], [], [], timeout)
        while readable:
            try:
                data, ancdata, _, _ = self.notify.recvmsg(
                    4096, socket.CMSG_SPACE(UCRED.size), socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            for level, kind, cdata in ancdata:
                if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS):
                    pid = UCRED.unpack_from(cdata)[0]
                    self.messages[pid] += data.decode(errors="replace").splitlines()

    def stop_all(self) -> dict[str, str]:
        """Stop every unit in reverse start order; how each service ended."""
        ended = {}
        for unit in reversed(self.started):
            outcome = self._stop(unit)
            if outcome is not None:
                ended[unit.name] = outcome
        self.started.clear()
        return ended

    def restart(self, name: str) -> dict[str, str]:
        """`systemctl restart name`: with it, in order, every unit that Requires= it."""
        affected = {name}
        for unit in self.started:  # in start order, so requirements come first
            if affected & set(unit.names("Unit", "Requires") + unit.names("Unit", "BindsTo")):
                affected.add(unit.name)
        units = [unit for unit in self.started if unit.name in affected]
        ended = {}
        for unit in reversed(units):
            ended[unit.name] = self._stop(unit) or ""
            self.started.remove(unit)
        for unit in units:
            self.start(unit)
        return ended

    def _stop(self, unit: Unit) -> str | None:
        """Stop one unit; how its service ended (None for a socket)."""
        if unit.kind == "socket":
            sock, path, _ = self.sockets.pop(unit.activated_service)
            sock.close()
            path.unlink(missing_ok=True)
            return None
        proc = self.processes[unit.name]
        if proc.poll() is not None:
            return f"had already exited with {proc.returncode}"
        # Whatever KillMode= says (control-group, mixed and process all begin so),
        # the main process gets SIGTERM; only KillMode=process spares the rest
        # of the cgroup, and these services leave nothing else behind but shims.
        proc.send_signal(signal.SIGTERM)
        timeout = seconds(unit.value("Service", "TimeoutStopSec", "90s"))
        try:
            status = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return f"did not stop within {timeout:g} s"
        # systemd counts an exit by the stop signal as clean.
        return "clean" if status in (0, -signal.SIGTERM) else f"status {status}"

    def log_path(self, name: str) -> Path:
        return self.base / f"{name}.log"

    def log_tail(self, name: str, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path(name).read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.log_tail(name)}" for name in self.processes)


# -- fixtures -----------------------------------------------------------------

@pytest.fixture(scope="module")
def rendered_units(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The units as deploy/systemd/render.py writes them for this checkout."""
    dest = tmp_path_factory.mktemp("units")
    done = subprocess.run([sys.executable, str(RENDER), "--root", str(REPO), "--dest", str(dest)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return dest


@pytest.fixture
def base() -> Iterator[Path]:
    # Short, under /tmp: unix socket paths must fit in 108 bytes.
    path = Path(tempfile.mkdtemp(prefix="ps-", dir="/tmp"))
    try:
        yield path
    finally:
        PouchDaemon(path).cleanup()  # kills what is left of ours, unmounts, deletes


# -- the tests ----------------------------------------------------------------

def test_render_names_this_checkout(rendered_units: Path):
    exec_starts = {path.name: line for path in rendered_units.glob("*.service")
                   for line in path.read_text().splitlines() if line.startswith("ExecStart=")}
    assert set(exec_starts) == {"pouch-broker.service", "pouch-supervisor.service",
                                "pouch-actor@.service", "pouch-gateway.service"}
    for line in exec_starts.values():
        assert line.startswith(f"ExecStart={REPO}/.venv/bin/pouchd ")
    assert (rendered_units / "pouch-actor@image.service.d" / "order.conf").is_file()


def test_render_refuses_a_checkout_without_pouchd(tmp_path: Path):
    done = subprocess.run([sys.executable, str(RENDER), "--root", str(tmp_path),
                           "--dest", str(tmp_path / "units")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "make install" in done.stderr
    assert not (tmp_path / "units").exists()


def test_systemd_analyze_verify_accepts_every_unit(rendered_units: Path):
    analyze = require("systemd-analyze", "systemd")
    names = [TARGET, *target_units(rendered_units)]
    done = subprocess.run([analyze, "verify", "--man=no",
                           *(str(rendered_units / name) for name in names)],
                          capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # Ordering cycles and unknown settings are only printed: exit status 0 does not rule them out.
    assert [line for line in output.splitlines() if "pouch" in line] == []


def test_enabling_the_target_is_the_one_step(rendered_units: Path, tmp_path: Path):
    systemctl = require("systemctl", "systemd")
    unit_dir = tmp_path / "etc" / "systemd" / "system"
    shutil.copytree(rendered_units, unit_dir)
    done = subprocess.run([systemctl, f"--root={tmp_path}", "enable", TARGET],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    link = unit_dir / "multi-user.target.wants" / TARGET
    assert link.is_symlink()


def test_units_start_in_designs_order(rendered_units: Path):
    units = target_units(rendered_units)
    order = start_order(units)
    assert [name for name in order if name.endswith(".service")] == DESIGN_ORDER
    assert order.index("pouch-gateway.socket") < order.index("pouch-gateway.service")
    for name, unit in units.items():
        assert unit.names("Unit", "PartOf") == [TARGET], name
        # A requirement the unit is not ordered after would start alongside it.
        assert set(unit.names("Unit", "Requires")) <= set(unit.names("Unit", "After")), name


@dataclass
class Deployment:
    systemd: StandInSystemd
    daemon: PouchDaemon  # the folder layout and the docker CLI of a test daemon
    units: dict[str, Unit]


@pytest.fixture
def deployment(rendered_units: Path, base: Path, busybox_tarball: Path) -> Iterator[Deployment]:
    """Every unit of pouch.target started in order, with busybox loaded."""
    require_containerd()
    units = target_units(rendered_units)
    daemon = PouchDaemon(base)
    daemon.docker_config.mkdir(parents=True)
    config_file = base / "config.json"
    config_file.write_text(json.dumps({
        "home-dir": str(daemon.home), "exec-root-dir": str(daemon.run_dir),
        "listen": [daemon.host], "debug": True,
        # A bridge of its own, as every test daemon's (tests/support/netclean.py).
        "bridge-name": daemon.bridge, "bip": daemon.network_args()[3],
    }))
    listen_paths = {units["pouch-gateway.socket"].value("Socket", "ListenStream"): daemon.socket}
    with StandInSystemd(base, config_file, listen_paths) as systemd:
        try:
            for name in start_order(units):
                systemd.start(units[name])
            daemon.docker("load", "-i", str(busybox_tarball))
            yield Deployment(systemd, daemon, units)
        finally:
            print(systemd.logs())  # pytest shows it when the test fails


def test_units_run_the_daemon_and_stop_clean(deployment: Deployment):
    systemd, daemon = deployment.systemd, deployment.daemon
    assert daemon.docker("run", "--rm", "busybox", "echo", "hi") == "hi"

    # The gateway serves the socket it was handed: gunicorn, binding its own,
    # would have replaced the file.
    assert daemon.socket.stat().st_ino == systemd.socket_inodes[daemon.socket]
    assert oct(daemon.socket.stat().st_mode & 0o777) == "0o660"
    for role, unit in [("broker", "pouch-broker.service"),
                       ("pouchd", "pouch-supervisor.service"),
                       ("system", "pouch-actor@system.service"),
                       ("image", "pouch-actor@image.service"),
                       ("volume", "pouch-actor@volume.service"),
                       ("network", "pouch-actor@network.service"),
                       ("container", "pouch-actor@container.service"),
                       ("builder", "pouch-actor@builder.service"),
                       ("gateway", "pouch-gateway.service")]:
        assert daemon.pid_of(role) == systemd.pid(unit), role
    containerd = Path(f"/proc/{daemon.pid_of('containerd')}/cmdline").read_bytes()
    assert containerd.startswith(b"/usr/bin/containerd\0")
    systemd.receive()
    assert "WATCHDOG=1" in systemd.messages[systemd.pid("pouch-supervisor.service")]

    ended = systemd.stop_all()

    assert ended == dict.fromkeys(reversed(DESIGN_ORDER), "clean"), systemd.logs()
    assert daemon.leftovers() == []
    assert shims_of(daemon.containerd_socket) == []
    assert mounts_under(daemon.base) == []
    assert sorted(p.name for p in daemon.run_dir.glob("*.pid")) == []


def test_containers_outlive_a_restart_of_the_supervisor_unit(deployment: Deployment):
    systemd, daemon = deployment.systemd, deployment.daemon
    assert deployment.units["pouch-supervisor.service"].value("Service", "KillMode") == "process"
    daemon.docker("run", "-d", "--name", "survivor", "busybox", "sleep", "300")
    shims = shims_of(daemon.containerd_socket)
    old_containerd = daemon.pid_of("containerd")
    assert shims

    ended = systemd.restart("pouch-supervisor.service")

    # The actors Require= the supervisor: systemd restarts them with it.
    assert ended == dict.fromkeys(reversed(DESIGN_ORDER[1:-1]), "clean"), systemd.logs()
    assert daemon.pid_of("containerd") != old_containerd
    assert [pid for pid in shims if alive(pid)] == shims
    assert daemon.inspect("survivor")["State"]["Running"] is True
    daemon.docker("rm", "-f", "survivor")
    assert systemd.stop_all() == dict.fromkeys(reversed(DESIGN_ORDER), "clean"), systemd.logs()
    assert daemon.leftovers() == []
    assert shims_of(daemon.containerd_socket) == []


def test_supervisor_unit_fails_when_containerd_keeps_crashing(deployment: Deployment):
    systemd, daemon = deployment.systemd, deployment.daemon
    role = systemd.processes["pouch-supervisor.service"]
    killed: set[int] = set()
    deadline = time.monotonic() + 60
    while role.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            pid = daemon.pid_of("containerd")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if pid not in killed and str(daemon.base).encode() in cmdline:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        time.sleep(0.05)

    assert role.poll() is not None, "pouchd containerd kept restarting containerd"
    assert len(killed) > 1
    assert role.returncode != 0
