"""Legacy links (`--link`): what a linking container is given of the container it links
to, as dockerd 20.10 gives it."""

from __future__ import annotations

from typing import Any

import pytest

from pouch.actors.container import links
from pouch.actors.container import record as rec
from pouch.actors.container.spec.merge import daemon_env
from pouch.proto.envelope import PouchError

DB_ID = "d" * 64


def db(running: bool = True, network: str = "bridge", **config: Any) -> dict[str, Any]:
    """The inspect document of a linked container named db, as the worker finds it."""
    return {"Id": DB_ID, "Name": "/db", "State": {"Running": running},
            "HostConfig": {"NetworkMode": network},
            "Config": {"Hostname": DB_ID[:12], "Env": None, "ExposedPorts": None, **config},
            "NetworkSettings": {"Networks": {network: {"NetworkID": "n" * 64,
                                                       "IPAddress": "172.17.0.2"}}}}


def failure(call: Any, *args: Any) -> PouchError:
    with pytest.raises(PouchError) as err:
        call(*args)
    return err.value


# -- what is asked for ---------------------------------------------------------------

@pytest.mark.parametrize(("entry", "name", "alias"), [
    ("db:data", "db", "data"),
    ("db", "db", "db"),
    ("/db:/web/data", "db", "data"),  # as inspect shows it: what `docker commit` carries
])
def test_a_link_is_parsed_as_dockerd_parses_it(entry, name, alias):
    assert links.parse(entry) == links.Link(name, alias)


@pytest.mark.parametrize("entry", ["", "a:b:c", "db:", ":data"])
def test_a_malformed_link_is_refused(entry):
    assert failure(links.parse, entry).code == "invalid"


def test_links_on_a_user_network_come_from_the_endpoint_too():
    def body(mode: str) -> dict[str, Any]:
        return {"HostConfig": {"NetworkMode": mode, "Links": ["db:data"]},
                "NetworkingConfig": {"EndpointsConfig": {mode: {"Links": ["db:data",
                                                                         "cache"]}}}}
    assert links.requested(body("appnet"), "appnet") == [links.Link("db", "data"),
                                                         links.Link("cache", "cache")]
    # On the default bridge only HostConfig.Links counts, as in dockerd.
    assert links.requested(body("bridge"), "bridge") == [links.Link("db", "data")]


def test_links_with_the_hosts_network_are_refused_with_dockerds_words():
    body = {"Image": "busybox", "HostConfig": {"NetworkMode": "host", "Links": ["db:data"]}}
    message = failure(rec.check_config, body).message
    assert message == links.HOST_NETWORK_CONFLICT
    assert message.startswith("conflicting options: host type networking can't be used")


def test_links_with_another_containers_network_are_refused_with_dockerds_words():
    body = {"Image": "busybox", "HostConfig": {"NetworkMode": "container:db",
                                               "Links": ["other:alias"]}}
    assert "container type network can't be used with links" in failure(
        rec.check_config, body).message


def test_links_are_taken_on_the_bridge_and_with_no_network():
    for mode in ("default", "bridge", "none", "appnet"):
        rec.check_config({"Image": "busybox", "HostConfig": {"NetworkMode": mode,
                                                             "Links": ["db:data"]}})


# -- the linked container, at create --------------------------------------------------

def test_a_link_to_a_missing_container_is_a_400_with_dockerds_words():
    def inspect(ref: str) -> dict[str, Any]:
        raise PouchError("not_found", f"No such container: {ref}")
    err = failure(links.linked, "nosuch", inspect)
    assert err.code == "invalid"  # a 404 would make the docker CLI pull the image
    assert err.message == "could not get container for nosuch: No such container: nosuch"


def test_a_link_reaches_the_container_whose_network_the_named_one_joined():
    docs = {"sidecar": {**db(), "Id": "s" * 64, "HostConfig": {"NetworkMode":
                                                               f"container:{DB_ID}"}},
            DB_ID: db()}
    assert links.linked("sidecar", docs.__getitem__)["Id"] == DB_ID


def test_a_link_to_a_container_on_the_hosts_network_is_refused():
    assert failure(links.linked, "db", lambda ref: db(network="host")).message == \
        links.HOST_NETWORK_CONFLICT


def test_the_record_shows_links_as_dockerds_inspect_and_keeps_the_first_of_an_alias():
    other = {**db(), "Id": "e" * 64, "Name": "/other"}
    kept = links.recorded("/web", [(links.Link("db", "data"), db()),
                                   (links.Link("other", "data"), other),
                                   (links.Link("db", "db"), db())])
    assert kept == [{"Id": DB_ID, "Name": "/web/data"}, {"Id": DB_ID, "Name": "/web/db"}]
    assert links.shown(kept, {DB_ID: "/db"}) == ["/db:/web/data", "/db:/web/db"]
    assert links.shown(kept, {}) is None


# -- at each start, on the default bridge ---------------------------------------------

def test_the_environment_tells_of_the_linked_containers_ports_name_and_env():
    env = links.link_env("/web/data", "172.17.0.2", {"5432/tcp": {}, "53/udp": {}},
                         ["PW=x", "PATH=/bin", "HOME=/root", "EMPTY="])
    assert env == [
        "DATA_PORT=udp://172.17.0.2:53",
        "DATA_PORT_53_UDP=udp://172.17.0.2:53", "DATA_PORT_53_UDP_ADDR=172.17.0.2",
        "DATA_PORT_53_UDP_PORT=53", "DATA_PORT_53_UDP_PROTO=udp",
        "DATA_PORT_5432_TCP=tcp://172.17.0.2:5432", "DATA_PORT_5432_TCP_ADDR=172.17.0.2",
        "DATA_PORT_5432_TCP_PORT=5432", "DATA_PORT_5432_TCP_PROTO=tcp",
        "DATA_NAME=/web/data", "DATA_ENV_PW=x", "DATA_ENV_EMPTY=",
    ]


def test_the_alias_is_upper_cased_with_dashes_as_underscores():
    assert links.link_env("/web/my-db.1", "10.0.0.2", {}, []) == ["MY_DB.1_NAME=/web/my-db.1"]


def test_tcp_comes_first_of_one_port_number():
    env = links.link_env("/web/db", "10.0.0.2", ["80/udp", "80/tcp"], [])
    assert env[0] == "DB_PORT=tcp://10.0.0.2:80"


def test_three_ports_in_a_row_are_told_as_a_range_too():
    env = links.link_env("/web/db", "10.0.0.2", ["8000/tcp", "8001/tcp", "8002/tcp"], [])
    assert env[1:7] == [
        "DB_PORT_8000_TCP_START=tcp://10.0.0.2:8000", "DB_PORT_8000_TCP_ADDR=10.0.0.2",
        "DB_PORT_8000_TCP_PROTO=tcp", "DB_PORT_8000_TCP_PORT_START=8000",
        "DB_PORT_8000_TCP_END=tcp://10.0.0.2:8002", "DB_PORT_8000_TCP_PORT_END=8002"]
    # Two in a row are not a range, as in dockerd.
    assert not any("START" in e for e in links.link_env("/web/db", "10.0.0.2",
                                                        ["80/tcp", "81/tcp"], []))


def test_a_start_gives_the_hosts_line_and_env_of_a_running_linked_container():
    kept = [{"Id": DB_ID, "Name": "/web/data"}]
    applied = links.on_bridge(kept, {DB_ID: db(Env=["PW=x"], ExposedPorts={"5432/tcp": {}})})
    assert applied.hosts == [f"172.17.0.2\tdata {DB_ID[:12]} db"]
    assert "DATA_PORT=tcp://172.17.0.2:5432" in applied.env
    assert "DATA_ENV_PW=x" in applied.env
    # Linked under its own name, the name is not said twice.
    same = links.on_bridge([{"Id": DB_ID, "Name": "/web/db"}], {DB_ID: db()})
    assert same.hosts == [f"172.17.0.2\tdb {DB_ID[:12]}"]


def test_a_linked_container_that_is_gone_took_its_link_with_it():
    assert links.on_bridge([{"Id": DB_ID, "Name": "/web/data"}], {}) == links.Applied([], [])


def test_a_start_is_refused_while_the_linked_container_does_not_run():
    err = failure(links.on_bridge, [{"Id": DB_ID, "Name": "/web/data"}],
                  {DB_ID: db(running=False)})
    assert err.code == "conflict"
    assert err.message == "Cannot link to a non running container: /db AS /web/data"


def test_a_start_is_refused_when_the_linked_container_is_not_on_the_default_bridge():
    err = failure(links.on_bridge, [{"Id": DB_ID, "Name": "/web/data"}],
                  {DB_ID: db(network="none")})
    assert err.message == "Cannot link to /db, as it does not belong to the default network"


def test_the_links_env_comes_after_the_defaults_and_under_the_containers_own():
    env = daemon_env("abc", True, ["DATA_NAME=/web/data", "DATA_ENV_PW=x"],
                     ["DATA_ENV_PW=mine", "A=1"])
    assert env == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "HOSTNAME=abc", "TERM=xterm", "DATA_NAME=/web/data", "DATA_ENV_PW=mine",
                   "A=1"]


# -- on a user network ----------------------------------------------------------------

def test_on_a_user_network_a_link_is_an_alias_at_the_linked_containers_address_there():
    found = {"db": db(network="appnet")}
    lines = links.alias_lines("n" * 64, [links.Link("db", "data"), links.Link("gone", "g")],
                              found.get)
    assert lines == ["172.17.0.2\tdata"]
    assert links.alias_lines("x" * 64, [links.Link("db", "data")], found.get) == []


# -- the hosts file --------------------------------------------------------------------

NETWORK_SECTION = "# pouch: addresses on networks, kept current by the network actor\n" \
                  "172.17.0.3\tweb\n"


def test_a_start_replaces_the_links_lines_and_keeps_the_rest_of_the_hosts_file():
    base = "127.0.0.1\tlocalhost\n10.1.1.1\textra\n"
    first = links.with_hosts_lines(base + links.HOSTS_MARKER + "\n" + NETWORK_SECTION,
                                   ["172.17.0.2\tdata abc db"])
    assert first == (base + links.HOSTS_MARKER + "\n172.17.0.2\tdata abc db\n"
                     + NETWORK_SECTION)
    again = links.with_hosts_lines(first, ["172.17.0.9\tdata abc db"])
    assert again == first.replace("172.17.0.2", "172.17.0.9")
    assert links.with_hosts_lines(again, []) == base + links.HOSTS_MARKER + "\n" + \
        NETWORK_SECTION


def test_a_hosts_file_without_the_marker_gets_it_at_its_end():
    assert links.with_hosts_lines("127.0.0.1\tlocalhost\n", ["10.0.0.2\tdata"]) == \
        f"127.0.0.1\tlocalhost\n{links.HOSTS_MARKER}\n10.0.0.2\tdata\n"
