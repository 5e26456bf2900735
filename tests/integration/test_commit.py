"""docker commit: a container's changes become an image through containerd's diff
service, with the changes, message and author asked for; what it leaves is an image."""

from __future__ import annotations

import json
import os
import signal
import tarfile
import tempfile
import time
from pathlib import Path

import docker as docker_py

from pouch.tests.faults.checks import list_leases
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.wait import wait_for


def test_docker_commit_makes_an_image_with_the_file_and_the_changes(pouchd: PouchDaemon):
    docker = pouchd.docker
    docker("run", "--name", "maker", "busybox", "sh", "-c",
           "echo committed > /greeting && rm /bin/ls")
    image_id = docker("commit", "-c", 'CMD ["cat", "/greeting"]', "-c", "ENV STAGE=done",
                      "-c", "WORKDIR /tmp", "-m", "a message", "-a", "An Author <a@b.c>",
                      "maker", "made:v1")
    assert image_id.startswith("sha256:")

    assert docker("run", "--rm", "made:v1") == "committed"
    assert docker("run", "--rm", "made:v1", "sh", "-c", "echo $STAGE; pwd") == "done\n/tmp"
    removed = pouchd.docker_result("run", "--rm", "made:v1", "ls", "/")
    assert removed.returncode != 0  # the deletion is in the layer too (a whiteout)
    inspected = json.loads(docker("image", "inspect", "made:v1"))[0]
    assert inspected["Author"] == "An Author <a@b.c>" and inspected["Comment"] == "a message"
    assert inspected["Config"]["Cmd"] == ["cat", "/greeting"]
    assert inspected["Container"] == pouchd.inspect("maker")["Id"]
    base = json.loads(docker("image", "inspect", "busybox"))[0]
    assert inspected["RootFS"]["Layers"][:-1] == base["RootFS"]["Layers"]
    assert len(inspected["RootFS"]["Layers"]) == len(base["RootFS"]["Layers"]) + 1

    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}",
                     "made:v1").splitlines()
    assert history[0] == "sh -c echo committed > /greeting && rm /bin/ls|a message"
    assert len(history) == len(docker("history", "-q", "busybox").splitlines()) + 1
    assert list_leases(pouchd.containerd_socket) == []
    # The layer is the container's changes: not dockerd's marker, which every container has.
    layer = _last_layer(pouchd, "made:v1")
    assert {"greeting", "bin/.wh.ls"} <= layer and ".dockerenv" not in layer


def _last_layer(daemon: PouchDaemon, image: str) -> set[str]:
    """The names in an image's top layer, from `docker save`."""
    with tempfile.TemporaryDirectory() as folder:
        saved = Path(folder) / "saved.tar"
        daemon.docker("save", "-o", str(saved), image)
        with tarfile.open(saved) as archive:
            manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
            with tarfile.open(fileobj=archive.extractfile(manifest[0]["Layers"][-1])) as layer:
                return {name.removeprefix("./") for name in layer.getnames()}


def test_a_running_container_is_committed_paused_and_goes_on(pouchd: PouchDaemon):
    docker = pouchd.docker
    docker("run", "-d", "--name", "runner", "busybox", "sh", "-c",
           "echo live > /live; sleep 300")
    client = docker_py.DockerClient(base_url=pouchd.host, version="1.41", timeout=60)
    try:
        container = client.containers.get("runner")
        image = container.commit(repository="live", tag="v2", message="from docker-py",
                                 changes=["LABEL from=py"])
        assert "live:v2" in image.tags
        assert image.labels["from"] == "py"
        assert client.containers.get("runner").status == "running"
    finally:
        client.close()
    assert docker("run", "--rm", "live:v2", "cat", "/live") == "live"
    docker("rm", "-f", "runner")


def test_commit_of_no_such_container_is_refused(pouchd: PouchDaemon):
    result = pouchd.docker_result("commit", "nothere", "x:v1")
    assert result.returncode != 0 and "No such container" in result.stderr
    bad = pouchd.docker_result("run", "--name", "c1", "busybox", "true")
    assert bad.returncode == 0
    refused = pouchd.docker_result("commit", "-c", "RUN true", "c1", "x:v2")
    assert refused.returncode != 0 and "is not a valid change command" in refused.stderr
    assert list_leases(pouchd.containerd_socket) == []


def test_commit_changes_are_read_as_dockerd_reads_them(pouchd: PouchDaemon):
    """As a Dockerfile of their own (dockerd's BuildFromConfig): HEALTHCHECK and ONBUILD
    too, the config's environment expanded, an ENTRYPOINT clearing the image's CMD;
    what dockerd refuses (STOPSIGNAL among them) refused in its words."""
    docker = pouchd.docker
    docker("run", "--name", "changed", "-e", "BASE=/srv", "busybox", "true")
    docker("commit", "-c", "HEALTHCHECK --interval=5s --retries=2 CMD true",
           "-c", "ONBUILD RUN echo triggered", "-c", "WORKDIR $BASE/app",
           "-c", 'ENTRYPOINT ["echo", "entry"]', "changed", "changed:v1")
    config = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", "changed:v1"))
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000,
                                     "Retries": 2}
    assert config["OnBuild"] == ["RUN echo triggered"]
    assert config["WorkingDir"] == "/srv/app"
    assert (config["Entrypoint"], config.get("Cmd")) == (["echo", "entry"], None)
    assert docker("run", "--rm", "changed:v1") == "entry"
    for change, said in (("STOPSIGNAL SIGINT", "stopsignal is not a valid change command"),
                         ("HEALTHCHECK --bogus=1 CMD true", "Unknown flag: bogus")):
        refused = pouchd.docker_result("commit", "-c", change, "changed", "changed:v2")
        assert refused.returncode != 0 and said in refused.stderr, refused.stderr


def test_a_committed_image_has_its_base_as_parent(pouchd: PouchDaemon):
    docker = pouchd.docker
    base = docker("image", "inspect", "-f", "{{.Id}}", "busybox")
    assert docker("image", "inspect", "-f", "{{.Parent}}", "busybox") == ""  # loaded
    docker("run", "--name", "first", "busybox", "touch", "/made")
    committed = docker("commit", "first", "com:1")
    docker("run", "--name", "second", "com:1", "true")
    on_top = docker("commit", "second", "com:3")

    def told() -> tuple[str, list[str]]:
        return (docker("image", "inspect", "-f", "{{.Parent}}", "com:1"),
                docker("history", "--no-trunc", "--format", "{{.ID}}", "com:3").splitlines())

    parent, ids = told()
    assert parent == base
    steps = len(docker("history", "-q", "busybox").splitlines())
    assert ids == [on_top, committed, base] + ["<missing>"] * (steps - 1)
    api = docker_py.APIClient(base_url=pouchd.host, version="1.41", timeout=60)
    try:
        assert [i["ParentId"] for i in api.images(name="com:3")] == [committed]
    finally:
        api.close()
    # The parent is the daemon's record, not the config's: a restarted actor knows it.
    actor = pouchd.pid_of("image")
    os.kill(actor, signal.SIGKILL)
    wait_for(lambda: _pid(pouchd, "image") not in (None, actor)
             and pouchd.docker_result("image", "inspect", "com:1").returncode == 0,
             30, "a new image actor")
    assert told() == (parent, ids)
    # An image others were made on stays while they do: by name only its name goes, by
    # ID it is refused, force or not (as dockerd).
    docker("rm", "second")
    for forced in ([], ["-f"]):
        refused = pouchd.docker_result("rmi", *forced, committed)
        assert refused.returncode != 0
        assert "image has dependent child images" in refused.stderr
    assert docker("rmi", "com:1") == "Untagged: com:1"
    assert docker("image", "inspect", "-f", "{{.Id}}", committed) == committed
    # The last child gone, the untagged parent goes with it (pruned, as dockerd does).
    assert committed in docker("rmi", "com:3")
    assert pouchd.docker_result("image", "inspect", committed).returncode != 0


def _pid(daemon: PouchDaemon, actor: str) -> int | None:
    try:
        return daemon.pid_of(actor)
    except (OSError, ValueError):
        return None


def test_a_commit_is_the_containers_event_and_its_name_the_images(pouchd: PouchDaemon):
    docker = pouchd.docker
    since = str(int(time.time()))
    docker("run", "--name", "maker", "--label", "team=a", "busybox", "true")
    cid = pouchd.inspect("maker")["Id"]
    image = docker("commit", "-m", "a note", "maker", "com:1")
    untagged = docker("commit", "maker")

    def events(*filters: str) -> list[dict]:
        out = docker("events", "--since", since, "--until", str(int(time.time()) + 1),
                     "--format", "{{json .}}", *filters)
        return [json.loads(line) for line in out.splitlines()]

    def commits() -> list[dict]:
        found = events("--filter", "type=container", "--filter", "event=commit")
        return found if len(found) == 2 else []

    told = wait_for(commits, 10, "both commits in the events")
    assert [e["Actor"]["ID"] for e in told] == [cid, cid]
    assert told[0]["Actor"]["Attributes"] == {
        "comment": "a note", "imageID": image, "imageRef": "com:1", "team": "a",
        "image": "busybox", "name": "maker"}
    assert told[1]["Actor"]["Attributes"]["imageID"] == untagged
    assert told[1]["Actor"]["Attributes"]["imageRef"] == ""
    tags = events("--filter", "type=image", "--filter", "event=tag")
    assert [(e["Actor"]["ID"], e["Actor"]["Attributes"]["name"]) for e in tags] == [
        (image, "com:1")]
