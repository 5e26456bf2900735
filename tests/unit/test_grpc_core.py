"""pouchd's processes poll their gRPC calls' answers on the calling thread
(pouch.actors.supervisor): a grpcio that dropped the way to ask for it would hand every
answer between its own threads again, unnoticed but for this."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

CALLS = 300
# Counts what one process switches per call made one at a time, voluntarily: not a time.
CLIENT = """
import json, os, sys
{prelude}
import grpc
from pouch.bench.procfs import context_switches
echo = grpc.insecure_channel(sys.argv[1]).unary_unary("/t/Echo")
for _ in range(50):
    echo(b"x", timeout=5)
before = context_switches(os.getpid(), voluntary=True)
for _ in range({calls}):
    echo(b"x", timeout=5)
print(json.dumps([os.environ.get("GRPC_EXPERIMENTS", ""),
                  (context_switches(os.getpid(), voluntary=True) - before) / {calls}]))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    address = f"unix://{tmp_path_factory.mktemp('grpc') / 'echo.sock'}"
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    srv.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "t", {"Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request)})])
    srv.add_insecure_port(address)
    srv.start()
    yield address
    srv.stop(None)


def client(address: str, prelude: str, env: dict[str, str] | None = None) -> tuple[str, float]:
    environ = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    out = subprocess.run(
        [sys.executable, "-c", CLIENT.format(prelude=prelude, calls=CALLS), address],
        env={**environ, **(env or {})}, capture_output=True, text=True, timeout=60,
        check=True).stdout
    experiments, switches = json.loads(out)
    return str(experiments), float(switches)


def test_pouchd_s_processes_poll_their_calls_on_the_calling_thread(server: str) -> None:
    experiments, ours = client(server, "import pouch.actors.supervisor")
    assert experiments == "-event_engine_client"
    _, default = client(server, "")
    # About two switches a call polled by the caller, about ten handed between threads.
    assert ours < 4 < default, (ours, default)


def test_a_user_s_own_grpc_experiments_are_left_as_they_are(server: str) -> None:
    experiments, _ = client(server, "import pouch.actors.supervisor",
                            {"GRPC_EXPERIMENTS": "-event_engine_listener"})
    assert experiments == "-event_engine_listener"
