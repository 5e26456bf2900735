"""The containerd client against a real containerd, runc and busybox."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import io
import os
import queue
import secrets
import signal
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import timestamp_pb2

from pouch.actors.container.worker import unless_gone
from pouch.actors.containerd.client import Containerd
from pouch.actors.containerd.events import Event
from pouch.actors.containerd.types import Descriptor, rfc3339
from pouch.proto.containerd.api.events import task_pb2 as task_events
from pouch.proto.envelope import PouchError
from pouch.tests.support.containerd import ContainerdHandle, ContainerdProcess
from pouch.tests.support.procs import unread_from
from pouch.tests.support.tools import require, require_file
from pouch.tests.support.wait import wait_for

BUSYBOX = Path("/bin/busybox")
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def blob(data: bytes) -> tuple[bytes, str]:
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


def collect_garbage(ctrd: Containerd) -> None:
    """containerd collects garbage synchronously when a lease is deleted with sync."""
    ctrd.leases.delete(ctrd.leases.create(), sync=True)


def busybox_layer() -> bytes:
    require_file(BUSYBOX, "busybox-static")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo("bin")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        tar.add(BUSYBOX, arcname="bin/busybox")
    return buffer.getvalue()


def busybox_snapshot(ctrd: Containerd) -> str:
    """A committed snapshot holding /bin/busybox, made through the differ."""
    layer, digest = blob(busybox_layer())
    name = unique("busybox")
    with ctrd.leases.hold() as lease:
        ctrd.content.write(unique("layer"), layer, len(layer), digest, lease=lease)
        key = unique("extract")
        mounts = ctrd.snapshots.prepare(key, lease=lease)
        descriptor: Descriptor = {"media_type": LAYER_TAR, "digest": digest, "size": len(layer)}
        applied = ctrd.diff.apply(descriptor, mounts)
        assert applied["digest"] == digest  # an uncompressed layer is its own diff id
        ctrd.snapshots.commit(name, key, {"containerd.io/gc.root": "true"}, lease=lease)
    return name


def remove_with_child(ctrd: Containerd, base: str, child: str) -> None:
    """Remove a container's snapshot and the one it was prepared from. containerd's
    garbage collector, woken by the container's delete, may take the child first, and
    still be removing its files when asked for the base: that one may wait for it."""
    unless_gone(lambda: ctrd.snapshots.remove(child))

    def base_removed() -> bool:
        try:
            ctrd.snapshots.remove(base)
        except PouchError as exc:
            if exc.code != "conflict":  # "cannot remove snapshot with child"
                raise
            return False
        return True

    wait_for(base_removed, 10, f"the removal of snapshot {base}")


def runc_spec(args: list[str]) -> dict[str, Any]:
    caps = ["CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_SETGID", "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs"},
        "hostname": "pouch-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
        ],
        "linux": {
            "namespaces": [{"type": kind} for kind in ("pid", "ipc", "uts", "mount", "network")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        },
    }


class FifoReader:
    """Reads a FIFO the shim writes to, until the shim closes it."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        # Opened before the shim, without blocking; made blocking once the shim
        # holds the write end, so that the end of output reads as end of file.
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self._chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._read, daemon=True)

    def start(self) -> None:
        flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        fcntl.fcntl(self._fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        self._thread.start()

    def _read(self) -> None:
        while chunk := os.read(self._fd, 65536):
            self._chunks.append(chunk)

    def output(self, timeout: float) -> bytes:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the shim never closed the FIFO"
        return b"".join(self._chunks)

    def close(self) -> None:
        os.close(self._fd)


def test_version_is_the_installed_daemon(ctrd: Containerd) -> None:
    assert ctrd.version().startswith("1.")


def test_the_garbage_collector_looks_for_work_every_second(containerd: ContainerdHandle
                                                            ) -> None:
    """As pouch's config has it (render_config), not every 5 ms: containerd took it."""
    shown = subprocess.run([require("ctr", "containerd"), "--address", str(containerd.address),
                            "plugins", "ls", "--detailed", "type==io.containerd.gc.v1"],
                           capture_output=True, text=True, check=True).stdout
    exports = dict(line.split(None, 1) for line in shown.splitlines()
                   if line.startswith(" ") and len(line.split()) == 2)
    assert exports["PauseThreshold"].strip() == "0"


def test_ensure_namespace_is_idempotent(ctrd: Containerd) -> None:
    ctrd.namespaces.ensure()
    ctrd.namespaces.ensure()


def test_blob_write_read_and_rewrite(ctrd: Containerd) -> None:
    data, digest = blob(secrets.token_bytes(3 * 1024 * 1024 + 17))
    with ctrd.leases.hold() as lease:
        ctrd.content.write(
            unique("ref"), io.BytesIO(data), len(data), digest, {"a": "1"}, lease=lease
        )
        # The same blob again, under another ref: already there, so a success.
        ctrd.content.write(unique("ref"), data, len(data), digest, lease=lease)
        assert ctrd.content.read(digest) == data
        info = ctrd.content.info(digest)
        assert info is not None and info.size == len(data) and info.labels == {"a": "1"}

        updated = ctrd.content.update_labels(digest, {"b": "2", "a": None})
        assert updated.labels == {"b": "2"}


def test_blob_with_wrong_digest_is_refused(ctrd: Containerd) -> None:
    data = b"not what the digest says"
    _, digest = blob(b"something else")
    with ctrd.leases.hold() as lease, pytest.raises(PouchError) as raised:
        ctrd.content.write(unique("ref"), data, len(data), digest, lease=lease)
    assert raised.value.code == "invalid"
    assert ctrd.content.info(digest) is None


def test_lease_keeps_content_until_it_ends(ctrd: Containerd) -> None:
    data, digest = blob(secrets.token_bytes(1000))
    with ctrd.leases.hold() as lease:
        ctrd.content.write(unique("ref"), data, len(data), digest, lease=lease)
        collect_garbage(ctrd)
        assert ctrd.content.info(digest) is not None
    collect_garbage(ctrd)
    assert ctrd.content.info(digest) is None


def test_lease_ends_when_the_block_fails(ctrd: Containerd) -> None:
    data, digest = blob(secrets.token_bytes(1000))
    with pytest.raises(RuntimeError), ctrd.leases.hold() as lease:
        ctrd.content.write(unique("ref"), data, len(data), digest, lease=lease)
        raise RuntimeError("import failed")
    collect_garbage(ctrd)
    assert ctrd.content.info(digest) is None


def test_snapshot_prepare_commit_and_remove(ctrd: Containerd) -> None:
    parent, child = unique("parent"), unique("child")
    with ctrd.leases.hold() as lease:
        mounts = ctrd.snapshots.prepare(unique("active"), lease=lease)
        assert mounts and mounts[0]["type"] == "bind"
        key = unique("active")
        mounts = ctrd.snapshots.prepare(key, labels={"purpose": "test"}, lease=lease)
        assert ctrd.snapshots.mounts(key) == mounts
        active = ctrd.snapshots.stat(key)
        assert active is not None and active.kind == "active"
        assert active.labels == {"purpose": "test"}

        ctrd.snapshots.commit(parent, key, lease=lease)
        committed = ctrd.snapshots.stat(parent)
        assert committed is not None and committed.kind == "committed"
        assert ctrd.snapshots.stat(key) is None

        layered = ctrd.snapshots.prepare(child, parent, lease=lease)
        assert layered[0]["type"] == "overlay"
        assert ctrd.snapshots.stat(child).parent == parent  # type: ignore[union-attr]
        assert {parent, child} <= {info.name for info in ctrd.snapshots.list()}

        with pytest.raises(PouchError) as raised:
            ctrd.snapshots.remove(parent)
        assert raised.value.code == "conflict"  # it still has a child

        ctrd.snapshots.remove(child)
        ctrd.snapshots.remove(parent)
    assert ctrd.snapshots.stat(parent) is None and ctrd.snapshots.stat(child) is None


def test_container_keeps_its_spec_and_labels(ctrd: Containerd) -> None:
    container_id = unique("spec")
    spec = runc_spec(["/bin/busybox", "true"])
    created = ctrd.containers.create(
        container_id, "docker.io/library/busybox:latest", spec, container_id, {"role": "test"}
    )
    assert created.spec == spec
    try:
        found = ctrd.containers.get(container_id)
        assert found is not None and found.spec == spec and found.labels == {"role": "test"}
        assert found.image == "docker.io/library/busybox:latest"
        assert found.runtime == "io.containerd.runc.v2"
        assert found.snapshotter == "overlayfs" and found.snapshot_key == container_id

        listed = ctrd.containers.list([f"labels.role==test,id=={container_id}"])
        assert [container.id for container in listed] == [container_id]

        with pytest.raises(PouchError) as raised:
            ctrd.containers.create(container_id, "busybox", spec, container_id)
        assert raised.value.code == "conflict"
    finally:
        ctrd.containers.delete(container_id)
    assert ctrd.containers.get(container_id) is None


def test_task_runs_echo_and_reports_its_exit(ctrd: Containerd, tmp_path: Path) -> None:
    base = busybox_snapshot(ctrd)
    container_id = unique("echo")
    # Under a lease, as pouch creates them: containerd's collector may run between the
    # two calls, and takes a snapshot that nothing holds.
    with ctrd.leases.hold() as lease:
        ctrd.snapshots.prepare(container_id, base, lease=lease)
        ctrd.containers.create(
            container_id, "busybox", runc_spec(["/bin/busybox", "echo", "hi"]), container_id
        )
    # containerd registers a subscriber some time after the call: snapshots are made
    # until one's event comes back, which shows the subscription is live (no exit missed).
    events = ctrd.events.subscribe(['topic=="/tasks/exit"', 'topic=="/snapshot/prepare"'])
    watchdog = threading.Timer(60, events.cancel)
    watchdog.start()
    seen: queue.SimpleQueue[Event] = queue.SimpleQueue()

    def collect() -> None:
        for event in events:
            seen.put(event)

    threading.Thread(target=collect, daemon=True).start()
    while True:
        probe = unique("probe")
        ctrd.snapshots.prepare(probe)
        # Held by nothing: containerd's garbage collector may take it first.
        unless_gone(functools.partial(ctrd.snapshots.remove, probe))
        with contextlib.suppress(queue.Empty):
            if seen.get(timeout=0.2).topic == "/snapshot/prepare":
                break
    stdout, stderr = FifoReader(tmp_path / "stdout"), FifoReader(tmp_path / "stderr")
    try:
        pid = ctrd.tasks.create(
            container_id,
            ctrd.snapshots.mounts(container_id),
            stdout=str(stdout.path),
            stderr=str(stderr.path),
        )
        assert pid > 0
        stdout.start()
        stderr.start()
        assert ctrd.tasks.get(container_id) == (pid, "CREATED", 0)
        ctrd.tasks.start(container_id)

        event = next(e for e in iter(lambda: seen.get(timeout=30), None)
                     if e.topic == "/tasks/exit" and e.payload.container_id == container_id)
        assert event.topic == "/tasks/exit" and event.namespace == "pouch"
        assert isinstance(event.payload, task_events.TaskExit)
        assert event.payload.exit_status == 0
        assert ctrd.tasks.get(container_id) == (pid, "STOPPED", 0)

        exit_status, exited_at = ctrd.tasks.delete(container_id)
        assert exit_status == 0 and exited_at.endswith("Z")
        assert stdout.output(timeout=10) == b"hi\n"
        assert stderr.output(timeout=10) == b""
        assert ctrd.tasks.get(container_id) is None
    finally:
        watchdog.cancel()
        events.cancel()
        stdout.close()
        stderr.close()
        ctrd.containers.delete(container_id)
        remove_with_child(ctrd, base, container_id)
    assert ctrd.snapshots.stat(container_id) is None


def test_task_killed_by_a_signal(ctrd: Containerd) -> None:
    base = busybox_snapshot(ctrd)
    container_id = unique("sleep")
    # Under a lease, as pouch creates them: containerd's collector may run between the
    # two calls, and takes a snapshot that nothing holds.
    with ctrd.leases.hold() as lease:
        ctrd.snapshots.prepare(container_id, base, lease=lease)
        ctrd.containers.create(
            container_id, "busybox", runc_spec(["/bin/busybox", "sleep", "600"]), container_id
        )
    try:
        ctrd.tasks.create(container_id, ctrd.snapshots.mounts(container_id))
        ctrd.tasks.start(container_id)
        state = ctrd.tasks.get(container_id)
        assert state is not None and state.status == "RUNNING"
        assert container_id in ctrd.tasks.list()

        ctrd.tasks.kill(container_id, signal.SIGKILL, all=True)
        exit_status, _ = ctrd.tasks.wait(container_id, timeout=30)
        assert exit_status == 128 + signal.SIGKILL
        assert ctrd.tasks.delete(container_id).exit_status == 128 + signal.SIGKILL
    finally:
        if ctrd.tasks.get(container_id) is not None:
            ctrd.tasks.kill(container_id, signal.SIGKILL, all=True)
            ctrd.tasks.wait(container_id, timeout=30)
            ctrd.tasks.delete(container_id)
        ctrd.containers.delete(container_id)
        remove_with_child(ctrd, base, container_id)


def test_errors_map_to_pouch_codes(ctrd: Containerd) -> None:
    with pytest.raises(PouchError) as raised:
        ctrd.containers.delete("no-such-container")
    assert raised.value.code == "not_found"
    assert "no-such-container" in raised.value.message

    with pytest.raises(PouchError) as raised:
        ctrd.tasks.delete("no-such-container")
    assert raised.value.code == "not_found"

    with pytest.raises(PouchError) as raised:
        ctrd.containers.create("bad/id", "busybox", {}, "bad")
    assert raised.value.code == "invalid"

    assert ctrd.images.get("docker.io/library/none:latest") is None
    assert ctrd.tasks.get("no-such-container") is None


def test_unreachable_daemon_is_unavailable(tmp_path: Path) -> None:
    with Containerd(tmp_path / "missing.sock") as nowhere, pytest.raises(PouchError) as raised:
        nowhere.version(timeout=2)
    assert raised.value.code == "unavailable"
    assert "containerd is not reachable at" in raised.value.message

    with Containerd(tmp_path / "missing.sock") as nowhere, pytest.raises(PouchError) as raised:
        nowhere.wait_ready(timeout=0.3)
    assert raised.value.code == "timeout"


def test_subscription_can_be_cancelled_from_another_thread(ctrd: Containerd) -> None:
    events = ctrd.events.subscribe()
    threading.Timer(0.2, events.cancel).start()
    assert list(events) == []


def test_timestamps_read_as_docker_shows_them() -> None:
    stamp = timestamp_pb2.Timestamp(seconds=1795836377, nanos=420217237)
    assert rfc3339(stamp) == "2026-11-28T03:26:17.420217237Z"
    assert rfc3339(timestamp_pb2.Timestamp(seconds=1795836377, nanos=420000000)) == (
        "2026-11-28T03:26:17.42Z"
    )
    assert rfc3339(timestamp_pb2.Timestamp(seconds=-62135596800)) == "0001-01-01T00:00:00Z"


def test_two_writers_of_one_blob_both_succeed(ctrd: Containerd) -> None:
    data, digest = blob(secrets.token_bytes(16 * 1024 * 1024))
    ref = unique("shared-ref")
    errors: list[BaseException] = []

    def write(lease: str) -> None:
        try:
            ctrd.content.write(ref, data, len(data), digest, lease=lease)
        except BaseException as err:
            errors.append(err)

    with ctrd.leases.hold() as first, ctrd.leases.hold() as second:
        writers = [threading.Thread(target=write, args=(lease,)) for lease in (first, second)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(60)
        assert errors == []
        assert ctrd.content.read(digest) == data


def test_a_call_made_while_containerd_restarts_waits_for_it(tmp_path: Path) -> None:
    """containerd is pouchd's child, back within a second: a call that finds it away
    waits for its successor (pouch.actors.containerd.conn.RECONNECT_WAIT)."""
    process = ContainerdProcess(Path(tempfile.mkdtemp(prefix="pc-", dir="/tmp")))
    try:
        old = process.start()
        ctrd = old.client()
        ctrd.version(timeout=2)
        restarting = threading.Thread(target=process.restart)
        restarting.start()
        wait_for(lambda: old.process.poll() is not None, 10, "the old containerd gone")

        assert ctrd.version(timeout=10)  # made while no containerd listens
        restarting.join()
    finally:
        process.stop()


def test_a_delete_cut_by_containerd_s_death_is_made_again_of_its_successor() -> None:
    """A delete is idempotent: one on its way when containerd died (done or not) is
    made again once the successor answers (`docker rm` failed when containerd was
    killed under it, and the container went away later, on its own)."""
    process = ContainerdProcess(Path(tempfile.mkdtemp(prefix="pc-", dir="/tmp")))
    try:
        old = process.start()
        ctrd = old.client()
        container_id = unique("cut")
        ctrd.containers.create(container_id, "busybox", runc_spec(["/bin/busybox", "true"]),
                               container_id)
        outcome: queue.SimpleQueue[str] = queue.SimpleQueue()

        def delete() -> None:
            try:
                ctrd.containers.delete(container_id)
                outcome.put("deleted")
            except PouchError as exc:
                outcome.put(exc.message)

        old.process.send_signal(signal.SIGSTOP)
        deleting = threading.Thread(target=delete)
        deleting.start()
        # Seen waiting in the stopped containerd's socket (or its backlog), except once in
        # CI, for a reason not found: the wait only lets the delete get there; what counts
        # is asserted after.
        with contextlib.suppress(AssertionError):
            wait_for(functools.partial(unread_from, old.process.pid, [os.getpid()]), 5,
                     "the delete waiting in the stopped containerd's socket")
        old.process.kill()
        old.process.wait()
        process.start()
        deleting.join(30)

        assert outcome.get_nowait() == "deleted"
        assert ctrd.containers.get(container_id) is None
    finally:
        process.stop()
