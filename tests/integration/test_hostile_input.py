"""Bodies and numbers a hostile or careless client sends get a 400 (or 413) naming the
problem, never a 500, and nothing is done with them."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import uuid

from pouch.gateway.worker import GATHER_LIMIT
from pouch.tests.support.daemon import PouchDaemon


def request(daemon: PouchDaemon, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    """One HTTP request over the API socket; the status and the JSON answer."""
    head = {"Host": "pouch", "Connection": "close", **(headers or {})}
    if body and "Transfer-Encoding" not in head:
        head.setdefault("Content-Length", str(len(body)))
    if body or "Transfer-Encoding" in head:
        head.setdefault("Content-Type", "application/json")
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(str(daemon.socket))
        s.sendall(f"{method} {path} HTTP/1.1\r\n{lines}\r\n".encode() + body)
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    status_line, _, rest = raw.partition(b"\r\n")
    answer = rest.partition(b"\r\n\r\n")[2]
    if b"Transfer-Encoding: chunked" in rest.partition(b"\r\n\r\n")[0]:
        answer = _unchunk(answer)
    return int(status_line.split()[1]), (json.loads(answer) if answer.strip() else {})


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, data = data.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out, data = out + data[:n], data[n + 2:]
    return out


def chunked(payload: bytes, piece: int = 7) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + piece]), payload[i:i + piece])
                    for i in range(0, len(payload), piece)) + b"0\r\n\r\n"


def test_numbers_beyond_64_bits_in_the_query_are_refused(daemon: PouchDaemon):
    huge = "9" * 20
    for path in (f"/containers/json?limit={huge}", f"/containers/nosuch/stop?t={huge}"):
        method = "GET" if "json" in path else "POST"
        status, answer = request(daemon, method, path)
        assert status == 400, (path, answer)
        assert "out of range" in str(answer["message"])


def test_numbers_beyond_64_bits_in_a_body_are_refused_and_nothing_is_created(daemon):
    name = f"big-{uuid.uuid4().hex[:8]}"
    body = b'{"Image": "busybox", "StopTimeout": 99999999999999999999}'
    status, answer = request(daemon, "POST", f"/containers/create?name={name}", body)
    assert status == 400 and "StopTimeout" in str(answer["message"])
    assert daemon.docker("ps", "-aq", "--filter", f"name={name}") == ""


def test_a_lone_surrogate_is_refused(daemon: PouchDaemon):
    status, answer = request(daemon, "POST", "/containers/create",
                             b'{"Image": "busybox", "Hostname": "\\ud800"}')
    assert status == 400 and "Unicode" in str(answer["message"])


def test_deep_nesting_is_refused_without_exhausting_the_stack(daemon: PouchDaemon):
    deep = b'{"Image": "busybox", "Labels": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, answer = request(daemon, "POST", "/containers/create", deep)
    assert status == 400, answer


def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(daemon: PouchDaemon):
    # Only the beginning is sent (the gateway gathers up to 64 KiB of a body before
    # a thread takes it): the answer must not wait for 11 MiB it will not read.
    status, answer = request(daemon, "POST", "/containers/create", b" " * GATHER_LIMIT,
                             {"Content-Length": str(11 * 1024 * 1024),
                              "Content-Type": "application/json"})
    assert status == 413 and "larger than" in str(answer["message"])


def test_a_chunked_json_body_is_read(daemon: PouchDaemon):
    name = f"chunked-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"Image": "busybox", "Cmd": ["true"]}).encode()
    status, answer = request(daemon, "POST", f"/containers/create?name={name}", chunked(body),
                             {"Transfer-Encoding": "chunked"})
    assert status == 201, answer
    daemon.docker("rm", name)


def test_a_name_with_a_trailing_newline_is_refused(daemon: PouchDaemon):
    status, answer = request(daemon, "POST", "/containers/create?name=fuzznl%0A",
                             b'{"Image": "busybox"}')
    assert status == 400 and "Invalid container name" in str(answer["message"])


def test_filters_too_deep_or_not_unicode_are_refused(daemon: PouchDaemon):
    for raw in ("%5B" * 1300, '{"name":["\\ud800"]}'):
        status, answer = request(daemon, "GET", f"/containers/json?filters={raw}")
        assert status == 400 and "filters" in str(answer["message"]), answer


def test_stop_with_a_negative_timeout_of_a_missing_container_is_not_found(daemon):
    status, answer = request(daemon, "POST", "/containers/nosuch/stop?t=-100")
    assert status == 404, answer


def test_stop_with_a_negative_timeout_waits_for_the_exit_without_killing(daemon):
    name = f"patient-{uuid.uuid4().hex[:8]}"
    # The shell ignores SIGTERM until told to exit: only a SIGKILL could end it early.
    daemon.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                  "trap 'exit 7' USR1; trap '' TERM; while :; do sleep 0.1; done")
    try:
        stopper = threading.Thread(target=daemon.docker, args=("stop", "-t", "-1", name))
        stopper.start()
        stopper.join(3)
        assert stopper.is_alive(), "stop -t -1 gave up waiting"
        daemon.docker("kill", "-s", "USR1", name)
        stopper.join(30)
        assert daemon.docker("inspect", "-f", "{{.State.ExitCode}}", name) == "7"
    finally:
        daemon.docker("rm", "-f", name)


def test_a_log_tail_beyond_64_bits_is_refused(daemon: PouchDaemon):
    name = f"tail-{uuid.uuid4().hex[:8]}"
    daemon.docker("create", "--name", name, "busybox", "true")
    try:
        status, answer = request(daemon, "GET",
                                 f"/containers/{name}/logs?stdout=1&tail={'9' * 20}")
        assert status == 400 and "tail" in str(answer["message"]), answer
    finally:
        daemon.docker("rm", name)


def test_a_terminal_size_beyond_dockerds_is_refused(daemon: PouchDaemon):
    status, answer = request(daemon, "POST", "/containers/nosuch/resize?h=70000&w=80")
    assert status == 400 and "height" in str(answer["message"]), answer


def test_a_field_the_container_would_not_get_is_refused_not_ignored(daemon: PouchDaemon):
    # (An AppArmor profile counts only where the kernel enforces AppArmor: see
    # test_container_security.)
    result = daemon.docker_result("create", "--gpus", "all", "busybox", "true")
    assert result.returncode != 0 and "not supported yet" in result.stderr, result


def test_a_valid_50_mib_body_is_refused_with_413(daemon: PouchDaemon):
    env = [f"V{i}={'x' * 1000}" for i in range(50_000)]
    body = json.dumps({"Image": "busybox", "Env": env}).encode()
    head = (f"POST /containers/create HTTP/1.1\r\nHost: pouch\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(str(daemon.socket))
        s.sendall(head.encode())
        # The answer may come (and the gateway close) before the body is all sent.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(body)
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
