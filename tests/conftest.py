"""Fixtures: a real pouchd (with its own containerd) and the offline busybox image."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pouch.tests.images import build_busybox_tarball
from pouch.tests.support.daemon import PouchDaemon


@pytest.fixture(scope="session")
def busybox_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("images") / "busybox.tar"
    build_busybox_tarball(path)
    return path


@pytest.fixture(scope="session")
def daemon(busybox_tarball: Path) -> Iterator[PouchDaemon]:
    """One pouchd for the session, with busybox loaded."""
    pouchd = PouchDaemon()
    try:
        pouchd.start()
        pouchd.docker("load", "-i", str(busybox_tarball))
        yield pouchd
    finally:
        pouchd.stop()


@pytest.fixture
def docker(daemon: PouchDaemon) -> Callable[..., str]:
    """Run the docker CLI against the session's pouchd: docker("ps", "-a")."""
    return daemon.docker
