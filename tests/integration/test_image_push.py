"""`docker push` and `docker login` with the real CLI (and docker-py) against real
registries on loopback: progress lines, layers the registry has already, layers mounted
from another repository, credentials, and a round trip back through a pull."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest
from docker.errors import APIError

from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.registry import Registry


@pytest.fixture(scope="module")
def open_registry() -> Iterator[Registry]:
    with Registry() as registry:
        yield registry


def test_docker_push_uploads_and_the_image_comes_back_by_pull(pouchd: PouchDaemon,
                                                               open_registry: Registry):
    name = f"{open_registry.host}/demo/pushed:v1"
    pouchd.docker("tag", "busybox", name)

    pushed = pouchd.docker("push", name).splitlines()
    assert pushed[0] == f"The push refers to repository [{open_registry.host}/demo/pushed]"
    assert any(line.endswith(": Pushed") for line in pushed)
    assert pushed[-1].startswith("v1: digest: sha256:") and " size: " in pushed[-1]
    digest = pushed[-1].split()[2]

    # Again: the registry has every layer.
    again = pouchd.docker("push", name).splitlines()
    assert any(line.endswith(": Layer already exists") for line in again)
    assert again[-1].split()[2] == digest

    pouchd.docker("rmi", name, "busybox")
    assert pouchd.docker("images", "-q") == ""
    pouchd.docker("pull", name)
    assert pouchd.docker("run", "--rm", name, "echo", "round trip") == "round trip"


def test_a_layer_the_registry_has_in_another_repository_is_mounted(pouchd: PouchDaemon,
                                                                    open_registry: Registry):
    first = f"{open_registry.host}/demo/first:v1"
    second = f"{open_registry.host}/demo/second:v1"
    pouchd.docker("tag", "busybox", first)
    pouchd.docker("push", first)
    pouchd.docker("tag", "busybox", second)

    pushed = pouchd.docker("push", second).splitlines()

    assert any(line.endswith(": Mounted from demo/first") for line in pushed), pushed


def test_push_of_what_is_not_here_is_404(pouchd: PouchDaemon, open_registry: Registry):
    result = pouchd.docker_result("push", f"{open_registry.host}/demo/absent:v1")
    assert result.returncode == 1
    assert "An image does not exist locally with the tag" in result.stderr


def test_login_and_push_to_a_registry_that_wants_credentials(pouchd: PouchDaemon):
    with Registry(auth="htpasswd", users={"alice": "s3cret"}) as registry:
        name = f"{registry.host}/private/app:v1"
        pouchd.docker("tag", "busybox", name)

        denied = pouchd.docker_result("push", name)
        assert denied.returncode == 1 and "denied" in denied.stderr

        wrong = pouchd.docker_result("login", "-u", "alice", "--password-stdin", registry.host,
                                     input="nope\n")
        assert wrong.returncode == 1 and "incorrect username or password" in wrong.stderr
        login = pouchd.docker("login", "-u", "alice", "--password-stdin", registry.host,
                              input="s3cret\n")
        assert "Login Succeeded" in login
        pushed = pouchd.docker("push", name).splitlines()
        assert pushed[-1].startswith("v1: digest: sha256:")


def test_docker_py_pushes_with_its_auth_config(pouchd: PouchDaemon):
    api = docker.APIClient(base_url=pouchd.host, version="1.41", timeout=60)
    try:
        with Registry(auth="token", users={"bob": "pw"}) as registry:
            repository = f"{registry.host}/team/tool"
            api.tag("busybox", repository, "v2")
            messages = list(api.push(repository, tag="v2", stream=True, decode=True,
                                     auth_config={"username": "bob", "password": "pw"}))
            assert "error" not in messages[-1], messages[-1]
            assert messages[-1]["status"].startswith("v2: digest: sha256:")
            with pytest.raises(APIError) as refused:
                api.login("bob", "wrong", registry=registry.host, reauth=True)
            assert "incorrect username or password" in str(refused.value)
    finally:
        api.close()
