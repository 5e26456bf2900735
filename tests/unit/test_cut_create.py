"""Which task-create failures are a cut create's remains in the way (retried) and which
are the container's own (told at once): pure."""

from __future__ import annotations

import pytest

from pouch.actors.container.worker import _cut_create_in_the_way
from pouch.proto.envelope import PouchError

BUNDLE = "/run/containerd/io.containerd.runtime.v2.task/pouch/" + "a" * 64


@pytest.mark.parametrize(("message", "retried"), [
    ("task " + "a" * 64 + ": already exists", True),
    ("failed to create shim task: getwd: no such file or directory", True),
    ("failed to create shim task: ttrpc: closed", True),
    (f"failed to start shim: open {BUNDLE}/log: no such file or directory", True),
    (f"failed to create shim task: mkdir {BUNDLE}/rootfs: no such file or directory: "
     "not found", True),
    ('failed to create shim task: OCI runtime create failed: runc create failed: unable to '
     'start container process: exec: "/no/such": stat /no/such: no such file or directory: '
     "unknown", False),
])
def test_a_cut_creates_remains_are_told_from_the_containers_own_failure(message, retried):
    assert _cut_create_in_the_way(PouchError("internal", message)) is retried
