"""Log drivers and rotation: `--log-opt max-size=1k --log-opt max-file=3` keeps three
files and `docker logs` reads across them; `--log-driver none` keeps nothing; any other
driver is refused. The writer and reader underneath are checked first, on their own."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import APIError

from pouch.actors.container.jsonlog import LogConfig, LogView, LogWriter, rotated_files
from pouch.tests.support.daemon import DockerError, PouchDaemon

# -- the writer and the reader ---------------------------------------------------------


def lines_of(entries) -> list[str]:
    return [e.data.decode().strip() for e in entries]


def write_lines(writer: LogWriter, first: int, last: int) -> None:
    for n in range(first, last + 1):
        writer.write("stdout", f"{n:04d}\n".encode())


def test_the_log_rotates_before_an_entry_that_would_start_past_max_size(tmp_path: Path):
    log = tmp_path / "json.log"
    writer = LogWriter(log, LogConfig(max_size=500, max_file=3))
    write_lines(writer, 1, 40)
    writer.close()
    assert [p.name for p in rotated_files(log)] == ["json.log.2", "json.log.1"]
    assert not (tmp_path / "json.log.3").exists()
    entry_size = len((tmp_path / "json.log.1").read_bytes().splitlines()[0]) + 1
    for path in (*rotated_files(log), log):
        assert path.stat().st_size < 500 + entry_size
    view = LogView(log)
    kept = lines_of(view.entries())
    view.close()
    assert kept[-1] == "0040"
    assert kept == [f"{n:04d}" for n in range(int(kept[0]), 41)]  # the newest, none missing


def test_with_one_file_the_log_starts_over(tmp_path: Path):
    log = tmp_path / "json.log"
    writer = LogWriter(log, LogConfig(max_size=300, max_file=1))
    write_lines(writer, 1, 30)
    writer.close()
    assert rotated_files(log) == []
    view = LogView(log)
    kept = lines_of(view.entries())
    view.close()
    assert kept[-1] == "0030" and "0001" not in kept


def test_a_reader_catches_up_across_rotations_made_after_it_opened(tmp_path: Path):
    log = tmp_path / "json.log"
    writer = LogWriter(log, LogConfig(max_size=400, max_file=20))
    write_lines(writer, 1, 10)
    view = LogView(log, writer.size())
    before = lines_of(view.entries())
    write_lines(writer, 11, 60)  # several rotations while the reader holds its files
    after = lines_of(view.catch_up(writer.file_id(), writer.size()))
    view.close()
    writer.close()
    assert before + after == [f"{n:04d}" for n in range(1, 61)]


def test_the_none_driver_writes_nothing(tmp_path: Path):
    log = tmp_path / "json.log"
    writer = LogWriter(log, LogConfig(driver="none"))
    assert lines_of(writer.write("stdout", b"hi\n")) == ["hi"]  # live followers get it
    writer.close()
    assert not log.exists()


# -- with the docker CLI -------------------------------------------------------------


@pytest.fixture
def name(daemon: PouchDaemon) -> Iterator[str]:
    made = f"logs-{uuid.uuid4().hex[:8]}"
    yield made
    daemon.docker_result("rm", "-f", made)


def numbers(text: str) -> list[int]:
    return [int(line.split()[-1]) for line in text.splitlines()]


def test_docker_logs_reads_across_the_rotated_files(docker, daemon, name):
    docker("run", "--name", name, "--log-opt", "max-size=1k", "--log-opt", "max-file=3",
           "busybox", "sh", "-c", "for i in $(seq 1 400); do echo line $i; done")
    log = Path(daemon.inspect(name)["LogPath"])
    assert [p.name for p in rotated_files(log)] == [f"{log.name}.2", f"{log.name}.1"]
    shown = numbers(docker("logs", name))
    assert shown[-1] == 400 and 1 not in shown
    assert shown == list(range(shown[0], 401))  # three files' worth, in order, none missing
    assert numbers(docker("logs", "--tail", "3", name)) == [398, 399, 400]
    assert daemon.inspect(name)["HostConfig"]["LogConfig"] == \
        {"Type": "json-file", "Config": {"max-file": "3", "max-size": "1k"}}


def test_logs_follow_a_container_whose_log_rotates_meanwhile(docker, daemon, name):
    docker("run", "-d", "--name", name, "--log-opt", "max-size=2k", "--log-opt", "max-file=50",
           "busybox", "sh", "-c",
           "for b in $(seq 0 9); do for i in $(seq 1 60); do echo line $((b*60+i)); done; "
           "sleep 0.2; done")
    followed = numbers(docker("logs", "-f", name, timeout=60))
    assert followed == list(range(1, 601))
    assert len(rotated_files(Path(daemon.inspect(name)["LogPath"]))) > 3


def test_the_none_driver_keeps_no_log_but_attach_still_shows_the_output(daemon, name):
    result = daemon.docker_result("run", "--name", name, "--log-driver", "none",
                                  "busybox", "echo", "seen live")
    assert (result.returncode, result.stdout) == (0, "seen live\n")
    with pytest.raises(DockerError) as err:
        daemon.docker("logs", name)
    assert "configured logging driver does not support reading" in err.value.stderr
    assert daemon.inspect(name)["HostConfig"]["LogConfig"] == {"Type": "none", "Config": {}}


def test_a_log_driver_pouch_does_not_have_is_refused_with_400(daemon):
    with pytest.raises(DockerError) as err:
        daemon.docker("create", "--log-driver", "syslog", "busybox", "true")
    assert "no log driver named 'syslog'" in err.value.stderr
    sdk = docker.DockerClient(base_url=daemon.host, version="1.41", timeout=60)
    with contextlib.closing(sdk), pytest.raises(APIError) as api:
        sdk.containers.create("busybox", "true", log_config={"Type": "gelf", "Config": {}})
    assert api.value.status_code == 400 and "'gelf'" in str(api.value.explanation)


def test_log_options_json_file_cannot_honour_are_refused(daemon):
    for option, words in (("max-size=lots", "invalid size: 'lots'"),
                          ("max-file=0", "max-file cannot be less than 1"),
                          ("colour=red", "unknown log opt 'colour' for json-file log driver")):
        with pytest.raises(DockerError) as err:
            daemon.docker("create", "--log-opt", option, "busybox", "true")
        assert words in err.value.stderr, option
