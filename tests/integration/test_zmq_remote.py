"""Remote ZeroMQ clients (`--zmq-listen`, `--zmq-keys`): over TCP, only a client whose
CURVE key is authorized reaches the broker; it then calls and streams as a local one."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zmq.auth

from pouch.broker import client as client_module
from pouch.broker.client import Client, CurveKeys
from pouch.proto.envelope import PouchError
from pouch.proto.stubs import Calls
from pouch.tests.support.daemon import PouchDaemon, running

STREAM_GIVES_UP = 3.0  # s: the resume window of the stream whose daemon is gone
ENDS_WITHIN = 20.0     # s more for the stream's last asks of the broker to time out


@dataclass(frozen=True)
class Keys:
    folder: Path     # --zmq-keys
    client: Path     # an authorized client's secret key file
    stranger: Path   # a client's secret key file the daemon does not know
    server: Path     # the broker's public key file


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    base = tmp_path_factory.mktemp("curve")
    folder, made = base / "daemon", base / "made"
    (folder / "clients").mkdir(parents=True)
    made.mkdir()
    server_public, server_secret = zmq.auth.create_certificates(made, "server")
    client_public, client_secret = zmq.auth.create_certificates(made, "client")
    _, stranger_secret = zmq.auth.create_certificates(made, "stranger")
    shutil.copy(server_secret, folder / "server.key_secret")
    shutil.copy(client_public, folder / "clients" / "client.key")
    return Keys(folder, Path(client_secret), Path(stranger_secret), Path(server_public))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def remote(busybox_tarball: Path, keys: Keys) -> Iterator[str]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    daemon = PouchDaemon(extra_args=["--zmq-listen", endpoint, "--zmq-keys", str(keys.folder)])
    with running(busybox_tarball, daemon):
        yield endpoint


def test_an_authorized_client_calls_and_follows_events(remote: str, keys: Keys):
    client = Client(remote, timeout=20, curve=CurveKeys.load(keys.client, keys.server))
    try:
        calls = Calls(client)
        assert calls.system.version()["ApiVersion"] == "1.41"
        # From a `since`: a create done before the subscription is in place is kept for it.
        # Bounded: a lost event ends the stream (a failure), not the suite (a hang).
        now = time.time()
        events = calls.system.events(since=now, until=now + 60, filters={"event": ["create"]})
        try:
            cid = calls.container.create(name="remote", config={"Image": "busybox"})["Id"]
            assert next(events)["Actor"]["ID"] == cid
        finally:
            events.close()
        assert [c["Id"] for c in calls.container.list(all=True)] == [cid]
        calls.container.remove(id=cid)
    finally:
        client.close()


def test_a_client_without_an_authorized_key_gets_nothing(remote: str, keys: Keys):
    stranger = Client(remote, timeout=2, curve=CurveKeys.load(keys.stranger, keys.server))
    plain = Client(remote, timeout=2)
    try:
        for client in (stranger, plain):
            with pytest.raises(PouchError) as err:
                Calls(client).system.version()
            assert err.value.code in ("timeout", "unavailable")
    finally:
        stranger.close()
        plain.close()


def test_a_remote_stream_ends_once_the_daemon_stopped_for_good(
        keys: Keys, monkeypatch: pytest.MonkeyPatch):
    """Its disconnect is reported once: the stream asks again only of a broker that
    answers, and gives up at the end of its resume window (shortened here) instead of
    waiting for a daemon that never comes back."""
    monkeypatch.setattr(client_module, "RESUME_WITHIN", STREAM_GIVES_UP)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    daemon = PouchDaemon(extra_args=["--zmq-listen", endpoint, "--zmq-keys", str(keys.folder)])
    daemon.start()
    client = Client(endpoint, timeout=20, curve=CurveKeys.load(keys.client, keys.server))
    ended: list[object] = []

    def follow() -> None:
        try:
            for _event in events:  # what the daemon said as it stopped, then the cut
                pass
            ended.append("the stream ended as if complete")
        except PouchError as exc:
            ended.append(exc)

    following = threading.Thread(target=follow, daemon=True)
    try:
        events = Calls(client).system.events()
        assert Calls(client).system.version()["ApiVersion"] == "1.41"  # the stream is set up
        daemon.stop()
        following.start()
        following.join(STREAM_GIVES_UP + ENDS_WITHIN)
        assert ended, "the stream still waits for the daemon that stopped"
        [error] = ended
        assert isinstance(error, PouchError) and error.code == "unavailable", error
    finally:
        if not following.is_alive():  # its socket is the waiting thread's until then
            client.close()
        daemon.stop()


@pytest.mark.parametrize(("args", "says"), [
    (["--zmq-listen", "tcp://127.0.0.1:1"], "--zmq-listen needs --zmq-keys"),
    (["--zmq-listen", "ipc:///tmp/x", "--zmq-keys", "/tmp"], "use tcp://host:port"),
    (["--zmq-listen", "tcp://127.0.0.1:1", "--zmq-keys", "/nonexistent"],
     "no server.key_secret"),
])
def test_a_remote_endpoint_without_keys_is_refused_at_start(tmp_path: Path, args: list[str],
                                                            says: str):
    started = subprocess.run(
        [sys.executable, "-m", "pouch.actors.supervisor.main", "--home-dir",
         str(tmp_path / "home"), "--exec-root-dir", str(tmp_path / "run"), "--config-file", "",
         *args], capture_output=True, text=True, timeout=30)
    assert started.returncode == 2
    assert says in started.stderr
