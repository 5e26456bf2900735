"""The labels `docker info` lists: pouchd's --label ones, then the host's node_ip and
SN, as pouchd gives them."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from pouch.tests.support.daemon import PouchDaemon


@pytest.fixture(scope="module")
def labelled() -> Iterator[PouchDaemon]:
    pouchd = PouchDaemon(extra_args=["--label", "zone=eu-1", "--label", "rack=r7",
                                     "--label", "zone=eu-1"])
    try:
        yield pouchd.start()
    finally:
        pouchd.stop()


def expected_node_ip() -> str | None:
    """What pouchd reads: the first address `hostname -i` gives here."""
    try:
        out = subprocess.run(["hostname", "-i"], capture_output=True, text=True, timeout=5,
                             check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return out[0] if out else None


def expected_serial() -> str | None:
    if shutil.which("dmidecode") is None:
        return None
    done = subprocess.run(["dmidecode", "-s", "system-serial-number"], capture_output=True,
                          text=True, timeout=5)
    lines = [line.strip() for line in done.stdout.splitlines()
             if line.strip() and not line.startswith("#")]
    if done.returncode or not lines or lines[0].lower() in ("not specified", "none", "0"):
        return None
    return lines[0]


def test_docker_info_lists_the_daemon_labels_then_the_hosts(labelled: PouchDaemon):
    labels = json.loads(labelled.docker("info", "--format", "{{json .Labels}}"))
    node_ip, serial = expected_node_ip(), expected_serial()
    assert labels[:2] == ["zone=eu-1", "rack=r7"]  # given twice, listed once
    assert (f"node_ip={node_ip}" in labels) == (node_ip is not None)
    assert [label for label in labels if label.startswith("SN=")] == \
        ([f"SN={serial}"] if serial else [])
    assert len(labels) == 2 + (node_ip is not None) + (serial is not None)


def test_docker_py_sees_the_same_labels(labelled: PouchDaemon):
    client = docker.APIClient(base_url=labelled.host, version="1.41", timeout=30)
    try:
        labels = client.info()["Labels"]
    finally:
        client.close()
    assert "zone=eu-1" in labels and "rack=r7" in labels
    if (node_ip := expected_node_ip()) is not None:
        assert f"node_ip={node_ip}" in labels


def test_a_label_given_by_the_user_wins_over_the_hosts(tmp_path: Path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"label": ["node_ip=192.0.2.1", "team=core"]}))
    pouchd = PouchDaemon(extra_args=["--config-file", str(config)])
    try:
        pouchd.start()
        labels = json.loads(pouchd.docker("info", "--format", "{{json .Labels}}"))
    finally:
        pouchd.stop()
    assert labels[:2] == ["node_ip=192.0.2.1", "team=core"]
    assert sum(label.startswith("node_ip=") for label in labels) == 1


def test_a_label_that_is_not_key_value_stops_pouchd_at_once(tmp_path: Path):
    pouchd = PouchDaemon(extra_args=["--label", "novalue"])
    try:
        with pytest.raises(RuntimeError) as err:
            pouchd.start()
    finally:
        pouchd.stop()
    assert "label 'novalue' is not key=value" in str(err.value)
