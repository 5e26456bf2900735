"""pouchd's configuration: defaults < config file < flags, and the flags a child gets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from pouch.proto import config as config_module
from pouch.proto.config import DaemonConfig, add_flags, resolve


def parse(*argv: str) -> DaemonConfig:
    parser = argparse.ArgumentParser(prog="pouchd", exit_on_error=False)
    add_flags(parser)
    return resolve(parser.parse_args(list(argv)))


def config_file(tmp_path: Path, settings: Any) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(settings))
    return str(path)


# -- defaults ----------------------------------------------------------------


def test_defaults_are_pouchds():
    config = DaemonConfig()
    assert config.home_dir == Path("/var/lib/pouch")
    assert config.exec_root_dir == Path("/var/run/pouch")
    assert config.listen == ("unix:///var/run/pouchd.sock",)
    assert config.containerd_path == "/usr/bin/containerd"
    assert config.oom_score_adj == -500
    assert config.default_registry == "docker.io"
    assert config.debug is False


def test_derived_paths_follow_the_exec_root():
    config = DaemonConfig(exec_root_dir=Path("/run/p"))
    assert config.containerd_socket == Path("/run/p/containerd.sock")
    assert config.broker_endpoint == "ipc:///run/p/broker.sock"
    assert config.handoff_dir == Path("/run/p/handoff")
    assert config.pidfile_path == Path("/run/p/pouchd.pid")
    assert config.pid_path("gateway") == Path("/run/p/gateway.pid")


def test_explicit_socket_and_pidfile_win_over_the_derived_ones():
    config = DaemonConfig(containerd="/tmp/c.sock", pidfile="/tmp/p.pid")
    assert config.containerd_socket == Path("/tmp/c.sock")
    assert config.pidfile_path == Path("/tmp/p.pid")


def test_no_flags_and_no_file_give_the_defaults(tmp_path):
    assert parse("--config-file", "") == DaemonConfig()


@pytest.fixture
def default_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where pouchd looks for its config file unless told, moved off this machine's /etc."""
    path = tmp_path / "etc" / "config.json"
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_FILE", str(path))
    return path


def test_a_missing_default_config_file_is_fine(default_config_file: Path):
    assert not default_config_file.exists()
    assert parse() == DaemonConfig()


def test_the_default_config_file_is_read_when_present(default_config_file: Path):
    default_config_file.parent.mkdir()
    default_config_file.write_text(json.dumps({"debug": True}))
    assert parse() == DaemonConfig(debug=True)


# -- flags and file ------------------------------------------------------------


def test_flags_set_every_setting(tmp_path):
    config = parse("--config-file", "", "--home-dir", str(tmp_path / "home"),
                   "--exec-root-dir", str(tmp_path / "run"), "-l", "unix:///tmp/a.sock",
                   "--listen", "tcp://127.0.0.1:2375", "--containerd-path", "/opt/containerd",
                   "--containerd", "/tmp/c.sock", "--pidfile", "/tmp/p.pid",
                   "--oom-score-adj", "-100", "--default-registry", "registry.local",
                   "-D", "--gateway-workers", "2", "--gateway-threads", "4")
    assert config == DaemonConfig(
        home_dir=tmp_path / "home", exec_root_dir=tmp_path / "run",
        listen=("unix:///tmp/a.sock", "tcp://127.0.0.1:2375"),
        containerd_path="/opt/containerd", containerd="/tmp/c.sock", pidfile="/tmp/p.pid",
        oom_score_adj=-100, default_registry="registry.local", debug=True,
        gateway_workers=2, gateway_threads=4)


def test_relative_dirs_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = parse("--config-file", "", "--home-dir", "home", "--exec-root-dir", "run")
    assert config.home_dir == tmp_path / "home"
    assert config.exec_root_dir == tmp_path / "run"


def test_the_file_overrides_defaults(tmp_path):
    path = config_file(tmp_path, {"home-dir": "/srv/pouch", "debug": True,
                                  "listen": ["unix:///a.sock", "unix:///b.sock"],
                                  "oom-score-adj": 0, "default-registry": "mirror.local"})
    config = parse("--config-file", path)
    assert config.home_dir == Path("/srv/pouch")
    assert config.debug is True
    assert config.listen == ("unix:///a.sock", "unix:///b.sock")
    assert config.oom_score_adj == 0
    assert config.default_registry == "mirror.local"
    assert config.exec_root_dir == DaemonConfig().exec_root_dir


def test_flags_override_the_file(tmp_path):
    path = config_file(tmp_path, {"home-dir": "/srv/pouch", "listen": ["unix:///file.sock"],
                                  "oom-score-adj": 0})
    config = parse("--config-file", path, "--home-dir", "/data/pouch", "-l", "unix:///flag.sock")
    assert config.home_dir == Path("/data/pouch")
    assert config.listen == ("unix:///flag.sock",)
    assert config.oom_score_adj == 0


def test_a_single_listen_address_may_be_a_string(tmp_path):
    config = parse("--config-file", config_file(tmp_path, {"listen": "unix:///one.sock"}))
    assert config.listen == ("unix:///one.sock",)


def test_an_empty_file_object_changes_nothing(tmp_path):
    assert parse("--config-file", config_file(tmp_path, {})) == DaemonConfig()


# -- errors --------------------------------------------------------------------


def test_an_unknown_key_is_named(tmp_path):
    path = config_file(tmp_path, {"home-dir": "/x", "home_dir": "/y"})
    with pytest.raises(ValueError, match="unknown setting 'home_dir'"):
        parse("--config-file", path)


def test_the_config_file_flag_itself_is_not_a_setting(tmp_path):
    with pytest.raises(ValueError, match="unknown setting 'config-file'"):
        parse("--config-file", config_file(tmp_path, {"config-file": "/other.json"}))


@pytest.mark.parametrize(("settings", "words"), [
    ({"oom-score-adj": "-500"}, "'oom-score-adj' must be an integer"),
    ({"oom-score-adj": True}, "'oom-score-adj' must be an integer"),
    ({"oom-score-adj": 1.5}, "'oom-score-adj' must be an integer"),
    ({"gateway-workers": None}, "'gateway-workers' must be an integer"),
    ({"debug": "yes"}, "'debug' must be a bool"),
    ({"debug": 1}, "'debug' must be a bool"),
    ({"home-dir": 5}, "'home-dir' must be a string"),
    ({"exec-root-dir": ["/run"]}, "'exec-root-dir' must be a string"),
    ({"listen": [1]}, "'listen' must be a list of strings"),
    ({"listen": {"a": "b"}}, "'listen' must be a list of strings"),
    ({"default-registry": 5}, "'default-registry' must be a str"),
    ({"containerd-path": None}, "'containerd-path' must be a str"),
])
def test_a_wrong_type_names_the_setting(tmp_path, settings, words):
    path = config_file(tmp_path, settings)
    with pytest.raises(ValueError) as err:
        parse("--config-file", path)
    assert words in str(err.value)
    assert path in str(err.value)


def test_a_named_config_file_must_exist(tmp_path):
    missing = str(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="does not exist"):
        parse("--config-file", missing)


def test_the_file_must_be_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{home-dir: /x}")
    with pytest.raises(ValueError, match="is not valid JSON"):
        parse("--config-file", str(path))


def test_the_file_must_hold_an_object(tmp_path):
    with pytest.raises(ValueError, match="must hold a JSON object"):
        parse("--config-file", config_file(tmp_path, ["home-dir", "/x"]))


def test_a_flag_of_the_wrong_type_is_refused_by_the_parser():
    parser = argparse.ArgumentParser(prog="pouchd", exit_on_error=False)
    add_flags(parser)
    with pytest.raises(argparse.ArgumentError):
        parser.parse_args(["--oom-score-adj", "lots"])


# -- what a child is given -------------------------------------------------------


def reparse(config: DaemonConfig) -> DaemonConfig:
    return parse(*config.to_args())


def test_to_args_round_trips_the_defaults():
    again = reparse(DaemonConfig())
    assert again.containerd_socket == DaemonConfig().containerd_socket
    assert again == DaemonConfig(containerd=str(DaemonConfig().containerd_socket))


def test_to_args_round_trips_every_setting(tmp_path):
    config = DaemonConfig(
        home_dir=tmp_path / "home", exec_root_dir=tmp_path / "run",
        listen=("unix:///tmp/a.sock", "tcp://127.0.0.1:2375"),
        containerd_path="/opt/containerd", containerd="/tmp/c.sock", oom_score_adj=-17,
        default_registry="registry.local", debug=True, gateway_workers=3, gateway_threads=5)
    assert reparse(config) == config


def test_to_args_never_lets_a_child_read_the_config_file_again(tmp_path):
    args = DaemonConfig().to_args()
    assert args[args.index("--config-file") + 1] == ""


def test_to_args_without_debug_leaves_debug_off():
    assert "--debug" not in DaemonConfig().to_args()
    assert reparse(DaemonConfig(debug=False)).debug is False


def test_to_args_keeps_the_pidfile():
    config = DaemonConfig(pidfile="/tmp/elsewhere/pouchd.pid")
    assert reparse(config).pidfile_path == config.pidfile_path
