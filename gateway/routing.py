"""Paths where an action's name is also an object's: /volumes/create is the POST that
creates a volume and, for every other method, the volume named `create`.

Falcon routes a path to one resource, whatever the method: a literal segment
(`create`) wins over a field (`{name}`) at the same place, so without this a GET or
DELETE of a volume or network named `create` or `prune` would be answered 405.
"""

from __future__ import annotations

import functools

import falcon


class _Resource:
    """The responders gathered for one path."""


def action_or_item(action: object, item: object, **fields: str) -> object:
    """One resource for the path: `action`'s responders, and for each other method that
    `item` answers, `item`'s, given `fields` (the path read as the item's, e.g.
    name="create")."""
    resource = _Resource()
    for method in falcon.COMBINED_METHODS:
        responder = f"on_{method.lower()}"
        if hasattr(action, responder):
            setattr(resource, responder, getattr(action, responder))
        elif hasattr(item, responder):
            setattr(resource, responder, functools.partial(getattr(item, responder), **fields))
    return resource
