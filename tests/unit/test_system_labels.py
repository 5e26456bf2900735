"""The host's labels (node_ip, SN) from `hostname -i` and dmidecode, with every way
those fail, and the daemon's --label labels. The commands are stand-ins here."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from pouch.actors import hostlabels
from pouch.proto.config import DaemonConfig, add_flags, resolve

HOSTNAME = ("hostname", "-i")
DMIDECODE = ("dmidecode", "-s", "system-serial-number")


def runner(answers: dict[tuple[str, ...], str | BaseException]
           ) -> Callable[[Sequence[str], float], str]:
    """A command runner answering from `answers`: an output, or an exception to raise."""
    def run(argv: Sequence[str], timeout: float) -> str:
        answer = answers[tuple(argv)]
        if isinstance(answer, BaseException):
            raise answer
        return answer
    return run


def labels(hostname: str | BaseException, dmidecode: str | BaseException) -> list[str]:
    return hostlabels.system_labels(runner({HOSTNAME: hostname, DMIDECODE: dmidecode}))


def test_both_labels_when_both_commands_answer():
    assert labels("10.0.0.5 fe80::1\n", "SN-4711\n") == ["node_ip=10.0.0.5", "SN=SN-4711"]


@pytest.mark.parametrize("failure", [
    FileNotFoundError(2, "No such file or directory", "dmidecode"),  # not installed
    subprocess.CalledProcessError(1, list(DMIDECODE), "", "/dev/mem: Permission denied"),
    subprocess.TimeoutExpired(list(DMIDECODE), 2.0),
    PermissionError(13, "Permission denied"),
])
def test_no_sn_label_when_dmidecode_cannot_tell(failure, caplog):
    caplog.set_level(logging.DEBUG, logger="pouch.system")
    assert labels("10.0.0.5\n", failure) == ["node_ip=10.0.0.5"]
    said = [r for r in caplog.records if "no SN label" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.DEBUG


@pytest.mark.parametrize("output", [
    "", "\n", "Not Specified\n", "None\n", "0\n", "To Be Filled By O.E.M.\n",
    "# No SMBIOS nor DMI entry point found, sorry.\n",
])
def test_no_sn_label_for_a_machine_without_a_serial(output):
    assert labels("10.0.0.5\n", output) == ["node_ip=10.0.0.5"]


def test_dmidecode_comments_are_skipped():
    assert labels("10.0.0.5\n", "# SMBIOS entry point at 0x000f0000\nVMware-56 4d\n") == \
        ["node_ip=10.0.0.5", "SN=VMware-56 4d"]


@pytest.mark.parametrize("failure", [
    subprocess.CalledProcessError(1, list(HOSTNAME), "", "Name or service not known"),
    subprocess.TimeoutExpired(list(HOSTNAME), 2.0),
    FileNotFoundError(2, "No such file or directory", "hostname"),
    "\n",
])
def test_no_node_ip_label_when_hostname_gives_no_address(failure):
    assert labels(failure, "SN-4711\n") == ["SN=SN-4711"]


def test_nothing_at_all_is_no_label_and_no_error():
    gone = FileNotFoundError(2, "No such file or directory")
    assert labels(gone, gone) == []


def test_the_real_runner_bounds_a_command_by_its_timeout():
    with pytest.raises(subprocess.TimeoutExpired):
        hostlabels.run_command(["sleep", "5"], 0.1)


def test_the_daemons_labels_come_first_and_win_their_keys():
    assert hostlabels.merge(["zone=eu", "node_ip=192.0.2.1"],
                            ["node_ip=10.0.0.5", "SN=1"]) == \
        ["zone=eu", "node_ip=192.0.2.1", "SN=1"]


# -- --label and the config file's "label" ---------------------------------------------


def parse(*argv: str) -> DaemonConfig:
    parser = argparse.ArgumentParser(prog="pouchd", exit_on_error=False)
    add_flags(parser)
    return resolve(parser.parse_args(["--config-file", "", *argv]))


def test_label_flags_repeat_and_keep_their_order():
    assert parse("--label", "b=2", "--label", "a=1", "--label", "b=2").labels == \
        ("b=2", "a=1")


def test_a_value_may_hold_equals_signs_or_be_empty():
    assert parse("--label", "k=a=b", "--label", "e=").labels == ("k=a=b", "e=")


@pytest.mark.parametrize(("given", "words"), [
    ("novalue", "label 'novalue' is not key=value"),
    ("=v", "label '=v' is not key=value"),
])
def test_a_label_must_be_key_value(given, words):
    with pytest.raises(ValueError, match=words):
        parse("--label", given)


def test_one_key_with_two_values_is_refused():
    with pytest.raises(ValueError, match="give 'zone' two values"):
        parse("--label", "zone=a", "--label", "zone=b")


def test_the_config_file_sets_labels_and_flags_win(tmp_path: Path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"label": ["zone=a"]}))
    assert parse("--config-file", str(path)).labels == ("zone=a",)
    assert parse("--config-file", str(path), "--label", "rack=1").labels == ("rack=1",)
    path.write_text(json.dumps({"label": "zone=b"}))
    assert parse("--config-file", str(path)).labels == ("zone=b",)


def test_a_child_gets_the_same_labels():
    config = DaemonConfig(labels=("zone=a", "rack=r7"))
    assert parse(*config.to_args()).labels == config.labels
