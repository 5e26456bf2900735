"""schemathesis against a real pouchd, from gateway/openapi.yaml: no request gets a 5xx,
and every answer has a status, a content type and a body the document declares.

Bounded: a fixed number of examples per operation and one seed, so a run takes a
minute or two and a failure can be replayed. The daemon has no image and so no
container: no request can start one, or wait on one that never ends."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.forward import tcp_to_unix

DOCUMENT = Path(__file__).parents[2] / "gateway" / "openapi.yaml"
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance")
EXAMPLES_PER_OPERATION = 30
# The first three reach a registry, which a daemon under test never can (its proxy is closed): any
# name they get well-formed ends in 503 "cannot reach registry", as it should. Their
# input checks and errors are tested against real registries (test_image_pull,
# test_image_push). The events stream never ends: tested in test_events.
LEFT_OUT = ("ImageCreate", "ImagePush", "SystemAuth", "SystemEvents")
RUN_LIMIT = 600  # seconds: a hang fails the test rather than the suite


@pytest.fixture(scope="module")
def bare_daemon() -> Iterator[PouchDaemon]:
    daemon = PouchDaemon()
    try:
        yield daemon.start()
    finally:
        daemon.stop()


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(
        bare_daemon: PouchDaemon, tmp_path: Path):
    st = Path(sys.executable).with_name("st")
    with tcp_to_unix(bare_daemon.socket) as base:
        run = subprocess.run(
            [str(st), "run", str(DOCUMENT), "--url", f"{base}/v1.41",
             "--checks", ",".join(CHECKS), "--max-examples", str(EXAMPLES_PER_OPERATION),
             *(arg for op in LEFT_OUT for arg in ("--exclude-operation-id", op)),
             "--seed", "8", "--workers", "1", "--request-timeout", "30",
             "--phases", "examples,coverage,fuzzing", "--generation-database", "none",
             "--no-color", "--report-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=RUN_LIMIT, cwd=tmp_path)
    (tmp_path / "schemathesis.out").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, f"{tmp_path}/schemathesis.out:\n{run.stdout[-20000:]}"
