"""An exec's supplementary groups, as dockerd gives them: the user's groups from the
container's /etc/group and the container's `--group-add`, whoever the exec runs as."""

from __future__ import annotations


def groups(docker, *args: str) -> list[str]:
    return docker("exec", *args, "id", "-G").split()


def test_exec_gets_the_containers_added_groups(docker, name):
    docker("run", "-d", "--name", name, "--group-add", "123", "--group-add", "users",
           "busybox", "sleep", "60")
    assert groups(docker, name) == ["0", "10", "100", "123"]  # root: wheel from /etc/group
    assert groups(docker, "-u", "daemon", name) == ["1", "100", "123"]
    assert groups(docker, "-u", "65534:10", name) == ["10", "100", "123"]


def test_exec_as_the_containers_user_keeps_its_groups(docker, name):
    docker("run", "-d", "--name", name, "-u", "daemon", "--group-add", "123", "busybox",
           "sleep", "60")
    assert docker("exec", name, "cat", "/proc/1/status").count("Groups:\t1 123") == 1
    assert groups(docker, name) == ["1", "123"]
