"""Bodies and numbers a hostile or careless client sends get a 400 (or 413) naming the
problem, never a 500, and nothing is done with them."""

from __future__ import annotations

import json
import socket
import uuid

from pouch.tests.support.daemon import PouchDaemon


def request(daemon: PouchDaemon, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    """One HTTP request over the API socket; the status and the JSON answer."""
    head = {"Host": "pouch", "Connection": "close", **(headers or {})}
    if body and "Transfer-Encoding" not in head:
        head["Content-Length"] = str(len(body))
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
    # Only the head is sent: the answer must not wait for 11 MiB it will not read.
    status, answer = request(daemon, "POST", "/containers/create", b"",
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
