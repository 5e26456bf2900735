"""Fixtures: a real pouchd (with its own containerd) and the offline busybox image."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker as docker_py
import pytest

from pouch.broker.client import Client
from pouch.tests.images import build_busybox_tarball
from pouch.tests.support.daemon import PouchDaemon, running


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
