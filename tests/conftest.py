"""Fixtures: a real pouchd (with its own containerd) and the offline busybox image."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

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
