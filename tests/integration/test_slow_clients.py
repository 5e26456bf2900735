"""Idle and slow clients cost the gateway nothing: with a thousand connections that
send nothing, fifty that send a body a byte at a time, or forty chunked bodies that
never end, `docker ps` still answers (within its client's usual timeout: how fast
is the benchmark's business, bench/slow_clients.py); and a connection that sends
no request is closed after the documented time (README, "Gateway limits")."""

from __future__ import annotations

import runpy
import socket
import time

from pouch.gateway.server import GUNICORN_CONF
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.slowclients import Trickle, fd_limit, idle

KEEPALIVE = runpy.run_path(str(GUNICORN_CONF))["keepalive"]
UNENDING_CHUNKED = (b"POST /containers/create HTTP/1.1\r\nHost: pouch\r\n"
                    b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"1\r\n{\r\n")


def test_docker_ps_answers_beside_a_thousand_idle_and_fifty_slow_clients(daemon: PouchDaemon):
    with fd_limit(1100), idle(daemon.socket, 1000), Trickle(daemon.socket, 50, 0.2):
        assert daemon.docker("ps", "--format", "{{.ID}}") is not None
        assert daemon.ping()


def test_unending_chunked_bodies_hold_up_no_other_request(daemon: PouchDaemon):
    with idle(daemon.socket, 40, UNENDING_CHUNKED):
        assert daemon.docker("ps", "--format", "{{.ID}}") is not None
        assert daemon.ping()


def test_a_request_sent_a_byte_at_a_time_is_served(daemon: PouchDaemon):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(str(daemon.socket))
        for byte in b"GET /_ping HTTP/1.1\r\nHost: pouch\r\nConnection: close\r\n\r\n":
            s.send(bytes([byte]))
        assert s.recv(64).startswith(b"HTTP/1.1 200")


def test_a_connection_that_sends_no_request_is_closed_after_the_keepalive_time(
        daemon: PouchDaemon):
    with idle(daemon.socket, 10) as conns, idle(daemon.socket, 10, b"GET /_ping HTT") as halves:
        opened = time.monotonic()
        for s in conns + halves:
            s.settimeout(KEEPALIVE + 10)
            assert s.recv(1) == b"", "the gateway answered a request it did not get"
        # The worker's loop checks deadlines every second.
        assert time.monotonic() - opened >= KEEPALIVE - 1
