"""A containerd of its own for each test module that talks to containerd directly."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pouch.actors.containerd.client import Containerd
from pouch.tests.support.containerd import ContainerdHandle, run_containerd


@pytest.fixture(scope="module")
def containerd() -> Iterator[ContainerdHandle]:
    with run_containerd(Path(tempfile.mkdtemp(prefix="pc-", dir="/tmp"))) as handle:
        yield handle


@pytest.fixture
def ctrd(containerd: ContainerdHandle) -> Containerd:
    client = containerd.client()
    client.namespaces.ensure()
    return client
