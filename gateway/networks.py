"""/networks: list, inspect, create, remove, prune, connect, disconnect."""

from __future__ import annotations

from typing import Any

import falcon

from pouch.gateway.params import filters, json_body
from pouch.gateway.routing import action_or_item
from pouch.proto.stubs import OMIT, Calls


def _field(body: dict[str, Any], name: str, kind: type, where: str = "") -> Any:
    """A field of the body, of its JSON type; None when absent or null."""
    value = body.get(name)
    if value is not None and (not isinstance(value, kind) or
                              (kind is not bool and isinstance(value, bool))):
        raise falcon.HTTPBadRequest(description=(
            f"invalid {where}{name}: must be a {'JSON ' + kind.__name__}"))
    return value


def _strings(body: dict[str, Any], name: str, where: str = "") -> dict[str, str] | None:
    value = _field(body, name, dict, where)
    if value is not None and not all(isinstance(v, str) for v in value.values()):
        raise falcon.HTTPBadRequest(description=f"invalid {where}{name}: values must be "
                                                "strings")
    return value


def _ipam(body: dict[str, Any]) -> tuple[list[dict[str, str]] | None, dict[str, str] | None]:
    ipam = _field(body, "IPAM", dict)
    if not ipam:
        return None, None
    driver = _field(ipam, "Driver", str, "IPAM.")
    if driver not in (None, "", "default"):
        raise falcon.HTTPBadRequest(description=f"IPAM driver {driver} is not supported")
    config = []
    for entry in _field(ipam, "Config", list, "IPAM.") or []:
        if not isinstance(entry, dict):
            raise falcon.HTTPBadRequest(description="invalid IPAM.Config: must hold objects")
        if entry.get("AuxiliaryAddresses"):
            raise falcon.HTTPBadRequest(description="auxiliary addresses are not supported")
        config.append({key: value for key in ("Subnet", "Gateway", "IPRange")
                       if (value := _field(entry, key, str, "IPAM.Config.")) is not None})
    return config, _strings(ipam, "Options", "IPAM.")


class Networks:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.calls.network.list(filters=filters(req))


class Create:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req)
        name = _field(body, "Name", str)
        if not name:
            raise falcon.HTTPBadRequest(description="network name is required")
        config, ipam_options = _ipam(body)
        or_omit = lambda value: OMIT if value is None else value  # noqa: E731
        resp.media = self.calls.network.create(
            name=name, driver=or_omit(_field(body, "Driver", str)),
            internal=or_omit(_field(body, "Internal", bool)),
            attachable=or_omit(_field(body, "Attachable", bool)),
            ipam_config=or_omit(config), ipam_options=or_omit(ipam_options),
            options=or_omit(_strings(body, "Options")), labels=or_omit(_strings(body, "Labels")),
            enable_ipv6=or_omit(_field(body, "EnableIPv6", bool)))
        resp.status = falcon.HTTP_201


class Prune:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.calls.network.prune(filters=filters(req))


class Network:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_get(self, req: falcon.Request, resp: falcon.Response, ref: str) -> None:
        resp.media = self.calls.network.inspect(ref=ref)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, ref: str) -> None:
        self.calls.network.remove(ref=ref)
        resp.status = falcon.HTTP_204


def _container(body: dict[str, Any]) -> str:
    container = _field(body, "Container", str)
    if not container:
        raise falcon.HTTPBadRequest(description="a container is required")
    return str(container)


class Connect:
    """POST /networks/{ref}/connect: {Container, EndpointConfig: {IPAMConfig, Aliases,
    Links}}."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response, ref: str) -> None:
        body = json_body(req)
        container = _container(body)
        endpoint = _field(body, "EndpointConfig", dict) or {}
        ipam = _field(endpoint, "IPAMConfig", dict, "EndpointConfig.") or {}
        lists = {}
        for key in ("Aliases", "Links"):
            lists[key] = _field(endpoint, key, list, "EndpointConfig.") or []
            if not all(isinstance(item, str) for item in lists[key]):
                raise falcon.HTTPBadRequest(description=f"invalid EndpointConfig.{key}: must "
                                                        "be strings")
        self.calls.container.connect_network(
            id=container, network=ref, aliases=lists["Aliases"], links=lists["Links"],
            ip=_field(ipam, "IPv4Address", str, "EndpointConfig.IPAMConfig.") or "")
        resp.status = falcon.HTTP_200


class Disconnect:
    """POST /networks/{ref}/disconnect: {Container, Force}."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def on_post(self, req: falcon.Request, resp: falcon.Response, ref: str) -> None:
        body = json_body(req)
        container = _container(body)
        force = _field(body, "Force", bool)
        self.calls.container.disconnect_network(id=container, network=ref,
                                                force=OMIT if force is None else force)
        resp.status = falcon.HTTP_200


def add_routes(app: falcon.App, calls: Calls) -> None:
    app.add_route("/networks", Networks(calls))
    network = Network(calls)  # also a network named `create` or `prune`: see routing
    app.add_route("/networks/create", action_or_item(Create(calls), network, ref="create"))
    app.add_route("/networks/prune", action_or_item(Prune(calls), network, ref="prune"))
    app.add_route("/networks/{ref}", network)
    app.add_route("/networks/{ref}/connect", Connect(calls))
    app.add_route("/networks/{ref}/disconnect", Disconnect(calls))
