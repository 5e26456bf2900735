"""Where the registry client connects, and what X-Registry-Auth carries."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pouch.actors.image.registry import (
    ALL_CAPABILITIES,
    Credentials,
    Endpoint,
    RegistryConfig,
    endpoints,
    proxies,
)
from pouch.proto.envelope import PouchError


def header(body: object, padded: bool = True) -> str:
    text = base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
    return text if padded else text.rstrip("=")


def write_hosts(hosts_dir: Path, folder: str, text: str) -> Path:
    path = hosts_dir / folder / "hosts.toml"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path.parent


def urls(found: list[Endpoint]) -> list[str]:
    return [endpoint.url for endpoint in found]


def test_docker_hub_is_reached_over_https_at_registry_1():
    assert endpoints(RegistryConfig(), "docker.io") == [
        Endpoint("https://registry-1.docker.io", True, ALL_CAPABILITIES, mirror=False)
    ]


def test_a_registry_is_reached_over_https_by_default():
    assert urls(endpoints(RegistryConfig(), "registry.k8s.io")) == ["https://registry.k8s.io"]
    assert urls(endpoints(RegistryConfig(), "10.1.2.3:5000")) == ["https://10.1.2.3:5000"]


@pytest.mark.parametrize("registry", ["127.0.0.1:5000", "127.8.9.10", "localhost:5000",
                                      "[::1]:5000"])
def test_loopback_registries_speak_plain_http(registry):
    assert urls(endpoints(RegistryConfig(), registry)) == [f"http://{registry}"]


@pytest.mark.parametrize("insecure", ["10.1.2.3:5000", "10.1.2.3", "10.0.0.0/8"])
def test_insecure_registries_speak_plain_http(insecure):
    config = RegistryConfig(insecure=(insecure,))
    assert urls(endpoints(config, "10.1.2.3:5000")) == ["http://10.1.2.3:5000"]
    assert urls(endpoints(config, "11.1.2.3:5000")) == ["https://11.1.2.3:5000"]


def test_registry_mirrors_come_first_for_docker_hub_only():
    config = RegistryConfig(mirrors=("http://127.0.0.1:5001/", "https://mirror.example"))
    hub = endpoints(config, "docker.io")
    assert urls(hub) == ["http://127.0.0.1:5001", "https://mirror.example",
                         "https://registry-1.docker.io"]
    assert [endpoint.mirror for endpoint in hub] == [True, True, False]
    assert "push" not in hub[0].capabilities
    assert urls(endpoints(config, "quay.io")) == ["https://quay.io"]


def test_hosts_toml_hosts_are_mirrors_in_file_order(tmp_path):
    folder = write_hosts(tmp_path, "registry.k8s.io", """
[host."http://127.0.0.1:5002"]
  capabilities = ["pull", "resolve"]
[host."https://second.example/prefix/"]
  skip_verify = true
[host."https://third.example"]
  ca = "mirror.pem"
""")
    found = endpoints(RegistryConfig(hosts_dir=tmp_path), "registry.k8s.io")
    assert found == [
        Endpoint("http://127.0.0.1:5002", True, frozenset({"pull", "resolve"}), mirror=True),
        Endpoint("https://second.example/prefix", False, ALL_CAPABILITIES, mirror=True),
        Endpoint("https://third.example", str(folder / "mirror.pem"), ALL_CAPABILITIES,
                 mirror=True),
        Endpoint("https://registry.k8s.io", True, ALL_CAPABILITIES, mirror=False),
    ]
    assert found[1].api == "https://second.example/prefix/v2"



def test_several_ca_files_are_joined_into_one_bundle_in_pouch_s_folder(tmp_path):
    folder = write_hosts(tmp_path / "hosts", "registry.k8s.io", """
[host."https://mirror.example"]
  ca = ["one.pem", "two.pem"]
""")
    (folder / "one.pem").write_text("ONE")
    (folder / "two.pem").write_text("TWO")
    config = RegistryConfig(hosts_dir=tmp_path / "hosts", bundle_dir=tmp_path / "run" / "ca")
    verify = endpoints(config, "registry.k8s.io")[0].verify
    assert isinstance(verify, str) and Path(verify).parent == tmp_path / "run" / "ca"
    assert Path(verify).read_text() == "ONE\nTWO"
    assert endpoints(config, "registry.k8s.io")[0].verify == verify  # named by content


def test_a_missing_ca_file_is_invalid_naming_it(tmp_path):
    folder = write_hosts(tmp_path, "registry.k8s.io", """
[host."https://mirror.example"]
  ca = ["one.pem", "gone.pem"]
""")
    (folder / "one.pem").write_text("ONE")
    with pytest.raises(PouchError) as caught:
        endpoints(RegistryConfig(hosts_dir=tmp_path, bundle_dir=tmp_path / "ca"),
                  "registry.k8s.io")
    assert caught.value.code == "invalid" and "gone.pem" in caught.value.message

def test_hosts_toml_server_replaces_the_registry_and_takes_the_top_level_fields(tmp_path):
    write_hosts(tmp_path, "docker.io", """
server = "https://docker.io"
capabilities = ["pull", "resolve"]
ca = "/etc/ssl/hub.pem"
""")
    config = RegistryConfig(hosts_dir=tmp_path, mirrors=("http://127.0.0.1:5001",))
    assert endpoints(config, "docker.io") == [
        Endpoint("http://127.0.0.1:5001", True, frozenset({"pull", "resolve"}), mirror=True),
        Endpoint("https://registry-1.docker.io", "/etc/ssl/hub.pem",
                 frozenset({"pull", "resolve"}), mirror=False),
    ]


def test_hosts_toml_override_path_keeps_the_path_as_api_root(tmp_path):
    write_hosts(tmp_path, "quay.io", """
[host."https://proxy.example/api/quay"]
  override_path = true
""")
    mirror = endpoints(RegistryConfig(hosts_dir=tmp_path), "quay.io")[0]
    assert mirror.api == "https://proxy.example/api/quay"


def test_hosts_folder_of_a_registry_with_a_port_is_spelled_as_containerd_does(tmp_path):
    write_hosts(tmp_path, "10.1.2.3_5000_", 'server = "http://10.1.2.3:5000"')
    write_hosts(tmp_path, "10.1.2.3:5000", 'server = "https://colon.example"')
    assert urls(endpoints(RegistryConfig(hosts_dir=tmp_path), "10.1.2.3:5000")) == [
        "http://10.1.2.3:5000"
    ]
    write_hosts(tmp_path, "10.1.2.4:5000", 'server = "https://colon.example"')
    assert urls(endpoints(RegistryConfig(hosts_dir=tmp_path), "10.1.2.4:5000")) == [
        "https://colon.example"
    ]


def test_default_hosts_folder_applies_to_registries_without_their_own(tmp_path):
    write_hosts(tmp_path, "_default", '[host."https://everything.example"]')
    assert urls(endpoints(RegistryConfig(hosts_dir=tmp_path), "quay.io")) == [
        "https://everything.example", "https://quay.io"
    ]


def test_broken_hosts_toml_is_invalid_naming_the_file(tmp_path):
    write_hosts(tmp_path, "quay.io", "server = ")
    with pytest.raises(PouchError) as caught:
        endpoints(RegistryConfig(hosts_dir=tmp_path), "quay.io")
    assert caught.value.code == "invalid"
    assert "quay.io/hosts.toml" in caught.value.message


def test_registry_auth_header_carries_docker_cli_fields():
    value = header({"username": "alice", "password": "pw", "serveraddress": "x.example"})
    assert Credentials.from_header(value) == Credentials("alice", "pw")
    value = header({"identitytoken": "refresh", "registrytoken": "bearer"}, padded=False)
    assert Credentials.from_header(value) == Credentials(identity_token="refresh",
                                                         registry_token="bearer")


@pytest.mark.parametrize("value", ["", "  ", header({}), header({"serveraddress": "x"})])
def test_empty_registry_auth_header_means_anonymous(value):
    assert Credentials.from_header(value) is None


@pytest.mark.parametrize("value", ["%%%", header([1, 2]), header({"username": 3}),
                                   base64.urlsafe_b64encode(b"not json").decode()])
def test_garbage_registry_auth_header_is_invalid(value):
    with pytest.raises(PouchError) as caught:
        Credentials.from_header(value)
    assert caught.value.code == "invalid"
    assert "X-Registry-Auth" in caught.value.message


def test_loopback_registries_are_never_proxied(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy:3128")
    monkeypatch.setenv("NO_PROXY", "quay.io")
    for config in (RegistryConfig(), RegistryConfig(proxy="http://configured:3128")):
        assert proxies(config, "http://127.0.0.1:5000/v2/") == {}
        assert proxies(config, "http://localhost:5000/v2/") == {}
    assert proxies(RegistryConfig(), "https://ghcr.io/v2/")["https"] == "http://env-proxy:3128"
    assert "https" not in proxies(RegistryConfig(), "https://quay.io/v2/")
    configured = proxies(RegistryConfig(proxy="http://configured:3128"), "https://quay.io/v2/")
    assert configured == {"http": "http://configured:3128", "https": "http://configured:3128"}
