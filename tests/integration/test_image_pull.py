"""`docker pull` and docker-py's pull against real registries (Debian's docker-registry on
loopback): progress messages, digests, platforms, auth, mirrors for any registry through
hosts.toml, and pulls that fail leaving nothing behind."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import docker
import pytest
from docker.errors import APIError, ImageNotFound, NotFound

from pouch.actors.containerd.client import Containerd
from pouch.broker.client import Client
from pouch.tests.faults.checks import list_leases
from pouch.tests.support.daemon import PouchDaemon, running
from pouch.tests.support.registry import Registry, digest_of, image_config, layer, publish
from pouch.tests.support.wait import wait_for

BUSYBOX = Path("/bin/busybox")
NAMESPACE = "pouch"


def busybox_layers() -> list[bytes]:
    """Two layers: a shell (busybox runs the applet its name says) and a file over it."""
    return [layer({"bin/sh": BUSYBOX.read_bytes(), "bin/cat": BUSYBOX.read_bytes()},
                  executable=("bin/sh", "bin/cat")),
            layer({"etc/greeting": b"pulled\n"})]


def publish_busybox(registry: Registry, repository: str, tag: str, **kwargs: object) -> str:
    layers = busybox_layers()
    config = image_config(layers)
    config["config"] = {"Cmd": ["/bin/cat", "/etc/greeting"]}
    return publish(registry.url, repository, tag, layers, config, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def open_registry() -> Iterator[Registry]:
    with Registry() as registry:
        yield registry


@pytest.fixture
def api(pouchd: PouchDaemon) -> Iterator[docker.APIClient]:
    client = docker.APIClient(base_url=pouchd.host, version="1.41", timeout=60)
    yield client
    client.close()


def leftovers(pouchd: PouchDaemon) -> tuple[list[str], list[str]]:
    """containerd's leases and image names in pouch's namespace."""
    with Containerd(pouchd.containerd_socket, namespace=NAMESPACE) as ctrd:
        names = [record.name for record in ctrd.images.list()]
    return list_leases(pouchd.containerd_socket), names


def test_docker_pull_shows_progress_and_the_image_runs(pouchd: PouchDaemon,
                                                        open_registry: Registry):
    name = f"{open_registry.host}/demo/greeter:v1"
    digest = publish_busybox(open_registry, "demo/greeter", "v1")

    pulled = pouchd.docker_result("pull", name)
    assert pulled.returncode == 0, pulled.stderr
    lines = pulled.stdout.splitlines()
    assert lines[0] == "v1: Pulling from demo/greeter"
    assert sum("Pull complete" in line for line in lines) == 2
    assert f"Digest: {digest}" in lines
    assert f"Status: Downloaded newer image for {name}" in lines

    assert pouchd.docker("run", "--rm", name) == "pulled"
    again = pouchd.docker("pull", name)
    assert f"Status: Image is up to date for {name}" in again
    listed = pouchd.docker("images", "--digests", "--format", "{{.Repository}} {{.Digest}}")
    assert f"{open_registry.host}/demo/greeter {digest}" in listed.splitlines()


def test_progress_messages_are_dockers(api: docker.APIClient, open_registry: Registry):
    name = f"{open_registry.host}/demo/progress"
    publish_busybox(open_registry, "demo/progress", "latest")

    messages = list(api.pull(name, tag="latest", stream=True, decode=True))

    statuses = [m["status"] for m in messages]
    assert statuses[0] == "Pulling from demo/progress" and messages[0]["id"] == "latest"
    downloading = [m for m in messages if m["status"] == "Downloading"]
    assert downloading and all(
        0 < m["progressDetail"]["current"] <= m["progressDetail"]["total"] for m in downloading)
    assert all(len(m["id"]) == 12 for m in messages[1:-2])
    assert statuses[-1] == f"Status: Downloaded newer image for {name}:latest"


def test_a_pull_by_digest_names_the_image_by_that_digest(api: docker.APIClient,
                                                          open_registry: Registry):
    digest = publish_busybox(open_registry, "demo/bydigest", "v2")
    name = f"{open_registry.host}/demo/bydigest@{digest}"

    api.pull(f"{open_registry.host}/demo/bydigest", tag=digest)

    image = api.inspect_image(name)
    assert image["RepoDigests"] == [name] and image["RepoTags"] == []


def test_a_manifest_list_gives_this_machines_platform(api: docker.APIClient,
                                                      open_registry: Registry):
    index = publish_busybox(open_registry, "demo/multi", "v1",
                            manifest_list_platforms=["linux/arm64", "linux/amd64"])
    name = f"{open_registry.host}/demo/multi:v1"

    api.pull(name)

    image = api.inspect_image(name)
    assert image["Architecture"] == "amd64"
    assert image["RepoDigests"] == [f"{open_registry.host}/demo/multi@{index}"]
    with pytest.raises(APIError) as refused:
        api.pull(f"{open_registry.host}/demo/multi", tag="v1", platform="linux/s390x")
    assert refused.value.status_code == 404 and "linux/s390x" in str(refused.value)


def test_an_unknown_image_is_404_before_any_progress(pouchd: PouchDaemon,
                                                      open_registry: Registry):
    result = pouchd.docker_result("pull", f"{open_registry.host}/demo/nothing:here")
    assert result.returncode == 1
    assert "manifest unknown" in result.stderr and "Pulling" not in result.stdout
    # And `docker run` of it says so after trying to pull.
    run = pouchd.docker_result("run", "--rm", f"{open_registry.host}/demo/nothing:here")
    assert run.returncode == 125 and "manifest unknown" in run.stderr


def test_docker_run_pulls_what_it_does_not_have(pouchd: PouchDaemon, open_registry: Registry):
    publish_busybox(open_registry, "demo/autopull", "latest")
    name = f"{open_registry.host}/demo/autopull"

    run = pouchd.docker_result("run", "--rm", name)

    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "pulled"
    assert f"Unable to find image '{name}:latest' locally" in run.stderr


def test_a_corrupted_blob_fails_the_pull_and_leaves_nothing(pouchd: PouchDaemon,
                                                            api: docker.APIClient):
    with Registry() as registry:
        layers = busybox_layers()
        publish(registry.url, "demo/corrupt", "v1", layers, image_config(layers))
        registry.corrupt_blob(digest_of(layers[1]))
        messages = list(api.pull(f"{registry.host}/demo/corrupt", tag="v1", stream=True,
                                 decode=True))

    assert "error" in messages[-1] and "digest" in messages[-1]["error"]
    with pytest.raises(ImageNotFound):
        api.inspect_image(f"{registry.host}/demo/corrupt:v1")
    leases, names = leftovers(pouchd)
    assert leases == [] and not any("corrupt" in n for n in names)


def test_credentials_from_the_client_reach_a_registry_with_basic_auth(api: docker.APIClient):
    with Registry(auth="htpasswd", users={"alice": "s3cret"}) as registry:
        layers = busybox_layers()
        publish(registry.url, "private/app", "v1", layers, image_config(layers),
                auth=("alice", "s3cret"))
        name = f"{registry.host}/private/app:v1"

        with pytest.raises(NotFound) as denied:
            api.pull(name)
        assert "pull access denied" in str(denied.value)
        with pytest.raises(APIError) as wrong:
            api.pull(name, auth_config={"username": "alice", "password": "nope"})
        assert "incorrect username or password" in str(wrong.value)
        api.pull(name, auth_config={"username": "alice", "password": "s3cret"})

    assert api.inspect_image(name)["RepoTags"] == [name]


def test_concurrent_pulls_of_one_image_both_succeed_and_make_one_image(
        api: docker.APIClient, open_registry: Registry):
    publish_busybox(open_registry, "demo/twice", "v1")
    name = f"{open_registry.host}/demo/twice:v1"

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda _: list(api.pull(name, stream=True, decode=True)),
                                 range(2)))

    assert all("error" not in messages[-1] for messages in outcomes), outcomes
    assert [i["RepoTags"] for i in api.images(name=name)] == [[name]]


def test_hosts_toml_sends_any_registry_to_a_local_mirror(busybox_tarball: Path, tmp_path: Path,
                                                         open_registry: Registry):
    """A node without internet pulls registry.k8s.io/pause from a mirror of its own."""
    publish_busybox(open_registry, "pause", "3.9")
    certs = tmp_path / "certs.d"
    (certs / "registry.k8s.io").mkdir(parents=True)
    (certs / "registry.k8s.io" / "hosts.toml").write_text(
        'server = "https://registry.k8s.io"\n\n'
        f'[host."http://{open_registry.host}"]\n  capabilities = ["pull", "resolve"]\n')
    daemon = PouchDaemon(extra_args=["--registry-config-path", str(certs)])
    with running(busybox_tarball, daemon) as pouchd:
        pulled = pouchd.docker_result("pull", "registry.k8s.io/pause:3.9")
        assert pulled.returncode == 0, pulled.stderr
        assert pouchd.docker("run", "--rm", "registry.k8s.io/pause:3.9") == "pulled"



def test_a_pull_cut_by_the_registrys_death_leaves_nothing(pouchd: PouchDaemon,
                                                          api: docker.APIClient):
    with Registry() as registry:
        layers = [layer({"data/big": os.urandom(24 << 20)})]
        publish(registry.url, "demo/cut", "v1", layers, image_config(layers))
        messages = api.pull(f"{registry.host}/demo/cut", tag="v1", stream=True, decode=True)
        seen = []
        for message in messages:
            seen.append(message)
            if message.get("status") == "Downloading":
                registry.kill()
                break
        seen += list(messages)

    assert "error" in seen[-1], seen[-1]
    with pytest.raises(ImageNotFound):
        api.inspect_image(f"{registry.host}/demo/cut:v1")
    leases, names = leftovers(pouchd)
    assert leases == [] and not any("cut" in n for n in names)


def test_images_listed_before_or_since_another(pouchd: PouchDaemon, open_registry: Registry):
    layers = busybox_layers()
    config = image_config(layers)
    config["created"] = "2030-01-01T00:00:00Z"  # later than the offline busybox
    publish(open_registry.url, "demo/later", "v1", layers, config)
    later = f"{open_registry.host}/demo/later:v1"
    pouchd.docker("pull", later)
    busybox = pouchd.docker("images", "-q", "busybox")

    assert pouchd.docker("images", "-q", "--filter", "since=busybox") == \
        pouchd.docker("images", "-q", later)
    assert pouchd.docker("images", "-q", "--filter", f"before={later}") == busybox
    missing = pouchd.docker_result("images", "--filter", "before=no-such-image")
    assert missing.returncode == 1 and "No such image: no-such-image" in missing.stderr


def test_every_image_change_is_an_event_in_dockers_shape(pouchd: PouchDaemon,
                                                          open_registry: Registry,
                                                          tmp_path: Path):
    repository = f"{open_registry.host}/demo/events"
    publish_busybox(open_registry, "demo/events", "v1")
    start = time.time_ns()
    pouchd.docker("pull", f"{repository}:v1")
    image_id, digest = pouchd.docker("image", "inspect", "--format",
                                     "{{.Id}} {{index .RepoDigests 0}}", f"{repository}:v1").split()
    pouchd.docker("tag", f"{repository}:v1", f"{repository}:v2")
    pouchd.docker("push", f"{repository}:v2")
    archive = tmp_path / "saved.tar"
    pouchd.docker("save", "-o", str(archive), f"{repository}:v2")
    pouchd.docker("rmi", f"{repository}:v1", f"{repository}:v2")
    pouchd.docker("load", "-i", str(archive))
    imported = pouchd.docker("import", str(archive))  # any tarball makes a root file system

    def told() -> list[tuple[str, str, str]]:
        """The image events since `start`, once they tell the import."""
        with closing(Client(f"ipc://{pouchd.run_dir}/broker.sock", timeout=20)) as client, \
                client.stream("system", "events", {"since": start / 1e9, "until": time.time(),
                                                   "filters": {"type": ["image"]}}) as stream:
            seen = [(e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"].get("name"))
                    for e in stream if e["timeNano"] >= start]
        return seen if ("import", imported, imported) in seen else []

    seen = wait_for(told, 10, "the import in the events' history")
    assert [event for event in seen if event[0] != "untag"] == [
        ("pull", f"{repository}:v1", repository),
        ("tag", image_id, f"{repository}:v2"),
        ("push", f"{repository}:v2", repository),
        ("delete", image_id, image_id),
        ("load", image_id, image_id),
        ("import", imported, imported),
    ], seen
    # Both tags go, and with the last one the digest the pull recorded.
    assert sorted(event for event in seen if event[0] == "untag") == sorted(
        ("untag", image_id, name) for name in (f"{repository}:v1", f"{repository}:v2", digest))
