"""The builder actor: docker build with dockerd's classic builder's semantics (see
`run`), and the build cache (`cache`). It consumes the image and container actors
through their messages; each build runs on a thread of its own, so builds run side
by side and the actor's thread only takes connections and answers.
"""

from __future__ import annotations

import builtins
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

from pouch.actors.builder.cache import BuildCache
from pouch.actors.builder.run import STEP_LABEL, Build, Env, Options, check_platform
from pouch.actors.host import ActorBase, ActorContext, Reply
from pouch.proto.contract import method
from pouch.proto.docker import check_filters
from pouch.proto.envelope import PouchError, invalid
from pouch.proto.shapes import BuildCachePruned
from pouch.proto.stream import StreamSession

log = logging.getLogger("pouch.builder")


class BuilderActor(ActorBase):
    service = "builder"

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self._home = ctx.config.home_dir / "builder"
        self._contexts = self._home / "contexts"
        self._spool = ctx.config.home_dir / "tmp"
        self._cache = BuildCache(self._home / "cache.json")

    def on_start(self) -> None:
        # What a build cut by this actor's death left: its context folder.
        shutil.rmtree(self._contexts, ignore_errors=True)
        self._contexts.mkdir(parents=True, exist_ok=True)
        self._spool.mkdir(parents=True, exist_ok=True)
        for left in self._spool.glob("build-*"):
            left.unlink(missing_ok=True)
        threading.Thread(target=self._drop_orphans, name="build-orphans", daemon=True).start()

    def _drop_orphans(self) -> None:
        """The step containers a builder that died left running or never started."""
        try:
            left = self.ctx.calls.container.list(all=True, filters={"label": [STEP_LABEL]})
        except PouchError as exc:
            log.warning("could not look for a dead build's containers: %s", exc.message)
            return
        for container in left:
            if container["State"] in ("running", "created", "paused"):
                try:
                    self.ctx.calls.container.remove(id=container["Id"], force=True)
                except PouchError as exc:
                    log.warning("could not remove %s: %s", container["Id"][:12], exc.message)

    @method(idempotent=False, returns=None, errors=("invalid",))
    def build(self, conn: StreamSession, reply: Reply, head: str, chunked: bool = False,
              length: int = -1, options: dict[str, Any] | None = None) -> None:
        """docker build on a handed-over connection: the context is the request's body
        (what the gateway read of it already in the spool file `head`, the rest on the
        connection: `chunked`, or `length` bytes), the answer the classic builder's JSON
        messages. `options`: POST /build's query (t as `tags`, dockerfile, buildargs,
        labels, target, nocache, pull, rm, forcerm, q, cachefrom, networkmode,
        extrahosts, shmsize, platform). Errors, before the build starts: invalid tags
        (as dockerd's reference grammar has them) or a platform not this machine's."""
        spool = Path(head)
        if spool.parent != self._spool or not spool.name.startswith("build-") \
                or spool.is_symlink() or not spool.is_file():
            conn.close()
            raise invalid(f"not a build spool file of this daemon: {head}")
        try:
            parsed = Options.from_wire(options or {})
        except (ValueError, TypeError) as exc:
            spool.unlink(missing_ok=True)
            conn.close()
            raise invalid(f"invalid build option: {exc}") from None
        threading.Thread(target=self._begin, args=(conn, reply, spool, parsed, chunked, length),
                         name="build", daemon=True).start()

    def _begin(self, conn: StreamSession, reply: Reply, spool: Path, options: Options,
               chunked: bool, length: int) -> None:
        """A build refused as dockerd refuses it, before it starts (an error answer, not
        a stream ending in one: the client has no build to wait for), else run."""
        ok, _ = reply.attempt(self._check, options)
        if not ok:
            spool.unlink(missing_ok=True)
            conn.close()
            return
        reply.send(None)
        if not conn.start():
            spool.unlink(missing_ok=True)
            return
        env = Env(self.ctx.calls, self.ctx.config.handoff_dir, self._spool, self._contexts,
                  self._cache)
        Build(env, conn, options, spool, chunked, length).run()

    def _check(self, options: Options) -> None:
        try:
            check_platform(options.platform)
        except ValueError as exc:
            raise invalid(str(exc)) from None
        if options.tags:
            self.ctx.calls.image.check_tags(names=options.tags)

    @method(idempotent=True, returns=BuildCachePruned, timeout=120.0, errors=("invalid",))
    def prune(self, reply: Reply, all: bool = False,
              filters: dict[str, builtins.list[str]] | None = None) -> None:
        """Drop the build cache (docker builder prune): its entries, and the images they
        named that have no name and that no container uses."""
        check_filters(filters, ("until", "unused-for", "type", "id", "private", "shared",
                                "description", "inuse"))
        reply.run_in_thread(self._prune)

    def _prune(self) -> BuildCachePruned:
        images = self._cache.clear()
        deleted: builtins.list[str] = []
        reclaimed = 0
        for image in reversed(images):
            try:
                found = self.ctx.calls.image.inspect(name=image)
                if found["RepoTags"]:
                    continue
                self.ctx.calls.image.remove(name=image)
            except PouchError as exc:
                log.info("prune kept %s: %s", image, exc.message)
                continue
            deleted.append(image)
            reclaimed += int(found.get("Size") or 0)
        return {"CachesDeleted": deleted or None, "SpaceReclaimed": reclaimed}
