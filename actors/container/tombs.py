"""What the container actor remembers of containers removed lately (their tombs, kept on
disk by pouch.actors.container.meta): a call cut by an actor's death and sent again
learns from them what became of its container. A create, start or remove sent once
per token (pouch.proto.contract) finds its token here when its container is gone
since; a wait taken up after the removal finds the exit status."""

from __future__ import annotations

from typing import Any

from pouch.actors.container.meta import TOMB_KEPT


class Graveyard:
    """Tombs by container ID, oldest first, and the once-tokens each holds."""

    def __init__(self, tombs: dict[str, dict[str, Any]]) -> None:
        self._tombs: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, str] = {}  # token -> ID
        for cid, tomb in tombs.items():
            self.add(cid, tomb)

    def add(self, cid: str, tomb: dict[str, Any]) -> None:
        """A container was removed (tombs come in the order of their removal)."""
        self._tombs[cid] = tomb
        self._tokens.update(dict.fromkeys(tomb["Tokens"], cid))
        oldest = next(iter(self._tombs))
        while self._tombs[oldest]["At"] < tomb["At"] - TOMB_KEPT:  # never the one just added
            for token in self._tombs.pop(oldest)["Tokens"]:
                self._tokens.pop(token, None)
            oldest = next(iter(self._tombs))

    def by_token(self, token: str) -> str | None:
        """The ID of the removed container a create, start or remove with `token` was for."""
        return self._tokens.get(token) if token else None

    def find(self, ref: str) -> dict[str, Any] | None:
        """The tomb of a full ID, or of the latest container of that name."""
        if ref in self._tombs:
            return self._tombs[ref]
        named = [tomb for tomb in self._tombs.values() if tomb["Name"] == ref]
        return named[-1] if named else None
