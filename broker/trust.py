"""Who may serve in the broker: pouchd's own processes, on an endpoint of their own.

Clients connect to `<exec-root>/broker.sock` (mode 0660). Actors register on
`<exec-root>/private/actors.sock`, in a directory of mode 0700 made before the
socket exists, and prove with each READY that they read this broker's token,
a random value the broker writes (mode 0600) into that directory when it
binds: a process that could not open the directory cannot serve a service.
Beside the token, the kernel's word on who connects (`pouch.broker.peercheck`):
only processes of pouchd's own tree are let in on that endpoint at all.
Every socket is created under a umask that gives it its final mode at once,
never a moment of whatever the umask allowed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from pouch.proto.config import ACTOR_SOCKET, PRIVATE_DIR

TOKEN_FILE = "token"


def unpredictable_routing_ids() -> None:
    """Seed libc's rand() from `secrets`. Process-wide: call before any ROUTER socket exists.

    libzmq (4.3.5) names a peer that gives no routing id 0x00 + a 32-bit counter that
    starts from libc's rand(), which nothing seeds: every broker's first ids are the
    same (0x006b8b4567, ...). A client that claims the next ones with ROUTING_ID makes
    libzmq assert (add_out_pipe in socket_base.cpp) when an anonymous peer connects and
    is given an id already taken: the broker aborts. Seeded, nobody knows where the
    counter starts."""
    libc = ctypes.CDLL(None)
    libc.srand.argtypes = [ctypes.c_uint]
    libc.srand(secrets.randbits(32))


def private_endpoint(client_endpoint: str) -> str:
    """The actors' endpoint beside a client endpoint `ipc://<dir>/broker.sock`."""
    folder = Path(client_endpoint.removeprefix("ipc://")).parent
    return f"ipc://{folder / PRIVATE_DIR / ACTOR_SOCKET}"


def ipc_path(endpoint: str) -> Path | None:
    return Path(endpoint[len("ipc://"):]) if endpoint.startswith("ipc://") else None


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """The process's umask while creating files. Process-wide: callers create their
    sockets before other threads create files (the broker binds at start-up)."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def make_private_dir(path: Path) -> None:
    """A directory only its owner can enter, with that mode from the moment it exists."""
    with umask(0o077):
        path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)  # one left by an older pouchd may be wider
    if path.stat().st_uid != os.geteuid():
        raise PermissionError(f"{path} belongs to another user")


def prepare_ipc(endpoint: str) -> None:
    """Remove the stale socket a broker that died left at an ipc endpoint."""
    path = ipc_path(endpoint)
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def write_token(actor_endpoint: str) -> str:
    """A new random token for this broker's life, readable by its owner alone."""
    path = _token_path(actor_endpoint)
    token = secrets.token_hex(16)
    tmp = path.with_suffix(".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    os.replace(tmp, path)
    return token


def read_token(actor_endpoint: str) -> str:
    """The token an actor says READY with; "" where the broker wrote none."""
    try:
        return _token_path(actor_endpoint).read_text().strip()
    except (OSError, ValueError):
        return ""


def _token_path(actor_endpoint: str) -> Path:
    path = ipc_path(actor_endpoint)
    if path is None:
        raise ValueError(f"actors register on an ipc endpoint, not {actor_endpoint}")
    return path.parent / TOKEN_FILE
