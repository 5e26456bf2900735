"""One build, from the request body to the last message, as dockerd's classic builder
runs it: the context received, the Dockerfile parsed, then each step in turn, each
making an image (the cache: a step run before on the same image is not run again).

The context is kept as the tar it came as, in a spool file of the builder's: a plain
one (files and folders only, the usual case) is read from there through an index
(`context.ContextIndex`) and never unpacked, so a build whose steps are all in the
cache writes no file of it; any other is unpacked into a private folder (which refuses
what it must, naming the member), and so is a plain one when an ADD needs its files.

- FROM: a local image (pulled if missing, or always with `pull`), an earlier stage, or
  scratch; the base's ONBUILD triggers run first.
- RUN: a container of the step's config (Cmd: the shell and the command), attached
  before it starts, so its output streams as it comes; its changes become the step's
  layer (the container actor's commit_layer, through containerd's diff service).
- COPY and ADD: the sources, placed at their destination (inside it when it is a
  folder of the image, as dockerd places them), make a tar in the daemon's tmp folder
  that is the step's layer as it is (the image actor stores it and unpacks it with
  containerd's diff service onto the image's snapshot, whose missing parent folders it
  makes): no container, no mount, no second copy of the files. ADD's URLs are
  downloaded on every build, before the cache is looked at (`remote`: the file as it
  came, 0600, never unpacked).
- WORKDIR: its folder, where the image lacks it, is the step's layer (as dockerd makes
  it), so that a later `COPY x .` lands in it.
- The rest (ENV, CMD, LABEL, ...): an image with the new config and no layer.

Output is dockerd's line for line, but for the " ---> Running in" and "Removing
intermediate container" lines dockerd prints for metadata steps: it makes a container
for each, and this builder makes none.

A client that goes away cancels the build: the step's container is removed, no image
is made of the step, and the context (tar and folder) goes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import platform as pyplatform
import posixpath
import re
import select
import shutil
import socket
import stat
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final

from pouch.actors.builder import metadata, streams
from pouch.actors.builder.body import BodyError, BodyReader
from pouch.actors.builder.cache import BuildCache, cache_key
from pouch.actors.builder.context import (
    ContextError,
    ContextIndex,
    in_scope,
    multi_digest,
    resolve_named,
    sources_digest,
    spool_context,
    unpack_context,
)
from pouch.actors.builder.dockerfile import (
    Dockerfile,
    DockerfileError,
    Instruction,
    arg_pairs,
    expand,
    parse,
    parse_instruction,
    stage_index,
    step_count,
    with_labels,
)
from pouch.actors.builder.ignore import IgnoreRules
from pouch.actors.builder.remote import (
    FILE_MODE,
    UNNAMED,
    Download,
    RemoteError,
    fetch,
    is_url,
    progress_text,
)
from pouch.proto.envelope import PouchError
from pouch.proto.stream import StreamSession
from pouch.proto.stubs import Calls

log = logging.getLogger("pouch.builder")

CONTEXT_LIMIT: Final = 10 << 30  # bytes a context may unpack to
READ_AFTER_BODY: Final = 4096
QUIET_KEPT: Final = 8 << 20  # characters of a quiet build's output kept, to show if it fails
# On the containers a build makes: those a dead builder left running or unstarted are
# removed by its successor (a failed step's, exited, is left as dockerd leaves it).
STEP_LABEL: Final = "io.pouch.build.step"
# Build args every build knows without declaring them (their values stay out of history).
PROXY_ARGS: Final = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
                     "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
DEFAULT_PATH: Final = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ARCHIVE_MAGIC: Final = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


class Cancelled(Exception):
    """The client went away."""


class BuildError(Exception):
    """A build that cannot go on; `code` is a failed command's exit code (0: none)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Options:
    """POST /build's query, as the gateway passed it on."""

    tags: list[str] = field(default_factory=list)
    dockerfile: str = ""
    buildargs: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    nocache: bool = False
    pull: bool = False
    rm: bool = True
    forcerm: bool = False
    q: bool = False
    cachefrom: list[str] = field(default_factory=list)
    networkmode: str = ""
    extrahosts: list[str] = field(default_factory=list)
    shmsize: int = 0
    platform: str = ""

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Options:
        """Errors: ValueError naming the option."""
        def strings(name: str, value: Any, kind: type) -> Any:
            if not isinstance(value, kind):
                raise ValueError(f"{name}: not a {kind.__name__}")
            return value

        buildargs = strings("buildargs", raw.get("buildargs") or {}, dict)
        labels = strings("labels", raw.get("labels") or {}, dict)
        if not all(isinstance(v, str | None) for v in buildargs.values()):
            raise ValueError("buildargs: values must be strings")
        if not all(isinstance(v, str) for v in labels.values()):
            raise ValueError("labels: values must be strings")
        pull = raw.get("pull") or ""
        extrahosts = raw.get("extrahosts") or ""
        return cls(
            tags=[str(t) for t in strings("t", raw.get("tags") or [], list)],
            dockerfile=str(raw.get("dockerfile") or ""),
            buildargs=buildargs, labels=labels, target=str(raw.get("target") or ""),
            nocache=bool(raw.get("nocache", False)),
            pull=str(pull).lower() not in ("", "0", "false"),
            rm=bool(raw.get("rm", True)), forcerm=bool(raw.get("forcerm", False)),
            q=bool(raw.get("q", False)),
            cachefrom=[str(c) for c in strings("cachefrom", raw.get("cachefrom") or [], list)],
            networkmode=str(raw.get("networkmode") or ""),
            extrahosts=[h for h in str(extrahosts).replace(",", " ").split() if h],
            shmsize=int(raw.get("shmsize") or 0), platform=str(raw.get("platform") or ""))


# Go's names of machines (platform.machine()) and the other names a platform may use.
GO_ARCH: Final = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armv7l": "arm",
                  "armhf": "arm", "i686": "386", "i386": "386"}
_PLATFORM_PART: Final = re.compile(r"[A-Za-z0-9_-]+")


def check_platform(text: str, machine: str | None = None) -> None:
    """Refuse a build `platform` other than this machine's (its RUN steps could not run,
    and its images would say what they are not): ValueError, in dockerd's words for one
    that does not parse. "" (none), "linux" and "linux/<this arch>[/variant]" pass."""
    if not text:
        return
    parts = text.split("/")
    for part in parts:
        if not _PLATFORM_PART.fullmatch(part):
            raise ValueError(f'"{part}" is an invalid component of "{text}": platform '
                             'specifier component must match "^[A-Za-z0-9_-]+$": invalid '
                             "argument")
    if len(parts) > 3:
        raise ValueError(f'"{text}": unknown operating system or architecture: invalid '
                         "argument")
    raw = machine or pyplatform.machine()
    here = GO_ARCH.get(raw, raw)
    os_name = parts[0].lower()
    arch = GO_ARCH.get(parts[1].lower(), parts[1].lower()) if len(parts) > 1 else here
    if os_name != "linux" or arch != here:
        raise ValueError(f"this daemon builds for its own platform only (linux/{here}), "
                         f"not {text}")


@dataclass
class Env:
    """What a build needs of its actor."""

    calls: Calls
    handoff_dir: Path
    spool_dir: Path      # the daemon's tmp folder: spool files other actors accept
    work_dir: Path       # the builder's own folder for contexts
    cache: BuildCache


@dataclass
class Stage:
    """Where a stage's build is: its image so far and the config it carries."""

    name: str
    image: str = ""  # "" for scratch, before a step
    config: dict[str, Any] = field(default_factory=dict)
    args: dict[str, str | None] = field(default_factory=dict)  # declared in this stage
    cmd_set: bool = False


def short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


class Build:
    def __init__(self, env: Env, conn: StreamSession, options: Options, head: Path,
                 chunked: bool, length: int) -> None:
        self.env = env
        self.conn = conn
        self.options = options
        self.head = head
        self.chunked = chunked
        self.length = length
        self.context = Path(tempfile.mkdtemp(prefix="context-", dir=env.work_dir))
        # The context as its (decompressed) tar; a plain one is read from there through
        # `index` and unpacked into `context` only if a step needs its files as files.
        self.context_tar = self.context.with_name(self.context.name + ".tar")
        self.index: ContextIndex | None = None
        self.unpacked = False
        self.cancelled = threading.Event()
        self.stages: dict[str, str] = {}  # stage name or index -> its image
        self.meta_args: dict[str, str | None] = {}
        self.used_args: set[str] = set()
        self.container = ""  # the step's container, while there is one
        self.step = 0
        self.total = 0
        self.ignore: IgnoreRules | None = None
        self.sums: dict[str, tuple[tuple[int, ...], str]] = {}  # the context's files' sums
        self._sources: list[list[tuple[Any, ...]]] | None = None  # cachefrom's histories
        self.escape = "\\"
        self.triggers = False  # running the base image's ONBUILD triggers
        self.kept: list[str] = []  # a quiet build's output, shown if it fails (as dockerd)
        self.kept_size = 0

    # -- output ------------------------------------------------------------

    def say(self, text: str, always: bool = False) -> None:
        if self.options.q and not always:
            self._keep(text)
            return
        if not self.conn.write_json({"stream": text}):
            self.cancelled.set()
            raise Cancelled()

    def _keep(self, text: str) -> None:
        if self.kept_size < QUIET_KEPT:
            self.kept.append(text)
            self.kept_size += len(text)

    def check(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled()

    # -- the build ---------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Cancelled:
            log.info("a build was cancelled: its client went away")
        except BuildError as exc:
            self._error(exc.message, exc.code)
        except (DockerfileError, ContextError, BodyError) as exc:
            self._error(str(exc))
        except PouchError as exc:
            self._error(exc.message)
        except Exception as exc:
            log.exception("a build failed")
            self._error(f"{type(exc).__name__}: {exc}")
        finally:
            self._drop_container()
            with contextlib.suppress(FileNotFoundError):
                self.head.unlink()
            # A client still there waits for the end, not for the context's removal
            # (a thousand files take a good part of a second): the end comes first.
            gone = self.cancelled.is_set()
            if not gone:
                self.conn.end()
            self._drop_context()
            if gone:
                self.conn.end()

    def _error(self, message: str, code: int = 0) -> None:
        """The build's last message. What the build leaves is settled first: a client
        ends at this message, and what it looks at next must be as it stays."""
        self._drop_container()
        self._drop_context()
        for text in self.kept:
            self.conn.write_json({"stream": text})
        detail: dict[str, Any] = {"message": message}
        if code:
            detail["code"] = code
        self.conn.write_json({"errorDetail": detail, "error": message})

    def _drop_context(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.context_tar.unlink()
        shutil.rmtree(self.context, ignore_errors=True)

    def _run(self) -> None:
        head = self.head.read_bytes()
        self.head.unlink()
        self.conn.conn.setblocking(True)
        body = io.BufferedReader(BodyReader(head, self.conn.conn, self.chunked, self.length),
                                 1 << 20)
        self.index = spool_context(body, self.context_tar, CONTEXT_LIMIT)
        if self.index is None:  # refused here, if it must be, naming the member
            self._folder()
            self.context_tar.unlink()
        self._watch_client()
        dockerfile = self._dockerfile()
        target = self.options.target or None
        if self.options.labels:
            dockerfile = with_labels(dockerfile, self.options.labels, target)
        stages = dockerfile.stages[:stage_index(dockerfile, target) + 1]
        self.total = step_count(dockerfile, target)
        self.escape = dockerfile.escape
        for warning in dockerfile.warnings:
            self.say(warning if warning.endswith("\n") else f"{warning}\n")
        for ins in dockerfile.meta_args:
            self._step(ins)
            self._meta_arg(ins)
        image = ""
        for index, stage in enumerate(stages):
            self._step(stage.from_line)
            state = self._from(stage.base, stage.name or str(index))
            for ins in stage.instructions:
                self.check()
                self._step(ins)
                self._dispatch(state, ins)
            if not state.image:
                raise BuildError("No image was generated. Is your Dockerfile empty?")
            image = state.image
            self.stages[str(index)] = image
            if stage.name:
                self.stages[stage.name] = image
        unused = sorted(set(self.options.buildargs) - self.used_args - set(PROXY_ARGS))
        if unused:
            self.say(f"[Warning] One or more build-args [{' '.join(unused)}] were not "
                     "consumed\n")
        self.conn.write_json({"aux": {"ID": image}})
        if self.options.q:
            self.say(f"{image}\n", always=True)
        self.say(f"Successfully built {short(image)}\n")
        for tag in self.options.tags:
            repo, tag_part = split_tag(tag)
            self.env.calls.image.tag(name=image, repo=repo, tag=tag_part)
            self.say(f"Successfully tagged {repo}:{tag_part or 'latest'}\n")

    def _folder(self) -> Path:
        """The context unpacked (the first time it is asked for)."""
        if not self.unpacked:
            with open(self.context_tar, "rb") as tar:
                self.sums = unpack_context(tar, self.context, CONTEXT_LIMIT).sums
            self.unpacked = True
        return self.context

    def _index(self) -> ContextIndex:
        assert self.index is not None  # asked for only where a plain context has one
        return self.index

    def _step(self, ins: Instruction) -> None:
        self.step += 1
        self.say(f"Step {self.step}/{self.total} : {ins.original}\n")

    def _dockerfile(self) -> Dockerfile:
        name = self.options.dockerfile or "Dockerfile"
        path = _inside(self.context, name)
        if path is None:
            raise BuildError(f"The Dockerfile ({name}) must be within the build context")
        if self.index is not None:
            return self._indexed_dockerfile(self.index, path.relative_to(self.context)
                                            .as_posix(), name)
        # Read as dockerd reads it: symlinks followed inside the context, never out of it.
        path = in_scope(self.context, path.relative_to(self.context).as_posix())
        if not path.is_file() and not self.options.dockerfile:
            lower = in_scope(self.context, "dockerfile")
            path = lower if lower.is_file() else path
        if not path.is_file():
            raise BuildError(f"Cannot locate specified Dockerfile: {name}")
        ignore_file = in_scope(self.context, ".dockerignore")
        if ignore_file.is_file():
            self.ignore = IgnoreRules.from_text(ignore_file.read_text(errors="replace"))
        return _parse(path.read_text(errors="replace"), name)

    def _indexed_dockerfile(self, index: ContextIndex, rel: str, name: str) -> Dockerfile:
        if not index.is_file(rel) and not self.options.dockerfile \
                and index.is_file("dockerfile"):
            rel = "dockerfile"
        if not index.is_file(rel):
            raise BuildError(f"Cannot locate specified Dockerfile: {name}")
        if index.is_file(".dockerignore"):
            self.ignore = IgnoreRules.from_text(_text(index.read(".dockerignore")))
        return _parse(_text(index.read(rel)), name)

    def _watch_client(self) -> None:
        """Once the body is read, a client that closes its connection cancels the build."""
        sock = self.conn.conn

        def watch() -> None:
            poller = select.poll()
            poller.register(sock, select.POLLIN | select.POLLRDHUP)
            while not self.cancelled.is_set():
                try:
                    events = poller.poll(500)
                    if sock.fileno() < 0:
                        return
                    # Whatever a client sends after its body is read and dropped (else
                    # the poll would wake at once again); nothing: it closed its end.
                    if events and not sock.recv(READ_AFTER_BODY, socket.MSG_DONTWAIT):
                        break
                except BlockingIOError:
                    continue
                except (OSError, ValueError):
                    break
            if sock.fileno() >= 0:
                self.cancelled.set()
                self._kill_container()

        threading.Thread(target=watch, name="build-watch", daemon=True).start()

    # -- FROM and ARG ------------------------------------------------------

    def _meta_arg(self, ins: Instruction) -> None:
        for name, default in arg_pairs(ins):
            value = self.options.buildargs.get(name) if name in self.options.buildargs \
                else (self._expand(default, self._meta_env()) if default is not None
                      else None)
            if name in self.options.buildargs:
                self.used_args.add(name)
            self.meta_args[name] = value

    def _meta_env(self) -> dict[str, str]:
        return {k: v for k, v in self.meta_args.items() if v is not None}

    def _expand(self, word: str, env: dict[str, str]) -> str:
        return expand(word, env, self.escape)

    def _from(self, base: str, name: str) -> Stage:
        image_name = self._expand(base, self._meta_env())
        state = Stage(name)
        if image_name.lower() == "scratch":
            state.config = {"Env": [DEFAULT_PATH]}
        else:
            image_id = self.stages.get(image_name.lower()) or self._base_image(image_name)
            state.image = image_id
            state.config = dict(self.env.calls.image.inspect(name=image_id)["Config"] or {})
        triggers = list(state.config.get("OnBuild") or [])
        state.config["OnBuild"] = None
        if triggers:
            self.say(f"# Executing {len(triggers)} build trigger"
                     f"{'s' if len(triggers) > 1 else ''}\n")
            # As dockerd: a trigger's step shows what it runs, not the image it makes;
            # the stage's image shows once, after them all.
            self.triggers = True
            try:
                for text in triggers:
                    self._dispatch(state, parse_instruction(text, self.escape))
            finally:
                self.triggers = False
        self.say(f" ---> {short(state.image)}\n")  # nothing after the arrow for scratch
        return state

    def _base_image(self, name: str) -> str:
        if not self.options.pull:
            try:
                return self.env.calls.image.inspect(name=name)["Id"]
            except PouchError as exc:
                if exc.code != "not_found":
                    raise
        repo, tag = split_tag(name)
        for progress in self.env.calls.image.pull(image=repo, tag=tag or "latest"):
            self.check()
            status = progress.get("status")
            if status and not progress.get("progressDetail"):
                line = f"{progress.get('id')}: {status}" if progress.get("id") else status
                self.say(f"{line}\n")
        return self.env.calls.image.inspect(name=name)["Id"]

    # -- the other instructions ---------------------------------------------

    def _env_map(self, state: Stage) -> dict[str, str]:
        args = {k: v for k, v in state.args.items() if v is not None}
        return {**args, **metadata.env_map(state.config)}

    def _dispatch(self, state: Stage, ins: Instruction) -> None:
        command = ins.command
        if command == "run":
            self._run_step(state, ins)
        elif command in ("copy", "add"):
            self._copy_step(state, ins)
        elif command == "arg":
            self._arg(state, ins)
        elif command in metadata.METADATA:
            self._metadata(state, ins)
        else:
            raise BuildError(f"Unknown instruction: {command.upper()}")

    def _arg(self, state: Stage, ins: Instruction) -> None:
        for name, default in arg_pairs(ins):
            if name in self.options.buildargs:
                value = self.options.buildargs[name]
                self.used_args.add(name)
            elif default is not None:
                value = self._expand(default, self._env_map(state))
            else:
                value = self.meta_args.get(name)
            state.args[name] = value
        self._commit_config(state, ins, state.config)

    def _metadata(self, state: Stage, ins: Instruction) -> None:
        config, state.cmd_set = metadata.apply(state.config, ins, self._env_map(state),
                                               self.escape, state.cmd_set)
        self._commit_config(state, ins, config)

    def _commit_config(self, state: Stage, ins: Instruction, config: dict[str, Any]) -> None:
        created_by = f"/bin/sh -c #(nop)  {ins.original.split(None, 1)[0].upper()} " \
                     f"{ins.original.split(None, 1)[1] if ' ' in ins.original else ''}".rstrip()
        key = cache_key(state.image, created_by, config)
        if self._cached(state, key):
            state.config = config
            return
        layer = self._workdir_layer(state.image, config["WorkingDir"]) \
            if ins.command == "workdir" else None
        try:
            image = self.env.calls.image.build_step(base=state.image, config=config,
                                                    created_by=created_by,
                                                    layer=str(layer) if layer else "")
        finally:
            if layer is not None:
                layer.unlink()
        self._made(state, key, image, config)

    def _workdir_layer(self, image: str, path: str) -> Path | None:
        """WORKDIR's folder as dockerd makes it where the image lacks it (with its missing
        parents: root's, 0755), so that a COPY to "." lands in it: the step's layer, as a
        tar spool file; None if there is nothing to make."""
        missing = self._missing_folders(image, path)
        if not missing:
            return None
        fd, name = tempfile.mkstemp(prefix="build-workdir-", suffix=".tar",
                                    dir=self.env.spool_dir)
        made = time.time()
        with os.fdopen(fd, "wb") as tarball, \
                tarfile.open(fileobj=tarball, mode="w", format=tarfile.PAX_FORMAT) as out:
            for folder in missing:
                info = tarfile.TarInfo(folder.lstrip("/"))
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, made
                out.addfile(info)
        return Path(name)

    def _cached(self, state: Stage, key: str) -> bool:
        if self.options.nocache:
            return False
        for image in self.env.cache.get(key):
            try:
                self.env.calls.image.inspect(name=image)
            except PouchError as exc:
                if exc.code != "not_found":
                    raise
                self.env.cache.drop(key, image)
                continue
            if self.options.cachefrom and not self._from_cache_sources(image):
                continue
            self.say(" ---> Using cache\n")
            if not self.triggers:
                self.say(f" ---> {short(image)}\n")
            state.image = image
            return True
        return False

    def _from_cache_sources(self, image: str) -> bool:
        """With `cachefrom`, as dockerd: a step's cached image counts only if it is one
        of those images or one they were built on (its history is the end of theirs)."""
        if self._sources is None:
            self._sources = []
            for name in self.options.cachefrom:
                try:
                    self._sources.append(_steps(self.env.calls.image.history(name=name)))
                except PouchError as exc:
                    if exc.code != "not_found":
                        raise
        mine = _steps(self.env.calls.image.history(name=image))
        return any(len(source) >= len(mine) and source[len(source) - len(mine):] == mine
                   for source in self._sources)

    def _made(self, state: Stage, key: str, image: str, config: dict[str, Any]) -> None:
        self.env.cache.put(key, image)
        state.image = image
        state.config = config
        if not self.triggers:
            self.say(f" ---> {short(image)}\n")

    # -- RUN ---------------------------------------------------------------

    def _run_env(self, state: Stage) -> tuple[list[str], list[str]]:
        """The RUN container's Env (with the build args in scope) and the args shown."""
        env = list(state.config.get("Env") or [])
        declared = {k: v for k, v in state.args.items() if v is not None}
        names = {e.partition("=")[0] for e in env}
        shown = [f"{k}={v}" for k, v in sorted(declared.items()) if k not in PROXY_ARGS]
        return env + [f"{k}={v}" for k, v in declared.items() if k not in names], shown

    def _run_step(self, state: Stage, ins: Instruction) -> None:
        shell = state.config.get("Shell") or metadata.DEFAULT_SHELL
        cmd = list(ins.args) if ins.json_form else [*shell, " ".join(ins.args)]
        env, shown = self._run_env(state)
        created_by = " ".join(cmd)
        if shown:
            created_by = f"|{len(shown)} {' '.join(shown)} {created_by}"
        key = cache_key(state.image, created_by, state.config)
        if self._cached(state, key):
            return
        body = self._container_body(state, cmd, env)
        cid = self._create(body)
        self.say(f" ---> Running in {cid[:12]}\n")
        attached = streams.attach(self.env.handoff_dir, cid)

        def emit(_name: str, data: bytes) -> None:
            if self.options.q:
                self._keep(data.decode(errors="replace"))
            else:
                self.conn.write_json({"stream": data.decode(errors="replace")})

        pumping = threading.Thread(target=streams.pump, args=(attached, emit),
                                   name="build-output", daemon=True)
        pumping.start()
        try:
            self.env.calls.container.start(id=cid)
        except BaseException:
            attached.close()
            raise
        pumping.join()
        self.check()
        status = streams.wait(self.env.handoff_dir, cid)
        self.check()
        code = int(status.get("StatusCode") or 0)
        if code:
            if not self.options.forcerm:
                self.container = ""  # left for the user to look at, as dockerd leaves it
            command = " ".join(cmd)
            raise BuildError(f"The command '{command}' returned a non-zero code: {code}", code)
        image = self.env.calls.image.build_step(base=state.image, config=state.config,
                                                created_by=created_by, container=cid)
        self._remove_step_container()
        self._made(state, key, image, state.config)

    def _container_body(self, state: Stage, cmd: list[str], env: list[str]) -> dict[str, Any]:
        config = state.config
        host: dict[str, Any] = {}
        if self.options.networkmode and self.options.networkmode != "default":
            host["NetworkMode"] = self.options.networkmode
        if self.options.extrahosts:
            host["ExtraHosts"] = self.options.extrahosts
        if self.options.shmsize:
            host["ShmSize"] = self.options.shmsize
        return {"Image": state.image or "scratch", "Cmd": cmd, "Entrypoint": [], "Env": env,
                "WorkingDir": config.get("WorkingDir") or "", "User": config.get("User") or "",
                "Labels": {STEP_LABEL: "run"}, "AttachStdout": True, "AttachStderr": True,
                "HostConfig": host}

    def _create(self, body: dict[str, Any]) -> str:
        self.check()
        created = self.env.calls.container.create(name="", config=body)
        self.container = created["Id"]
        if self.cancelled.is_set():
            raise Cancelled()
        return self.container

    def _remove_step_container(self) -> None:
        cid, self.container = self.container, ""
        if cid and (self.options.rm or self.options.forcerm):
            self.env.calls.container.remove(id=cid, force=True)
            self.say(f"Removing intermediate container {cid[:12]}\n")

    def _kill_container(self) -> None:
        cid = self.container
        if cid:
            with contextlib.suppress(PouchError):
                self.env.calls.container.kill(id=cid)

    def _drop_container(self) -> None:
        """The step's container, whatever happened to it: gone (a failed RUN's stays
        unless forcerm: `container` is cleared for it)."""
        cid, self.container = self.container, ""
        if cid:
            try:
                self.env.calls.container.remove(id=cid, force=True)
            except PouchError as exc:
                log.warning("could not remove build container %s: %s", cid[:12], exc.message)

    # -- COPY and ADD ------------------------------------------------------

    def _copy_step(self, state: Stage, ins: Instruction) -> None:
        env = self._env_map(state)
        words = [self._expand(w, env) for w in ins.args]
        if len(words) < 2:
            raise BuildError(f"{ins.command.upper()} requires at least two arguments")
        sources, dest = words[:-1], words[-1]
        add = ins.command == "add"
        source_from = ins.flags.get("from", "")
        urls = [] if source_from else [source for source in sources if is_url(source)]
        if urls and not add:
            raise BuildError("COPY failed: source can't be a URL for COPY")
        local = [source for source in sources if source not in urls]
        fetched = Path(tempfile.mkdtemp(prefix="remote-", dir=self.env.work_dir)) \
            if urls else None
        try:
            downloads = self._fetch(urls, fetched, dest) if fetched is not None else []
            self._copy_sources(state, ins, local, downloads, dest, len(sources))
        finally:
            if fetched is not None:
                shutil.rmtree(fetched, ignore_errors=True)

    def _fetch(self, urls: list[str], folder: Path, dest: str) -> list[Download]:
        """ADD's remote sources, downloaded (on every build, as dockerd: the cache is
        looked at after, by what came), each in a folder of its own."""
        downloads: list[Download] = []
        for number, url in enumerate(urls):
            into = folder / str(number)
            into.mkdir()
            try:
                download = fetch(url, into, CONTEXT_LIMIT, check=self.check,
                                 progress=self._download_progress)
            except RemoteError as exc:
                raise BuildError(f"ADD failed: {exc}") from None
            self.say("\n")  # dockerd's blank line after a download
            if not download.name and dest.endswith("/"):
                raise BuildError(f"ADD failed: cannot determine filename for source {url}")
            downloads.append(download)
        return downloads

    def _download_progress(self, current: int, total: int) -> None:
        """A download's progress, as dockerd's JSON progress output writes it (the CLI
        draws it on a terminal and shows nothing of it elsewhere)."""
        if self.options.q:
            return
        detail = {key: value for key, value in (("current", current), ("total", total))
                  if value}
        if not self.conn.write_json({"status": "Downloading", "progressDetail": detail,
                                     "progress": progress_text(current, total)}):
            self.cancelled.set()
            raise Cancelled()

    def _copy_sources(self, state: Stage, ins: Instruction, sources: list[str],
                      downloads: list[Download], dest: str, count: int) -> None:
        """COPY's or ADD's step: `sources` in the context (or in --from's image), and
        ADD's downloads; `count`: how many sources the instruction names."""
        add = ins.command == "add"
        chown = ins.flags.get("chown", "")
        workdir = state.config.get("WorkingDir") or "/"
        target = posixpath.normpath(posixpath.join(workdir, dest))
        as_dir = dest.endswith("/") or dest.endswith("/.") or count > 1
        source_from = ins.flags.get("from", "")
        named: list[tuple[str, Path]] = []
        indexed: list[tuple[str, str]] = []
        digest = ""
        try:
            if not source_from and self.index is not None and not add:
                indexed = self.index.resolve_named(sources, self.ignore)
                as_dir = as_dir or len(indexed) > 1
                digest = self.index.digest([rel for _, rel in indexed])
            elif not source_from and not downloads:
                named = resolve_named(self._folder(), sources, self.ignore)
                as_dir = as_dir or len(named) > 1
                digest = sources_digest([path for _, path in named], self.context, self.sums)
            elif not source_from:
                named = resolve_named(self._folder(), sources, self.ignore) if sources else []
                as_dir = as_dir or len(named) + len(downloads) > 1
                sums = [sources_digest([path], self.context, self.sums) for _, path in named]
                # A download's sum goes bare, as dockerd puts it ("ADD <hex> in /dest").
                digest = multi_digest(sums + [download.digest for download in downloads])
        except ContextError as exc:  # as dockerd words a source it cannot find
            raise BuildError(f"{ins.command.upper()} failed: {exc}") from None
        found = len(sources) if source_from else len(named) + len(indexed) + len(downloads)
        if found > 1 and not dest.endswith("/"):
            raise BuildError(f"When using {ins.command.upper()} with more than one source "
                             "file, the destination must be a directory and end with a /")
        # The cache is looked at before anything is copied.
        if not source_from and self._cached(
                state, self._copy_key(state, ins, digest, dest, chown)[1]):
            return
        lone_file = bool(source_from) or (
            len(indexed) == 1 and self._index().node(indexed[0][1]).kind != stat.S_IFDIR) \
            or (len(named) == 1 and not downloads and not named[0][1].is_dir()) \
            or (len(downloads) == 1 and not named)
        if not as_dir and lone_file and self._is_dir_in(state.image, target):
            as_dir = True  # as dockerd: a file copied onto a folder of the image goes in it
        owner = _owner(chown, lambda path: self._image_file(state.image, path))
        fd, name = tempfile.mkstemp(prefix="build-copy-", suffix=".tar",
                                    dir=self.env.spool_dir)
        spool = Path(name)
        try:
            with os.fdopen(fd, "wb") as tarball, \
                    tarfile.open(fileobj=tarball, mode="w", format=tarfile.PAX_FORMAT) as out:
                if source_from:
                    digest = self._copy_from(out, source_from, sources, target, as_dir, owner)
                for source_name, path in named:
                    self._add_path(out, path, posixpath.basename(source_name), target,
                                   as_dir, owner, add)
                if indexed:
                    self._add_indexed(out, indexed, target, as_dir, owner)
                for download in downloads:
                    _add_download(out, download, target, as_dir, owner)
            created_by, key = self._copy_key(state, ins, digest, dest, chown)
            if source_from and self._cached(state, key):
                return
            self.check()
            image = self.env.calls.image.build_step(base=state.image, config=state.config,
                                                    created_by=created_by, layer=str(spool))
            self._made(state, key, image, state.config)
        finally:
            with contextlib.suppress(FileNotFoundError):
                spool.unlink()

    def _copy_key(self, state: Stage, ins: Instruction, digest: str, dest: str,
                  chown: str) -> tuple[str, str]:
        """A COPY's or ADD's history line and cache key."""
        flags = f"--chown={chown}" if chown else ""  # no space after it: dockerd's line
        created_by = f"/bin/sh -c #(nop) {ins.command.upper()} {flags}{digest} in {dest} "
        return created_by, cache_key(state.image, created_by, state.config, digest)

    def _add_path(self, out: tarfile.TarFile, path: Path, base_name: str, target: str,
                  as_dir: bool, owner: tuple[int, int] | None, add: bool) -> None:
        info = path.stat()  # resolve_named followed the symlinks inside the context
        if stat.S_ISDIR(info.st_mode):
            self._add_tree(out, path, target, owner)
            return
        name = posixpath.join(target, base_name) if as_dir else target
        if add and stat.S_ISREG(info.st_mode) and _is_archive(path):
            _add_archive(out, path, target, owner)
            return
        _add_member(out, path, name, owner)

    def _add_tree(self, out: tarfile.TarFile, root: Path, target: str,
                  owner: tuple[int, int] | None) -> None:
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            here = Path(folder)
            rel = here.relative_to(root).as_posix()
            base = target if rel == "." else posixpath.join(target, rel)
            if rel != "." or target != "/":
                _add_member(out, here, base, owner)
            for name in sorted(files) + [d for d in dirs if (here / d).is_symlink()]:
                full = here / name
                if self.ignore is not None and self.ignore.excluded(
                        full.relative_to(self.context).as_posix()):
                    continue
                _add_member(out, full, posixpath.join(base, name), owner)

    def _add_indexed(self, out: tarfile.TarFile, indexed: list[tuple[str, str]], target: str,
                     as_dir: bool, owner: tuple[int, int] | None) -> None:
        """COPY's sources out of a plain context's tar, as `_add_path` adds them out of
        the unpacked folder."""
        index = self._index()
        with open(index.spool, "rb") as data:
            for source_name, rel in indexed:
                if index.node(rel).kind != stat.S_IFDIR:
                    name = posixpath.join(target, posixpath.basename(source_name)) \
                        if as_dir else target
                    _add_node(out, index, data, rel, name, owner)
                    continue
                for path, inner in index.tree(rel):
                    if inner and index.node(path).kind != stat.S_IFDIR and \
                            self.ignore is not None and self.ignore.excluded(path):
                        continue
                    _add_node(out, index, data, path,
                              posixpath.join(target, inner) if inner else target, owner)

    @contextlib.contextmanager
    def _reader(self, image: str) -> Iterator[str]:
        """A container made of `image` (never started), to look at its files through the
        container actor's archive methods; removed after."""
        created = self.env.calls.container.create(name="", config={
            "Image": image, "Cmd": ["/bin/sh"], "Entrypoint": [],
            "Labels": {STEP_LABEL: "read"}})
        try:
            yield created["Id"]
        finally:
            with contextlib.suppress(PouchError):
                self.env.calls.container.remove(id=created["Id"], force=True)

    def _image_file(self, image: str, path: str) -> str:
        """A small text file of an image ("" if it has none)."""
        if not image:
            return ""
        fd, name = tempfile.mkstemp(prefix="build-file-", suffix=".tar", dir=self.env.spool_dir)
        os.close(fd)
        try:
            with self._reader(image) as cid:
                self.env.calls.container.archive_get(id=cid, path=path, spool=name)
            with tarfile.open(name) as tar:
                for member in tar:
                    data = tar.extractfile(member) if member.isreg() else None
                    if data is not None:
                        return data.read(1 << 20).decode(errors="replace")
            return ""
        except PouchError as exc:
            if exc.code != "not_found":
                raise
            return ""
        finally:
            os.unlink(name)

    def _is_dir_in(self, image: str, path: str) -> bool:
        """Whether `path` is a folder (or a symlink to one) in an image."""
        return bool(image) and self._missing_folders(image, path) is None

    def _missing_folders(self, image: str, path: str) -> list[str] | None:
        """The folders of `path` (absolute) an image lacks, outermost first; None if
        `path` is there as a folder or a symlink to one, [] if as something else."""
        parts = [part for part in path.split("/") if part]
        if not image:
            return ["/" + "/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        missing: list[str] = []
        with self._reader(image) as cid:
            while parts:
                here = "/" + "/".join(parts)
                try:
                    found = self.env.calls.container.archive_stat(id=cid, path=here)
                except PouchError as exc:
                    if exc.code != "not_found":
                        raise
                    missing.insert(0, here)
                    parts.pop()
                    continue
                mode = int(found.get("mode") or 0)
                if mode & GO_MODE_SYMLINK and found.get("linkTarget"):
                    with contextlib.suppress(PouchError):  # where it leads, resolved
                        mode = int(self.env.calls.container.archive_stat(
                            id=cid, path=found["linkTarget"]).get("mode") or 0)
                if not mode & GO_MODE_DIR:
                    return []
                break
        return missing or None

    def _copy_from(self, out: tarfile.TarFile, source: str, paths: list[str], target: str,
                   as_dir: bool, owner: tuple[int, int] | None) -> str:
        """COPY --from: the sources out of a stage's image (or any image), by way of a
        container made of it and the container actor's archive_get."""
        image = self.stages.get(source.lower()) or self._base_image(source)
        created = self.env.calls.container.create(name="", config={
            "Image": image, "Cmd": ["/bin/sh"], "Entrypoint": [],
            "Labels": {STEP_LABEL: "read"}})
        helper = created["Id"]
        digests: list[str] = []
        try:
            for path in paths:
                fd, name = tempfile.mkstemp(prefix="build-from-", suffix=".tar",
                                            dir=self.env.spool_dir)
                os.close(fd)
                try:
                    found = self.env.calls.container.archive_get(id=helper, path=path,
                                                                 spool=name)
                    is_dir = stat.S_ISDIR(int(found.get("mode", 0)) & 0o170000) or \
                        bool(int(found.get("mode", 0)) & (1 << 31))
                    with tarfile.open(name) as tar:
                        for member in tar:
                            rel = member.name.split("/", 1)[1] if "/" in member.name else ""
                            if is_dir:
                                dest = posixpath.join(target, rel) if rel else target
                            else:
                                dest = posixpath.join(target, member.name) if as_dir \
                                    else target
                            member = _renamed(member, dest, owner)
                            data = tar.extractfile(member) if member.isreg() else None
                            out.addfile(member, data)
                    with open(name, "rb") as spooled:
                        digests.append(_file_digest(spooled))
                finally:
                    os.unlink(name)
        finally:
            with contextlib.suppress(PouchError):
                self.env.calls.container.remove(id=helper, force=True)
        return "sha256:" + _digest_text("\n".join(digests))


# -- pure helpers ------------------------------------------------------------


def _steps(history: list[Any]) -> list[tuple[Any, ...]]:
    """An image's history rows (newest first) as what makes each step itself."""
    return [(row.get("Created"), row.get("CreatedBy"), row.get("Comment")) for row in history]


def split_tag(name: str) -> tuple[str, str]:
    """A reference's repository and tag ("" for none); a digest stays in the repository."""
    if "@" in name:
        return name, ""
    repo, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        return name, ""
    return repo, tag


def _inside(root: Path, name: str) -> Path | None:
    path = Path(os.path.normpath(root / name))
    return path if path == root or root in path.parents else None


def _owner(chown: str, files: Callable[[str], str]) -> tuple[int, int] | None:
    """COPY's --chown=user[:group] as IDs, as dockerd takes it: names are looked up in
    the image's /etc/passwd and /etc/group (`files` reads one); a user alone names the
    group too."""
    if not chown:
        return None
    if chown.count(":") > 1:
        raise BuildError("unable to convert uid/gid chown string to host mapping: invalid "
                         f"chown string format: {chown}")
    user, _, group = chown.partition(":")
    group = group or user
    users: dict[str, int] = {}
    groups: dict[str, int] = {}
    if not user.isdigit() or not group.isdigit():
        for line in files("/etc/passwd").splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2].isdigit():
                users[fields[0]] = int(fields[2])
        for line in files("/etc/group").splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2].isdigit():
                groups[fields[0]] = int(fields[2])
    uid = int(user) if user.isdigit() else users.get(user)
    if uid is None:
        raise BuildError(f"unable to convert uid/gid chown string to host mapping: can't "
                         f"find uid for user {user}: no such user: {user}")
    gid = int(group) if group.isdigit() else groups.get(group)
    if gid is None:
        raise BuildError(f"unable to convert uid/gid chown string to host mapping: "
                         f"can't find gid for group {group}: no such group: {group}")
    return uid, gid


def _is_archive(path: Path) -> bool:
    with path.open("rb") as stream:
        head = stream.read(262)
    return head.startswith(_ARCHIVE_MAGIC) or head[257:262] == b"ustar"


def _add_member(out: tarfile.TarFile, path: Path, name: str,
                owner: tuple[int, int] | None) -> None:
    if not name.strip("/"):
        return  # the root itself: the image's stays as it is
    info = out.gettarinfo(str(path), arcname=name.lstrip("/"))
    info.uid, info.gid = owner or (0, 0)
    info.uname = info.gname = ""
    if info.isreg():
        with path.open("rb") as data:
            out.addfile(info, data)
    else:
        out.addfile(info)


GO_MODE_DIR: Final = 1 << 31  # Go's os.ModeDir, in the container actor's path stats
GO_MODE_SYMLINK: Final = 1 << 27
_TAR_TYPES: Final = {stat.S_IFREG: tarfile.REGTYPE, stat.S_IFDIR: tarfile.DIRTYPE,
                     stat.S_IFIFO: tarfile.FIFOTYPE}


def _add_node(out: tarfile.TarFile, index: ContextIndex, data: BinaryIO, rel: str,
              name: str, owner: tuple[int, int] | None) -> None:
    """A member of a plain context, as `_add_member` adds the file unpacked from it."""
    if not name.strip("/"):
        return  # the root itself: the image's stays as it is
    node = index.node(rel)
    info = tarfile.TarInfo(name.lstrip("/"))
    info.type, info.mode, info.mtime = _TAR_TYPES[node.kind], node.mode, node.mtime
    info.uid, info.gid = owner or (0, 0)
    if node.kind == stat.S_IFREG:
        info.size = node.size
        data.seek(node.offset)
        out.addfile(info, data)
    else:
        out.addfile(info)


def _parse(text: str, name: str) -> Dockerfile:
    if not text:  # as dockerd tells an empty file from one of comments only
        raise BuildError(f"the Dockerfile ({name}) cannot be empty")
    return parse(text)


def _text(data: bytes) -> str:
    """A file's text as Path.read_text gives it (universal newlines)."""
    return data.decode(errors="replace").replace("\r\n", "\n").replace("\r", "\n")


def _renamed(member: tarfile.TarInfo, name: str,
             owner: tuple[int, int] | None) -> tarfile.TarInfo:
    member = member.replace(name=name.lstrip("/") or ".", deep=False)
    if owner is not None:
        member.uid, member.gid = owner
        member.uname = member.gname = ""
    return member


def _add_download(out: tarfile.TarFile, download: Download, target: str, as_dir: bool,
                  owner: tuple[int, int] | None) -> None:
    """ADD of a URL: the file as it came, never unpacked; 0600, dated as the server
    said (dockerd's temp file, copied as it is)."""
    name = posixpath.join(target, download.name or UNNAMED) if as_dir else target
    if not name.strip("/"):
        raise BuildError(f"ADD failed: cannot copy {download.url} onto the root folder")
    info = tarfile.TarInfo(name.lstrip("/"))
    info.type, info.mode, info.mtime, info.size = (tarfile.REGTYPE, FILE_MODE,
                                                   download.mtime, download.size)
    info.uid, info.gid = owner or (0, 0)
    with download.path.open("rb") as data:
        out.addfile(info, data)


def _add_archive(out: tarfile.TarFile, path: Path, target: str,
                 owner: tuple[int, int] | None) -> None:
    """ADD of a local archive: its members unpacked under `target`."""
    with tarfile.open(str(path), mode="r:*") as tar:
        for member in tar:
            clean = posixpath.normpath(member.name.lstrip("/"))
            if clean.startswith("..") or (member.islnk() and member.linkname.startswith("..")):
                raise BuildError(f"ADD {path.name}: member {member.name!r} is outside the "
                                 "archive's root")
            renamed = _renamed(member, posixpath.join(target, clean), owner)
            if member.islnk():
                renamed.linkname = posixpath.join(target, member.linkname).lstrip("/")
            data = tar.extractfile(member) if member.isreg() else None
            out.addfile(renamed, data)


def _file_digest(stream: Any) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _digest_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()

