"""Legacy links on the default bridge (`docker run --link db:data`), as the old tutorials
and compose files use them against dockerd 20.10."""

from __future__ import annotations

import json

from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.volumes import fails


def test_a_linked_container_is_found_by_its_alias_and_told_of_in_the_env(
        daemon: PouchDaemon, names):
    docker = daemon.docker
    db, web = names("db"), names("web")
    docker("run", "-d", "--name", db, "-e", "PW=x", "--expose", "5432", "busybox",
           "sleep", "600")
    db_id = docker("inspect", "-f", "{{.Id}}", db)
    ip = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", db)
    out = docker("run", "--name", web, "--link", f"{db}:data", "busybox", "sh", "-c",
                 "env | grep ^DATA_ | sort; grep data /etc/hosts; ping -c1 -W5 data")
    assert f"DATA_NAME=/{web}/data" in out
    assert f"DATA_PORT=tcp://{ip}:5432" in out
    assert f"DATA_PORT_5432_TCP=tcp://{ip}:5432" in out
    assert f"DATA_PORT_5432_TCP_ADDR={ip}" in out
    assert "DATA_PORT_5432_TCP_PORT=5432" in out
    assert "DATA_PORT_5432_TCP_PROTO=tcp" in out
    assert "DATA_ENV_PW=x" in out
    assert "DATA_ENV_PATH" not in out
    assert f"{ip}\tdata {db_id[:12]} {db}" in out.splitlines()
    assert "1 packets received" in out
    host_config = json.loads(docker("inspect", "-f", "{{json .HostConfig}}", web))
    assert host_config["Links"] == [f"/{db}:/{web}/data"]


def test_an_exec_gets_the_links_env_too(daemon: PouchDaemon, names):
    docker = daemon.docker
    db, web = names("db"), names("web")
    docker("run", "-d", "--name", db, "busybox", "sleep", "600")
    docker("run", "-d", "--name", web, "--link", db, "busybox", "sleep", "600")
    alias = db.upper().replace("-", "_")
    assert docker("exec", web, "sh", "-c", f"echo ${alias}_NAME") == f"/{web}/{db}"


def test_a_link_follows_the_linked_container_to_its_new_address(daemon: PouchDaemon, names):
    docker = daemon.docker
    db, web, other = names("db"), names("web"), names("other")
    docker("run", "-d", "--name", db, "busybox", "sleep", "600")
    docker("create", "--name", web, "--link", f"{db}:data", "busybox", "sleep", "600")
    docker("start", web)
    docker("stop", "-t", "0", db, web)
    # Another container takes db's address meanwhile: db comes back at another one.
    docker("run", "-d", "--name", other, "busybox", "sleep", "600")
    docker("start", db, web)
    ip = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", db)
    hosts = docker("exec", web, "grep", "data", "/etc/hosts").splitlines()
    assert [line.split("\t")[0] for line in hosts] == [ip]
    assert docker("exec", web, "sh", "-c", "echo $DATA_NAME") == f"/{web}/data"


def test_a_link_to_a_missing_container_is_refused_without_a_pull(daemon: PouchDaemon, names):
    error = fails(daemon, "run", "--name", names("web"), "--link", "nosuch-db:data",
                  "busybox", "true")
    assert "could not get container for nosuch-db" in error
    assert "Unable to find image" not in error


def test_the_linked_container_must_run_when_the_linking_one_starts(daemon: PouchDaemon,
                                                                   names):
    docker = daemon.docker
    db, web = names("db"), names("web")
    docker("create", "--name", db, "busybox", "sleep", "600")
    docker("create", "--name", web, "--link", f"{db}:data", "busybox", "true")
    error = fails(daemon, "start", web)
    assert f"Cannot link to a non running container: /{db} AS /{web}/data" in error


def test_links_are_refused_with_the_hosts_or_another_containers_network(
        daemon: PouchDaemon, names):
    docker = daemon.docker
    db = names("db")
    docker("run", "-d", "--name", db, "busybox", "sleep", "600")
    error = fails(daemon, "create", "--network", "host", "--link", db, "busybox", "true")
    assert "conflicting options: host type networking can't be used with links" in error
    error = fails(daemon, "create", "--network", f"container:{db}", "--link", db,
                  "busybox", "true")
    assert "conflicting options" in error and "links" in error


def test_removing_a_link_is_refused_clearly(daemon: PouchDaemon, names):
    docker = daemon.docker
    db, web = names("db"), names("web")
    docker("run", "-d", "--name", db, "busybox", "sleep", "600")
    docker("create", "--name", web, "--link", f"{db}:data", "busybox", "true")
    error = fails(daemon, "rm", "--link", f"/{web}/data")
    assert "not supported" in error
    assert "not supported" in fails(daemon, "rm", "--link", web)  # and web stays
    assert docker("inspect", "-f", "{{.HostConfig.Links}}", web) == f"[/{db}:/{web}/data]"
