"""The API over TCP with TLS and client certificates (`--tlsverify`), as the docker CLI and
docker-py reach it: every stream works through it, and a client without a certificate of
the daemon's CA is refused. Plain TCP beyond loopback is refused at start.

Real certificates, made with openssl: a CA, the daemon's certificate (for 127.0.0.1), a
client's, and a client's of another CA."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker as docker_py
import pytest

from pouch.tests.integration.test_attach_detach import Terminal, shell_ready
from pouch.tests.support.daemon import PouchDaemon, running
from pouch.tests.support.registry import Registry
from pouch.tests.support.tools import require


@dataclass(frozen=True)
class Keys:
    """A certificate and its key, as the docker CLI finds them in DOCKER_CERT_PATH."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def cert(self) -> Path:
        return self.folder / "cert.pem"

    @property
    def key(self) -> Path:
        return self.folder / "key.pem"


def openssl(*args: str) -> None:
    subprocess.run([require("openssl", "openssl"), *args], check=True, capture_output=True)


def make_ca(folder: Path) -> Keys:
    folder.mkdir(parents=True)
    keys = Keys(folder)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", f"/CN={folder.name} CA",
            "-keyout", str(folder / "ca-key.pem"), "-out", str(keys.ca))
    return keys


def issue(ca: Keys, folder: Path, name: str, extensions: str) -> Keys:
    """A certificate `ca` signed, in `folder` beside a copy of the CA's certificate."""
    folder.mkdir(parents=True)
    keys = Keys(folder)
    request, ext = folder / "req.pem", folder / "ext.cnf"
    ext.write_text(extensions + "\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", f"/CN={name}", "-keyout", str(keys.key), "-out", str(request))
    openssl("x509", "-req", "-in", str(request), "-CA", str(ca.ca),
            "-CAkey", str(ca.folder / "ca-key.pem"), "-CAcreateserial", "-days", "1",
            "-extfile", str(ext), "-out", str(keys.cert))
    keys.ca.write_bytes(ca.ca.read_bytes())
    return keys


@dataclass(frozen=True)
class Pki:
    server: Keys
    client: Keys
    stranger: Keys  # a client's certificate of another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    ca, other = make_ca(base / "ca"), make_ca(base / "other-ca")
    return Pki(
        server=issue(ca, base / "server", "pouchd", "subjectAltName=IP:127.0.0.1\n"
                     "extendedKeyUsage=serverAuth"),
        client=issue(ca, base / "client", "client", "extendedKeyUsage=clientAuth"),
        stranger=issue(other, base / "stranger", "stranger", "extendedKeyUsage=clientAuth"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TlsDaemon:
    daemon: PouchDaemon
    address: str  # tcp://127.0.0.1:port


@pytest.fixture(scope="module")
def tls_daemon(busybox_tarball: Path, pki: Pki) -> Iterator[TlsDaemon]:
    address = f"tcp://127.0.0.1:{free_port()}"
    daemon = PouchDaemon(extra_args=[
        "--listen", address, "--tlsverify", "--tlscacert", str(pki.server.ca),
        "--tlscert", str(pki.server.cert), "--tlskey", str(pki.server.key)])
    # Its unix socket (the suite's --listen) stays, plain: the fixture loads busybox there.
    with running(busybox_tarball, daemon):
        yield TlsDaemon(daemon, address)


def cli_env(tls: TlsDaemon, keys: Keys) -> dict[str, str]:
    return {**os.environ, "DOCKER_HOST": tls.address, "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": str(keys.folder),
            "DOCKER_CONFIG": str(tls.daemon.docker_config)}


def docker_tls(tls: TlsDaemon, keys: Keys, *args: str, timeout: float = 60,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require("docker", "docker.io"), *args], capture_output=True,
                          text=True, env=cli_env(tls, keys), timeout=timeout, input=input)


def test_the_docker_cli_runs_attaches_and_follows_over_tls(tls_daemon: TlsDaemon, pki: Pki):
    ran = docker_tls(tls_daemon, pki.client, "run", "--rm", "busybox", "echo", "over tls")
    assert (ran.returncode, ran.stdout) == (0, "over tls\n"), ran.stderr

    started = time.time()
    name = "tls-logs"
    made = docker_tls(tls_daemon, pki.client, "run", "-d", "--name", name, "busybox", "sh",
                      "-c", "for i in 1 2 3; do echo line $i; sleep 0.1; done")
    assert made.returncode == 0, made.stderr
    follow = docker_tls(tls_daemon, pki.client, "logs", "-f", name)
    assert follow.stdout.splitlines() == ["line 1", "line 2", "line 3"], follow.stderr
    docker_tls(tls_daemon, pki.client, "rm", name)

    events = docker_tls(tls_daemon, pki.client, "events", "--since", f"{started:.6f}",
                        "--until", f"{time.time() + 0.5:.6f}", "--filter",
                        f"container={name}", "--format", "{{.Action}}")
    assert events.stdout.split() == ["create", "start", "die", "destroy"], events.stderr


def test_docker_info_version_and_system_df_over_tls(tls_daemon: TlsDaemon, pki: Pki):
    info = docker_tls(tls_daemon, pki.client, "info")
    assert info.returncode == 0, info.stderr
    assert " Server Version: " in info.stdout and " containerd version: " in info.stdout
    assert "WARNING: API is accessible" not in info.stderr  # TLS with client verification
    version = docker_tls(tls_daemon, pki.client, "version", "--format",
                         "{{.Server.APIVersion}} {{range .Server.Components}}{{.Name}} {{end}}")
    assert version.stdout.split() == ["1.41", "Engine", "containerd", "runc"], version.stderr
    df = docker_tls(tls_daemon, pki.client, "system", "df", "--format", "{{.Type}}")
    assert df.stdout.splitlines() == ["Images", "Containers", "Local Volumes",
                                      "Build Cache"], df.stderr


def test_docker_login_over_tls(tls_daemon: TlsDaemon, pki: Pki):
    with Registry(auth="htpasswd", users={"alice": "s3cret"}) as registry:
        wrong = docker_tls(tls_daemon, pki.client, "login", "-u", "alice", "--password-stdin",
                           registry.host, input="nope\n")
        assert wrong.returncode == 1 and "incorrect username or password" in wrong.stderr
        login = docker_tls(tls_daemon, pki.client, "login", "-u", "alice",
                           "--password-stdin", registry.host, input="s3cret\n")
        assert login.returncode == 0 and "Login Succeeded" in login.stdout, login.stderr


def test_run_it_at_a_terminal_over_tls(tls_daemon: TlsDaemon, pki: Pki):
    terminal = Terminal(tls_daemon.daemon, "run", "-it", "--rm", "busybox", "sh",
                        env=cli_env(tls_daemon, pki.client))
    try:
        shell_ready(terminal, "tls")
        terminal.type(b"exit 3\r")
        assert terminal.exit_code() == 3
    finally:
        terminal.close()


def test_docker_py_over_tls(tls_daemon: TlsDaemon, pki: Pki, monkeypatch: pytest.MonkeyPatch):
    # requests prefers these to the client's own CA (docker-py's ca_cert) when set.
    for bundle in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(bundle, raising=False)
    tls = docker_py.tls.TLSConfig(client_cert=(str(pki.client.cert), str(pki.client.key)),
                                  ca_cert=str(pki.client.ca), verify=True)
    client = docker_py.DockerClient(base_url=tls_daemon.address.replace("tcp://", "https://"),
                                    tls=tls)
    try:
        assert client.containers.run("busybox", ["echo", "from docker-py"],
                                     remove=True) == b"from docker-py\n"
        container = client.containers.run("busybox", ["sh", "-c", "exit 5"], detach=True)
        assert container.wait()["StatusCode"] == 5
        container.remove()
        assert client.ping()
    finally:
        client.close()


@pytest.mark.parametrize("who", ["nobody", "stranger"])
def test_a_client_without_a_certificate_of_the_daemons_ca_is_refused(
        tls_daemon: TlsDaemon, pki: Pki, who: str):
    context = ssl.create_default_context(cafile=str(pki.client.ca))
    if who == "stranger":
        context.load_cert_chain(pki.stranger.cert, pki.stranger.key)
    host, port = tls_daemon.address.removeprefix("tcp://").rsplit(":", 1)
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)), \
            socket.create_connection((host, int(port)), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as conn:
        # TLS 1.3: the server's verdict on the client's certificate comes after the
        # client's side of the handshake, with the first read.
        conn.sendall(b"GET /_ping HTTP/1.1\r\nHost: pouch\r\n\r\n")
        assert conn.recv(64) == b"", "answered without a good client certificate"

    refused = docker_tls(tls_daemon, pki.stranger, "version")
    assert refused.returncode != 0
    assert "Server:" not in refused.stdout


def test_the_unix_socket_stays_plain_and_0660(tls_daemon: TlsDaemon):
    assert tls_daemon.daemon.docker("version", "--format", "{{.Server.APIVersion}}") == "1.41"
    assert tls_daemon.daemon.socket.stat().st_mode & 0o777 == 0o660


@pytest.mark.parametrize(("args", "says"), [
    (["--listen", "tcp://0.0.0.0:2375"], "beyond loopback needs --tlsverify"),
    (["--listen", "tcp://192.0.2.1:2375", "--tls", "--tlscert", "/x", "--tlskey", "/y"],
     "beyond loopback needs --tlsverify"),
    (["--tlsverify", "--tlscert", "/nonexistent.pem"], "--tlsverify needs --tlskey"),
    (["--tls", "--tlscert", "/nonexistent/cert.pem", "--tlskey", "/nonexistent/key.pem"],
     "--tlscert /nonexistent/cert.pem: no such file"),
    (["--group", "no-such-group-here"], "--group no-such-group-here: no such group"),
])
def test_an_unsafe_or_broken_entrance_is_refused_at_start(tmp_path: Path, args: list[str],
                                                          says: str):
    started = subprocess.run(
        [sys.executable, "-m", "pouch.actors.supervisor.main", "--home-dir",
         str(tmp_path / "home"), "--exec-root-dir", str(tmp_path / "run"), "--config-file", "",
         *args], capture_output=True, text=True, timeout=30)
    assert started.returncode == 2
    assert says in started.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was made
