"""An example hook plugin (see pouch.actors.plugins), exercised by the tests: it
changes creates, starts and updates, records pulls and pouchd's start and stop, and
serves a route of its own. `install` makes it an installed distribution."""

from __future__ import annotations

from pouch.tests.support.example_plugin.dist import ENTRY_POINTS, LOG_ENV, install

__all__ = ["ENTRY_POINTS", "LOG_ENV", "install"]
