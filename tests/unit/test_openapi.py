"""gateway/openapi.yaml describes exactly what the gateway serves: every route and
method falcon serves is in the document, and every path and method in it is served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pouch.gateway.app import create_app
from pouch.proto.config import DaemonConfig

DOCUMENT = Path(__file__).parents[2] / "gateway" / "openapi.yaml"
METHODS = ("get", "head", "post", "put", "patch", "delete")


def served() -> set[tuple[str, str]]:
    """(path template, method) of every route and sink of the app; falcon's automatic
    OPTIONS answer is no route of ours."""
    app = create_app(DaemonConfig(), calls=object())  # type: ignore[arg-type]
    found: set[tuple[str, str]] = set()
    pending: list[Any] = list(app._router._roots)
    while pending:
        node = pending.pop()
        pending.extend(node.children)
        if node.resource is not None:
            found |= {(node.uri_template, m) for m in METHODS
                      if hasattr(node.resource, f"on_{m}")}
    for _, sink, _ in app._sinks:
        # A sink that serves paths of ours says which (the catch-all 404 one does not).
        routes: dict[str, str] = getattr(sink, "ROUTES", {})
        found |= {(template, method.lower()) for template, method in routes.items()}
    return found


def documented() -> set[tuple[str, str]]:
    paths = yaml.safe_load(DOCUMENT.read_text())["paths"]
    return {(path, m) for path, item in paths.items() for m in item if m in METHODS}


def test_the_document_lists_every_route_the_gateway_serves():
    assert served() - documented() == set()


def test_the_gateway_serves_every_operation_the_document_lists():
    assert documented() - served() == set()


def test_every_operation_names_its_answers():
    paths = yaml.safe_load(DOCUMENT.read_text())["paths"]
    for path, item in paths.items():
        for method, operation in item.items():
            assert operation["responses"], (path, method)
            assert operation["operationId"], (path, method)


def test_the_route_walk_finds_routes():
    # The walk above reads falcon's router: a falcon that changed it must not make the
    # comparison vacuous.
    assert ("/containers/{id}/stop", "post") in served()
    assert ("/images/{name}/json", "get") in served()
