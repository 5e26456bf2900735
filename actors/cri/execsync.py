"""ExecSync: a command run to its end in a container, its output gathered.

The container actor runs execs on a connection handed over to it (as the
gateway hands a client's socket); here the connection is one end of a
socketpair, and this end reads the response: an HTTP head, then Docker's
multiplexed frames (8-byte header: stream, 0, 0, 0, big-endian length) until
the process has exited and the actor closes it.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from pouch.proto.envelope import PouchError
from pouch.proto.handoff import hand_over
from pouch.proto.stream import RAW_STREAM, StreamSpec
from pouch.proto.stubs import Calls

MAX_OUTPUT = 16 * 1024 * 1024  # bytes per stream kept, as the kubelet's own cap


@dataclass
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit_code: int


def exec_sync(calls: Calls, handoff_dir: Path, container: str, cmd: list[str],
              timeout: float) -> ExecResult:
    """Run `cmd` in `container`; `timeout` s (0: none). Errors: not_found, conflict
    (not running), timeout."""
    created = calls.container.exec_create(id=container, config={
        "Cmd": cmd, "AttachStdout": True, "AttachStderr": True, "AttachStdin": False,
        "Tty": False})
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        link = hand_over(handoff_dir, "container", "exec_start",
                         {"id": created["Id"], "tty": False},
                         StreamSpec("upgrade", RAW_STREAM), theirs.fileno())
        theirs.close()
        try:
            out, err = read_frames(mine, time.monotonic() + timeout if timeout > 0 else None)
        finally:
            link.close()
    finally:
        mine.close()
        theirs.close()
    code = None
    for _ in range(100):  # the stream ends as the code is known; inspect may lag a little
        code = calls.container.exec_inspect(id=created["Id"])["ExitCode"]
        if code is not None:
            break
        time.sleep(0.01)
    return ExecResult(out, err, code if code is not None else -1)


def read_frames(sock: socket.socket, until: float | None) -> tuple[bytes, bytes]:
    """stdout and stderr of a multiplexed stream after its HTTP head. Errors: timeout."""
    buf = bytearray()
    streams = {1: bytearray(), 2: bytearray()}
    head_done = False
    while True:
        if until is not None:
            left = until - time.monotonic()
            if left <= 0:
                raise PouchError("timeout", "command timed out")
            sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise PouchError("timeout", "command timed out") from None
        if not chunk:
            break
        buf += chunk
        if not head_done:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                continue
            del buf[:end + 4]
            head_done = True
        while len(buf) >= 8:
            kind, size = buf[0], struct.unpack(">I", buf[4:8])[0]
            if len(buf) < 8 + size:
                break
            target = streams.get(kind)
            if target is not None and len(target) < MAX_OUTPUT:
                target += buf[8:8 + size]
            del buf[:8 + size]
    return bytes(streams[1]), bytes(streams[2])
