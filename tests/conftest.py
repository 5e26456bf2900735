"""Fixtures: a real pouchd (with its own containerd) and the offline busybox image."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker as docker_py
import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScopeScheduling, Scheduling

from pouch.broker.client import Client
from pouch.tests.images import build_busybox_tarball
from pouch.tests.support import netclean
from pouch.tests.support.daemon import PouchDaemon, running

# Under `-n N --dist loadscope` (pyproject.toml), the tests that share a worker and run
# there one after another: a module's (its module-scoped fixtures are made once), and all
# those under these folders: the fault tests time how fast the tree recovers, so they
# never run beside each other. (With pytest 9.2, `--dist loadgroup` ignores xdist_group
# marks: pytest-xdist issue #1386.)
ONE_AT_A_TIME = ("tests/faults/",)


class ModulesAndFaults(LoadScopeScheduling):
    def _split_scope(self, nodeid: str) -> str:
        return next((folder for folder in ONE_AT_A_TIME if nodeid.startswith(folder)),
                    nodeid.split("::", 1)[0])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> Scheduling | None:
    return ModulesAndFaults(config, log) if config.getvalue("dist") == "loadscope" else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist workers, whose collection order is the order scopes are handed out
    (--no-loadscope-reorder): the longest scope (tests/faults) first, unit tests, each
    module quick, last, to fill the workers that finish early."""
    if hasattr(config, "workerinput"):
        first = (*ONE_AT_A_TIME, "tests/integration/")
        items.sort(key=lambda item: next(
            (rank for rank, folder in enumerate(first) if item.nodeid.startswith(folder)),
            len(first)))


@pytest.fixture(scope="session", autouse=True)
def no_network_leftovers() -> Iterator[None]:
    """At the session's end, nothing of its daemons' networks remains: no bridge, no
    veth in one, no iptables chain or jump (torn down last: after every daemon)."""
    yield
    left = {tag: found for tag in sorted(netclean.SESSION_TAGS)
            if (found := netclean.leftovers(tag))}
    assert not left, f"network leftovers of this session's daemons: {left}"


@pytest.fixture(scope="session")
def busybox_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("images") / "busybox.tar"
    build_busybox_tarball(path)
    return path


@pytest.fixture(scope="session")
def daemon(busybox_tarball: Path) -> Iterator[PouchDaemon]:
    """One pouchd for the session, with busybox loaded."""
    with running(busybox_tarball) as pouchd:
        yield pouchd


@pytest.fixture
def pouchd(busybox_tarball: Path) -> Iterator[PouchDaemon]:
    """A pouchd of the test's own (--debug: fault points are honoured), busybox loaded."""
    with running(busybox_tarball) as daemon:
        yield daemon


@pytest.fixture
def docker(daemon: PouchDaemon) -> Callable[..., str]:
    """Run the docker CLI against the session's pouchd: docker("ps", "-a")."""
    return daemon.docker


@pytest.fixture
def networks(daemon: PouchDaemon) -> Iterator[Callable[[str], str]]:
    """Unique network names; whatever bears one is removed after the test."""
    made: list[str] = []

    def make(prefix: str = "net") -> str:
        made.append(f"{prefix}-{uuid.uuid4().hex[:8]}")
        return made[-1]

    yield make
    for name in made:
        # Containers of the test on it go first (its `names` fixture ends after this one).
        found = daemon.docker_result("network", "inspect", "-f", "{{json .Containers}}", name)
        for cid in json.loads(found.stdout or "{}") if found.returncode == 0 else {}:
            daemon.docker_result("rm", "-f", cid)
        daemon.docker_result("network", "rm", name)


@pytest.fixture
def names(daemon: PouchDaemon) -> Iterator[Callable[[str], str]]:
    """Unique container names; whatever bears one is removed after the test."""
    made: list[str] = []

    def make(prefix: str) -> str:
        made.append(f"{prefix}-{uuid.uuid4().hex[:8]}")
        return made[-1]

    yield make
    for name in made:
        daemon.docker_result("rm", "-f", name)


@pytest.fixture
def name(names: Callable[[str], str]) -> str:
    """A unique container name; the container is removed after the test."""
    return names("c")


@pytest.fixture
def calls(daemon: PouchDaemon) -> Iterator[Client]:
    """A ZeroMQ client of the session pouchd's broker."""
    client = Client(f"ipc://{daemon.run_dir}/broker.sock", timeout=20)
    yield client
    client.close()


@pytest.fixture(scope="module")
def api(daemon: PouchDaemon) -> Iterator[docker_py.APIClient]:
    """docker-py's low-level client of the session's pouchd."""
    client = docker_py.APIClient(base_url=daemon.host, version="1.41", timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="module")
def client(daemon: PouchDaemon) -> Iterator[docker_py.DockerClient]:
    """docker-py's high-level client of the session's pouchd."""
    sdk = docker_py.DockerClient(base_url=daemon.host, version="1.41", timeout=60)
    yield sdk
    sdk.close()
