"""The image actor: Docker's image API over containerd's image and content stores and
the image index (`index.py`): load, save, import, pull, push, tag, remove, prune, list,
inspect, history."""

from __future__ import annotations

import builtins
import collections
import contextlib
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pouch.actors import plugins, settings
from pouch.actors.builder.metadata import apply_changes
from pouch.actors.containerd.client import Containerd
from pouch.actors.containerd.types import Descriptor
from pouch.actors.gomatch import PatternError, match_regex
from pouch.actors.host import ActorBase, ActorContext, Reply
from pouch.actors.image import reference
from pouch.actors.image.commit import Base, Step, make_image, parents, store_layer
from pouch.actors.image.dockerexport import ImageToSave, write_archive
from pouch.actors.image.dockersave import read_archive
from pouch.actors.image.index import Image, ImageIndex, unix_time
from pouch.actors.image.pull import Cancelled, Downloads, Progress, Pull
from pouch.actors.image.push import Push, pushed_message
from pouch.actors.image.registry import Credentials, Registry, RegistryConfig, login
from pouch.actors.image.rootfs_import import import_rootfs
from pouch.actors.image.store import (
    PARENT_LABEL,
    ImportedImage,
    chain_ids,
    diff_ids,
    image_rootfs_chain,
    import_image,
    is_untagged_name,
    untagged_name,
)
from pouch.actors.timefmt import parse_timestamp
from pouch.proto.config import DaemonConfig
from pouch.proto.contract import method
from pouch.proto.docker import SNAPSHOTTER, check_filters, labels_match
from pouch.proto.envelope import PouchError, conflict, invalid, not_found
from pouch.proto.shapes import (
    AuthStatus,
    CommitResult,
    ImageDeleted,
    ImageHistoryItem,
    ImageInspect,
    ImagesLoaded,
    ImagesPruned,
    ImageSummary,
    ImagesUsage,
    PullProgress,
    ResolvedImage,
)

log = logging.getLogger("pouch.image")
SIZE_LABEL = "io.pouch.image.size"
PLATFORM = "linux/amd64"  # what this daemon runs


def _dangling_only(filters: dict[str, list[str]]) -> bool | None:
    """The `dangling` filter of an image list: None without it. As dockerd, true wins
    and a value neither true nor false is refused. Errors: invalid."""
    values = filters.get("dangling")
    if not values:
        return None
    if "true" in values or "false" in values:
        return "true" in values
    raise invalid(f"Invalid filter 'dangling=[{' '.join(values)}]'")


# Architectures by the names Go gives them, as platforms are written.
_GO_ARCH = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
            "armel": "arm"}


def check_platform(name: str, platform: str, config: dict[str, Any]) -> None:
    """Errors: invalid (not a platform), not_found (the image is of another one)."""
    parts = platform.lower().split("/")
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise invalid(f'"{platform}": unknown operating system or architecture: invalid '
                      "argument")
    wanted = [parts[0], *(_GO_ARCH.get(p, p) for p in parts[1:2]), *parts[2:]]
    actual = [str(config.get("os") or "linux"),
              _GO_ARCH.get(str(config.get("architecture") or ""),
                           str(config.get("architecture") or "")),
              str(config.get("variant") or "")]
    if any(w != a for w, a in zip(wanted, actual, strict=False)):
        shown = "/".join(a for a in actual if a)
        raise not_found(f"image with reference {name} was found but does not match the "
                        f"specified platform: wanted {'/'.join(wanted)}, actual: {shown}")


def _registry_config(config: DaemonConfig) -> RegistryConfig:
    """The registry settings as they are now (read at each pull, push or login, so a
    change made at run time applies to the next one)."""
    config = settings.current(config)
    return RegistryConfig(insecure=config.insecure_registries, mirrors=config.registry_mirrors,
                          hosts_dir=config.registry_config_path, proxy=config.image_proxy,
                          bundle_dir=config.exec_root_dir / "ca")


# Docker's container config as dockerd shows an image's: every field, those the image's
# config leaves out (an OCI config holds only what it sets) at their zero values.
_CONFIG_ZERO: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
    "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
    "OnBuild": None, "Labels": None}


class ImageActor(ActorBase):
    service = "image"

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self._ctrd = Containerd(ctx.config.containerd_socket, lease_owner=self.service)
        self._registry = ctx.config.default_registry
        self._index = ImageIndex(self._registry)
        self._downloads = Downloads()

    def on_start(self) -> None:
        self._ctrd.wait_ready(30)
        self._ctrd.namespaces.ensure()
        for lease in self._ctrd.leases.drop_stale():
            log.warning("dropped lease %s of an interrupted load", lease)
        self._rebuild()

    def on_stop(self) -> None:
        self._ctrd.close()

    def _rebuild(self) -> None:
        for record in self._ctrd.images.list():
            try:
                manifest = json.loads(self._ctrd.content.read(record.target["digest"]))
                config_digest = manifest["config"]["digest"]
                image = self._index.get(config_digest)
                if image is not None:
                    config, parent = image.config, image.parent
                else:
                    config = json.loads(self._ctrd.content.read(config_digest))
                    info = self._ctrd.content.info(config_digest)
                    parent = info.labels.get(PARENT_LABEL, "") if info else ""
                self._index.add(config_digest, config, image_rootfs_chain(config),
                                int(record.labels.get(SIZE_LABEL, "0") or 0),
                                [] if is_untagged_name(record.name) else [record.name], parent)
            except (PouchError, ValueError, KeyError) as exc:
                log.warning("skipping image %s: %s", record.name, exc)

    # -- the contract --------------------------------------------------------

    @method(idempotent=True, returns=ImagesLoaded, errors=("invalid",), timeout=600.0)
    def load(self, path: str, reply: Reply) -> None:
        """Import every image of a docker-save archive at `path`."""
        # A load takes seconds: it runs beside the actor, which keeps answering.
        reply.run_in_thread(self._import_archive, Path(path))

    def _import_archive(self, archive: Path) -> ImagesLoaded:
        if not archive.is_file():
            raise invalid(f"no archive at {archive}")
        names_out: list[str] = []
        untagged: list[str] = []
        for saved in read_archive(archive):
            names = [reference.parse(tag, self._registry).full() for tag in saved.repo_tags]
            imported = import_image(self._ctrd, archive, saved, names, SNAPSHOTTER)
            self.ctx.faults.hit("image.load.unpacked")
            self._label_size(imported)
            self.actor_ref.proxy().record_loaded(imported, json.loads(saved.config)).get()
            if names:
                names_out += [reference.familiar_name(n, self._registry) for n in names]
            else:
                untagged.append(imported.id)
        return {"names": names_out, "untagged": untagged}

    @method(idempotent=True, stream=True, returns=PullProgress, timeout=None,
            errors=("invalid", "not_found", "unavailable"))
    def pull(self, reply: Reply, image: str, tag: str = "", platform: str = "",
             auth: str = "") -> None:
        """Pull an image from its registry (`tag` may be a digest), in Docker's progress
        messages. `auth`: the client's X-Registry-Auth header. Errors before the first
        message: the reference or the registry's; later ones end the stream."""
        ref = reference.parse(f"{image}@{tag}" if tag.startswith("sha256:") else
                              f"{image}:{tag}" if tag else image, self._registry)
        credentials = Credentials.from_header(auth) if auth else None
        reply.run_in_thread(self._pull, reply, ref, platform or PLATFORM, credentials)

    def _pull(self, reply: Reply, ref: reference.Reference, platform: str,
              credentials: Credentials | None) -> PullProgress | None:
        registry = Registry(_registry_config(self.ctx.config), ref, credentials)
        try:
            resolved = registry.resolve(platform)
            # A name by tag also gets the digest it resolved to, as Docker's RepoDigests.
            digest = resolved.index_digest or resolved.digest
            names = [ref.full()] if ref.digest else [
                ref.full(), f"{ref.name}@{digest}"]
            current = self._ctrd.images.get(names[0])
            pull = Pull(self._ctrd, registry, self._downloads, Progress(reply.more), SNAPSHOTTER)
            pull.say({"status": f"Pulling from {ref.repository}",
                      "id": ref.tag or ref.digest or ""})
            pulled = pull.run(resolved, names, current.target["digest"] if current else None)
        except Cancelled:
            return None
        finally:
            registry.close()
        imported = ImportedImage(pulled.id, resolved.digest, pulled.chain_id, pulled.size, names)
        self._label_size(imported)
        wanted = ref.familiar(self._registry)
        self.actor_ref.proxy().record_loaded(
            imported, pulled.config, "pull", wanted,
            reference.familiar_name(ref.name, self._registry)).get()
        # The image stays stored if a plugin fails: the pull answers with its error.
        plugins.loaded().post_pull(plugins.ImagePulled(
            reference=ref.full(), id=pulled.id, digest=pulled.digest, snapshotter=SNAPSHOTTER,
            config=pulled.config))
        reply.more({"status": f"Digest: {pulled.digest}"})
        return {"status": f"Status: Downloaded newer image for {wanted}" if pulled.fresh
                else f"Status: Image is up to date for {wanted}"}

    def _label_size(self, imported: ImportedImage) -> None:
        # Kept on the names, so a restarted actor knows it without walking snapshots.
        for name in imported.names:
            record = self._ctrd.images.get(name)
            if record is not None:
                self._ctrd.images.update(name, record.target,
                                         {**record.labels, SIZE_LABEL: str(imported.size)})

    @method(idempotent=True, stream=True, returns=PullProgress, timeout=None,
            errors=("invalid", "not_found", "unavailable"))
    def push(self, reply: Reply, name: str, tag: str = "", auth: str = "") -> None:
        """Push `name:tag` to its registry (every tag of the repository if `tag` is empty),
        in Docker's progress messages. `auth`: the client's X-Registry-Auth header."""
        repository = reference.parse(name, self._registry, default_tag=None)
        if repository.tag or repository.digest:
            raise invalid(f"push takes a repository and a tag apart, not {name!r}")
        tags = [name for _, name in self._index.tagged(repository.name)
                if not tag or name == f"{repository.name}:{tag}"]
        if not tags:
            raise not_found(f"An image does not exist locally with the tag: "
                            f"{reference.familiar_name(repository.name, self._registry)}"
                            + (f":{tag}" if tag else ""))
        # Layers may be mounted from the image's other repositories on that registry.
        mount_from = {name: self._index.mountable_from(image, repository)
                      for image, name in self._index.tagged(repository.name) if name in tags}
        credentials = Credentials.from_header(auth) if auth else None
        reply.run_in_thread(self._push, reply, repository, tags, mount_from, credentials)

    def _push(self, reply: Reply, repository: reference.Reference, tags: builtins.list[str],
              mount_from: dict[str, builtins.list[str]],
              credentials: Credentials | None) -> PullProgress | None:
        registry = Registry(_registry_config(self.ctx.config), repository, credentials)
        try:
            say = Progress(reply.more)
            say({"status": f"The push refers to repository [{repository.name}]"})
            last: PullProgress | None = None
            for name in tags:
                if last is not None:
                    say(last)
                record = self._ctrd.images.get(name)
                if record is None:
                    raise not_found(f"No such image: {name}")
                target = record.target
                digest = Push(self._ctrd, registry, say).run(
                    target, name.rpartition(":")[2], mount_from[name])
                last = pushed_message(name.rpartition(":")[2], digest, target["size"])
                self.publish("image", "push", reference.familiar_name(name, self._registry),
                             {"name": reference.familiar_name(repository.name, self._registry)})
            return last
        except Cancelled:
            return None
        finally:
            registry.close()

    @method(idempotent=True, returns=AuthStatus, errors=("invalid", "unavailable"))
    def login(self, reply: Reply, serveraddress: str = "", username: str = "",
              password: str = "", identitytoken: str = "") -> None:
        """Check credentials against a registry (default: Docker Hub), as `docker login`."""
        registry = serveraddress.split("://", 1)[-1].split("/", 1)[0] or self._registry
        if registry in ("index.docker.io", "registry-1.docker.io"):
            registry = "docker.io"
        credentials = Credentials(username, password, identitytoken)
        reply.run_in_thread(self._login, registry, credentials)

    def _login(self, registry: str, credentials: Credentials) -> AuthStatus:
        return {"Status": login(_registry_config(self.ctx.config), registry, credentials),
                "IdentityToken": ""}

    @method(idempotent=False, returns=str, errors=("invalid",), timeout=600.0)
    def import_rootfs(self, reply: Reply, path: str, repo: str = "", tag: str = "",
                      changes: builtins.list[str] | None = None, message: str = "") -> None:
        """Make a one-layer image of the root file system tarball at `path` (docker
        import), named `repo:tag` if given, with Dockerfile `changes`; its ID."""
        names = [reference.parse(f"{repo}:{tag}" if tag else repo, self._registry).full()] \
            if repo else []
        apply_changes(changes or [], {})  # refused at once, before the archive is read
        reply.run_in_thread(self._import_rootfs, Path(path), changes or [], message, names)

    def _import_rootfs(self, path: Path, changes: builtins.list[str], message: str,
                       names: builtins.list[str]) -> str:
        if not path.is_file():
            raise invalid(f"no archive at {path}")
        imported, config = import_rootfs(self._ctrd, path, changes, message, names)
        self._label_size(imported)
        self.actor_ref.proxy().record_loaded(imported, config, "import").get()
        return imported.id

    @method(idempotent=False, returns=CommitResult, timeout=600.0,
            errors=("not_found", "invalid", "conflict"))
    def commit(self, reply: Reply, container: str, repo: str = "", tag: str = "",
               comment: str = "", author: str = "", changes: builtins.list[str] | None = None,
               pause: bool = True, config: dict[str, Any] | None = None) -> None:
        """Make an image of a container's changes on its image (docker commit), named
        `repo:tag` if given: its config is the container's, fields of `config` over it,
        then the Dockerfile `changes`; frozen meanwhile if `pause`."""
        names = [reference.parse(f"{repo}:{tag}" if tag else repo, self._registry).full()] \
            if repo else []
        # As dockerd names it in the events: without the default tag if none was given.
        image_ref = reference.parse(f"{repo}:{tag}" if tag else repo, self._registry,
                                    default_tag=None).familiar(self._registry) if repo else ""
        apply_changes(changes or [], {})  # refused at once, before anything is stored
        reply.run_in_thread(self._commit, container, names, image_ref, comment, author,
                            changes or [], pause, config or {})

    def _commit(self, container: str, names: builtins.list[str], image_ref: str, comment: str,
                author: str, changes: builtins.list[str], pause: bool,
                overrides: dict[str, Any]) -> CommitResult:
        with self._ctrd.leases.hold() as lease:
            layer = self.ctx.calls.container.commit_layer(id=container, lease=lease,
                                                          pause=pause)
            base = self._base(layer["image"])
            held = layer["config"]
            config = apply_changes(changes, {**held, **{
                key: value for key, value in overrides.items() if value not in (None, "", [], {})}})
            committed = self.ctx.calls.container.inspect(id=container)
            step = Step(config, " ".join(held.get("Cmd") or []), comment, author,
                        committed["Id"], held)
            imported, image_config = make_image(
                self._ctrd, lease, base, {"media_type": layer["media_type"],
                                          "digest": layer["digest"], "size": layer["size"]},
                step, names)
            self._label_size(imported)
        # As dockerd: an image event for the name only, the commit is the container's.
        self.actor_ref.proxy().record_loaded(imported, image_config, "tag" if names else "",
                                             called=image_ref).get()
        self.publish("container", "commit", committed["Id"], {
            "comment": comment, "imageID": imported.id, "imageRef": image_ref,
            **(held.get("Labels") or {}),
            **({"image": held["Image"]} if held.get("Image") else {}),
            "name": str(committed.get("Name", "")).lstrip("/")})
        return {"Id": imported.id}

    def _base(self, image_id: str) -> Base:
        """An image to build on, by ID ("" or "scratch": none)."""
        if image_id in ("", "scratch"):
            return Base.scratch()
        image = self._index.find(image_id)
        manifest = json.loads(self._ctrd.content.read(self._target(image)["digest"]))
        return Base(image.config, list(manifest.get("layers") or []), image.id)

    @method(idempotent=False, returns=str, timeout=600.0, errors=("not_found", "invalid"))
    def build_step(self, reply: Reply, base: str, config: dict[str, Any], created_by: str,
                   container: str = "", layer: str = "") -> None:
        """An untagged image of a build step on image `base` ("": scratch) with the
        container config `config` and one more layer: `container`'s changes, or the
        uncompressed tar in the spool file `layer` (in the daemon's tmp folder: COPY's
        files); with neither, none (its history entry an empty layer). Its ID."""
        spool = Path(layer) if layer else None
        if spool is not None and (spool.parent != self.ctx.config.home_dir / "tmp"
                                  or spool.is_symlink() or not spool.is_file()):
            raise invalid(f"not a spool file of this daemon: {layer}")
        reply.run_in_thread(self._build_step, base, config, created_by, container, spool)

    def _build_step(self, base: str, config: dict[str, Any], created_by: str,
                    container: str, spool: Path | None) -> str:
        with self._ctrd.leases.hold() as lease:
            layer: Descriptor | None = None
            if container:
                found = self.ctx.calls.container.commit_layer(id=container, lease=lease,
                                                              pause=False)
                layer = {"media_type": found["media_type"], "digest": found["digest"],
                         "size": found["size"]}
            elif spool is not None:
                layer = store_layer(self._ctrd, spool, lease)
            imported, image_config = make_image(
                self._ctrd, lease, self._base(base), layer,
                Step(config, created_by, container=container), [])
            self._label_size(imported)
        self.actor_ref.proxy().record_loaded(imported, image_config, "build").get()
        return imported.id

    def record_loaded(self, imported: ImportedImage, config: dict[str, Any],
                      action: str = "load", about: str = "", called: str = "") -> None:
        """Add a freshly imported or pulled image to the index (on the actor's thread),
        and publish `action` (none if "") as dockerd does: about the image ID unless
        `about` names a reference, with the attribute name `called` (default: what it is
        about)."""
        self._index.add(imported.id, config, imported.chain_id, imported.size, imported.names,
                        imported.parent)
        if action:
            about = about or imported.id
            self.publish("image", action, about, {"name": called or about})

    @method(idempotent=True, errors=("invalid",))
    def list(self, all: bool = False,
             filters: dict[str, list[str]] | None = None) -> builtins.list[ImageSummary]:
        """Image summaries, as GET /images/json shows them; with a `reference` filter, each
        with only its names that match (and only images with such a name)."""
        filters = check_filters(filters, ("reference", "label", "dangling", "before", "since"))
        dangling = _dangling_only(filters)
        try:
            patterns = [match_regex(p) for p in filters.get("reference", [])]
        except PatternError as exc:
            raise invalid(str(exc)) from None
        # before/since name images: those made earlier (later) than every one named.
        bounds = {key: [self._index.find(name).created
                        for name in filters.get(key, [])] for key in ("before", "since")}
        result: builtins.list[ImageSummary] = []
        # As dockerd: an untagged image another was built on shows with `all` only, and
        # never as dangling.
        hidden = set() if all and not dangling else parents(
            {image.id: image.config for image in self._index})
        for image in self._index:
            names = {n for n in image.names if self._reference_matches(n, patterns)} \
                if "reference" in filters else image.names
            if not names:
                if "reference" in filters or dangling is False or image.id in hidden:
                    continue
            elif dangling and any("@" not in n for n in names):
                continue
            created = image.created
            if not labels_match(filters.get("label", []), image.labels) \
                    or any(created >= t for t in bounds["before"]) \
                    or any(created <= t for t in bounds["since"]):
                continue
            result.append(self._summary(image, names))
        result.sort(key=lambda summary: int(summary["Created"]), reverse=True)
        return result

    def _reference_matches(self, name: str, patterns: builtins.list[re.Pattern[str]]) -> bool:
        """Whether a pattern of the `reference` filter matches a full name, as dockerd's
        FamiliarMatch: Go's path.Match, against the familiar name with its tag or digest,
        or else against the familiar repository."""
        familiar = self._index.familiar(name)
        repository = self._index.familiar(self._index.repository(name))
        return any(p.fullmatch(familiar) or p.fullmatch(repository) for p in patterns)

    def _summary(self, image: Image, names: Iterable[str] | None = None) -> ImageSummary:
        """An image as GET /images/json shows it, with `names` (default: all its own)."""
        shown = image.names if names is None else names
        tags = sorted(self._index.familiar(n) for n in shown if "@" not in n)
        digests = sorted(self._index.familiar(n) for n in shown if "@" in n)
        return {
            "Id": image.id, "ParentId": image.parent,
            "RepoTags": tags or ["<none>:<none>"],
            "RepoDigests": digests or ([] if tags else ["<none>@<none>"]),
            "Created": image.created,
            "Size": image.size, "VirtualSize": image.size, "SharedSize": -1,
            "Labels": image.labels,
            "Containers": -1,
        }

    @method(idempotent=True, returns=ImagesUsage, timeout=120.0)
    def disk_usage(self, reply: Reply) -> None:
        """Every image with SharedSize (the bytes of its layers that other images have
        too), and LayersSize (every layer's bytes, once), as docker system df counts them."""
        images = [(self._summary(image), chain_ids(diff_ids(image.config)))
                  for image in self._index]
        reply.run_in_thread(self._disk_usage, images)

    def _disk_usage(self, images: builtins.list[tuple[ImageSummary, builtins.list[str]]]
                    ) -> ImagesUsage:
        users = collections.Counter(layer for _, chain in images for layer in set(chain))
        sizes: dict[str, int] = {}
        for layer in users:
            try:
                sizes[layer] = self._ctrd.snapshots.usage(layer)[0]
            except PouchError as exc:  # removed meanwhile
                log.info("usage of layer %s: %s", layer, exc.message)
                sizes[layer] = 0
        for summary, chain in images:  # summaries made for this call: filled in here
            summary["SharedSize"] = sum(sizes[layer] for layer in set(chain)
                                        if users[layer] > 1)
        summaries = sorted((summary for summary, _ in images),
                           key=lambda summary: summary["Created"], reverse=True)
        return {"LayersSize": sum(sizes.values()), "Images": summaries}

    @method(idempotent=True, errors=("not_found", "invalid"))
    def inspect(self, name: str) -> ImageInspect:
        """One image, as GET /images/{name}/json shows it."""
        image = self._index.find(name)
        config = image.config
        return {
            "Id": image.id, "RepoTags": image.tags(self._registry),
            "RepoDigests": image.digests(self._registry),
            "Parent": image.parent, "Comment": config.get("comment", ""),
            "Created": config.get("created", ""), "Container": config.get("container", ""),
            "ContainerConfig": {**_CONFIG_ZERO, **(config.get("container_config") or {})},
            "DockerVersion": config.get("docker_version", ""),
            "Author": config.get("author", ""),
            "Config": {**_CONFIG_ZERO, **(config.get("config") or {})},
            "Architecture": config.get("architecture", ""), "Os": config.get("os", ""),
            "Size": image.size, "VirtualSize": image.size,
            "GraphDriver": {"Name": SNAPSHOTTER, "Data": None},
            "RootFS": {"Type": "layers",
                       "Layers": list((config.get("rootfs") or {}).get("diff_ids") or [])},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        }

    @method(idempotent=True, returns=None, errors=("not_found", "invalid"))
    def tag(self, reply: Reply, name: str, repo: str, tag: str = "") -> None:
        """Name an image `repo:tag` too (`tag` defaults to latest)."""
        image = self._index.find(name)
        new = reference.parse(f"{repo}:{tag}" if tag else repo, self._registry)
        if new.digest:
            raise invalid("refusing to create a tag with a digest reference")
        reply.run_in_thread(self._tag, image, new.full())

    @method(idempotent=True, errors=("invalid",))
    def check_tags(self, names: builtins.list[str]) -> None:
        """Refuse, in dockerd's words, a name no image could be tagged with ("" is no
        name): a build checks its tags before it starts, as dockerd's does."""
        for name in names:
            if name and reference.parse(name, self._registry).digest:
                raise invalid("build tag cannot contain a digest")

    def _tag(self, image: Image, name: str) -> None:
        target = self._target(image)
        self._ctrd.images.put(name, target)
        imported = ImportedImage(image.id, target["digest"], image.chain_id, image.size, [name])
        self._label_size(imported)
        with contextlib.suppress(PouchError):  # it had a name already
            self._ctrd.images.delete(untagged_name(image.id))
        self.actor_ref.proxy().record_loaded(
            imported, image.config, "tag", called=reference.familiar_name(name, self._registry)
        ).get()

    def _target(self, image: Image) -> Descriptor:
        """The manifest an image's names point at, as containerd holds it."""
        for name in [*sorted(image.names), untagged_name(image.id)]:
            record = self._ctrd.images.get(name)
            if record is not None:
                return record.target
        raise not_found(f"No such image: {image.id}")

    @method(idempotent=False, returns=builtins.list[ImageDeleted],
            errors=("not_found", "conflict", "invalid"))
    def remove(self, reply: Reply, name: str, force: bool = False,
               noprune: bool = False) -> None:
        """Drop a name of an image; the image itself with its last name (or when named by
        ID). Errors: conflict while a container uses it, or for an ID with more than one
        tag or names in several repositories, unless `force` (never while a container
        runs it). An image that goes takes its untagged parents (the build steps it was
        made of) that nothing else uses with it, unless `noprune`."""
        image = self._index.find(name)
        try:
            named = reference.parse(name, self._registry).full()
        except PouchError:
            named = ""
        if named not in image.names:
            named = ""  # by ID
        reply.run_in_thread(self._remove, image, named, force, not noprune)

    def _remove(self, image: Image, named: str, force: bool,
                prune_parents: bool = False) -> builtins.list[ImageDeleted]:
        short = image.id.removeprefix("sha256:")[:12]
        dropped = self._index.dropped_with(image, named) if named else set(image.names)
        # By ID, dockerd drops without force only a single tag (with its digests).
        several = not named and bool(image.names) and not self._index.single_reference(image)
        # An image others were made on (committed, built) stays while they do: by name
        # its name goes, by ID it is refused, as dockerd keeps its image graph whole.
        has_children = any(other.parent == image.id for other in self._index)
        if dropped == image.names:  # the image goes with its last name
            user = self._container_using(image.id)
            cid, running = user or ("", False)
            if has_children and not named:
                raise conflict(f"conflict: unable to delete {short} (cannot be forced) - "
                               "image has dependent child images")
            if running and not named:
                raise conflict(f"conflict: unable to delete {short} (cannot be forced) - "
                               f"image is being used by running container {cid[:12]}")
            if several and not force:
                raise conflict(f"conflict: unable to delete {short} (must be forced) - image "
                               "is referenced in multiple repositories")
            if user is not None and not force:
                raise conflict(
                    "conflict: unable to remove repository reference "
                    f'"{reference.familiar_name(named, self._registry)}" (must '
                    f"force) - container {cid[:12]} is using its referenced image {short}"
                    if named else f"conflict: unable to delete {short} (must be forced) - "
                    f"image is being used by stopped container {cid[:12]}")
        deleted = dropped == image.names and not has_children and (
            not named or self._container_using(image.id) is None)
        if not deleted and dropped == image.names:
            # Kept for the container or the images made on it: by its ID, untagged.
            self._ctrd.images.put(untagged_name(image.id), self._target(image))
        elif deleted:
            with contextlib.suppress(PouchError):
                self._ctrd.images.delete(untagged_name(image.id))
        gone: set[str] = set()
        try:
            for name in sorted(dropped):
                try:
                    self._ctrd.images.delete(name)
                except PouchError as exc:
                    if exc.code != "not_found":
                        raise
                gone.add(name)
        finally:
            # What containerd dropped leaves the index too, even if the rest failed.
            self.actor_ref.proxy().forget(image.id, gone, deleted and gone == dropped).get()
        answer: builtins.list[ImageDeleted] = [
            {"Untagged": reference.familiar_name(n, self._registry)} for n in sorted(dropped)]
        if not deleted:
            return answer
        return answer + [{"Deleted": image.id}] + (
            self._prune_parents(image) if prune_parents else [])

    def _prune_parents(self, image: Image) -> builtins.list[ImageDeleted]:
        """The untagged images `image` was made on (its history less its last steps),
        deleted in turn while no other image was made on them and no container uses
        them, as dockerd prunes a removed image's parents."""
        answer: builtins.list[ImageDeleted] = []
        history = builtins.list(image.config.get("history") or [])
        while len(history) > 1:
            history = history[:-1]
            images = {i.id: i for i in self._index}
            parent = next((i for i in images.values() if not i.names
                           and i.config.get("history") == history), None)
            if parent is None:
                continue
            if parent.id in parents({i.id: i.config for i in images.values()}) \
                    or self._container_using(parent.id) is not None:
                break
            try:
                answer += self._remove(parent, "", force=False)
            except PouchError as exc:
                log.info("kept the parent %s: %s", parent.id, exc.message)
                break
        return answer

    def _container_using(self, image_id: str) -> tuple[str, bool] | None:
        """A container made from the image (running ones first): (its ID, running)."""
        users = self.ctx.calls.container.list(all=True, filters={"ancestor": [image_id]})
        users.sort(key=lambda c: c["State"] != "running")
        return (users[0]["Id"], users[0]["State"] == "running") if users else None

    def forget(self, image_id: str, names: set[str], deleted: bool) -> None:
        """Drop names (and the image, if `deleted`) from the index (on the actor's thread)."""
        self._index.drop(image_id, names, deleted)
        for name in names:
            self.publish("image", "untag", image_id,
                         {"name": reference.familiar_name(name, self._registry)})
        if deleted:
            self.publish("image", "delete", image_id, {"name": image_id})

    @method(idempotent=False, returns=ImagesPruned, errors=("invalid",))
    def prune(self, reply: Reply, filters: dict[str, builtins.list[str]] | None = None) -> None:
        """Delete the images no container uses: only untagged ones unless `dangling=false`;
        filters `until` and `label` narrow it."""
        filters = check_filters(filters, ("dangling", "until", "label"))
        dangling = filters.get("dangling", ["true"])
        if any(value not in ("true", "false", "1", "0") for value in dangling):
            raise invalid(f"invalid filter 'dangling={dangling[0]}'")
        only_dangling = dangling[-1] in ("true", "1")
        try:
            until = [parse_timestamp(value) for value in filters.get("until", [])]
        except ValueError as exc:
            raise invalid(f"invalid filter 'until': {exc}") from None
        # An untagged image another was built on is not dangling (dockerd keeps it).
        bases = parents({image.id: image.config for image in self._index})
        candidates = [image for image in self._index
                      if (not only_dangling or not (image.names or image.id in bases))
                      and all(image.created < t for t in until)
                      and labels_match(filters.get("label", []), image.labels)]
        reply.run_in_thread(self._prune, candidates)

    def _prune(self, candidates: builtins.list[Image]) -> ImagesPruned:
        used = {c["ImageID"] for c in self.ctx.calls.container.list(all=True)}
        sizes = {image.id: image.size for image in self._index}
        deleted: builtins.list[ImageDeleted] = []
        for image in candidates:
            if image.id in used or {"Deleted": image.id} in deleted:
                continue
            try:
                # With the untagged images it was made on, as dockerd's prune (they were
                # kept for it: see `parents`).
                deleted += self._remove(image, "", force=True, prune_parents=True)
            except PouchError as exc:  # made a container's meanwhile, say: kept
                log.info("prune kept %s: %s", image.id, exc.message)
        reclaimed = sum(sizes.get(d.get("Deleted", ""), 0) for d in deleted)
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    @method(idempotent=True, returns=builtins.list[ImageHistoryItem],
            errors=("not_found", "invalid"))
    def history(self, reply: Reply, name: str) -> None:
        """An image's layers and how each was made, newest first."""
        reply.run_in_thread(self._history, self._index.find(name))

    def _history(self, image: Image) -> builtins.list[ImageHistoryItem]:
        config = image.config
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        sizes = [self._ctrd.snapshots.usage(chain, snapshotter=SNAPSHOTTER)[0]
                 for chain in chain_ids(diff_ids)]
        steps = config.get("history") or [{"created": config.get("created", "")}
                                         for _ in diff_ids]
        rows: builtins.list[ImageHistoryItem] = []
        for step in steps:
            size = 0 if step.get("empty_layer") or not sizes else sizes.pop(0)
            rows.append({"Id": "<missing>", "Created": unix_time(step.get("created")),
                         "CreatedBy": step.get("created_by", ""), "Tags": None,
                         "Size": size, "Comment": step.get("comment", "")})
        rows.reverse()
        # As dockerd: the rows from the top are the image, its parent, the parent's
        # parent... while the chain is known; one row each.
        made_on: Image | None = image
        for row in rows:
            if made_on is None:
                break
            row["Id"] = made_on.id
            row["Tags"] = made_on.tags(self._registry) or None
            made_on = self._index.get(made_on.parent) if made_on.parent else None
        return rows

    @method(idempotent=True, returns=None, errors=("not_found", "invalid"), timeout=600.0)
    def save(self, reply: Reply, names: builtins.list[str], path: str) -> None:
        """Write the named images to the file at `path` as one docker-save archive."""
        chosen: dict[str, tuple[Image, builtins.list[str]]] = {}  # by ID, in the order asked
        for name in names:
            for image, tag in self._to_save(name):
                _, tags = chosen.setdefault(image.id, (image, []))
                if tag and tag not in tags:
                    tags.append(tag)
        # Every name is known before a byte is written; the writing takes a while.
        reply.run_in_thread(self._save, builtins.list(chosen.values()), Path(path))

    def _to_save(self, name: str) -> builtins.list[tuple[Image, str]]:
        """The images `name` stands for in a save, each with the full name to record
        ("" for none). As dockerd: a repository without a tag stands for all its tags;
        an ID or a digest records no name. Errors: not_found, invalid."""
        try:
            ref: reference.Reference | None = reference.parse(name, self._registry,
                                                              default_tag=None)
        except PouchError:
            ref = None
        if ref is not None and ref.tag is None and ref.digest is None:
            tagged = self._index.tagged(ref.name)
            if tagged:
                return tagged
        image = self._index.find(name)
        if ref is None or ref.digest:
            return [(image, "")]
        full = reference.parse(name, self._registry).full()
        return [(image, full if full in image.names else "")]

    def _save(self, chosen: builtins.list[tuple[Image, builtins.list[str]]], path: Path) -> None:
        images = [ImageToSave(image.id, self._target(image),
                              [reference.familiar_name(tag, self._registry) for tag in tags])
                  for image, tags in chosen]
        # Opened, never created: a caller that gave up has removed its file, and one made
        # anew here would be left for nobody to remove.
        with path.open("r+b") as out:
            out.truncate()
            write_archive(self._ctrd, images, out)

    @method(idempotent=True, errors=("not_found", "invalid"))
    def resolve(self, name: str, platform: str = "") -> ResolvedImage:
        """What a container needs of its image: ID, config, top snapshot. With a
        `platform` (os[/arch[/variant]]), an image of another one is not found, as
        dockerd's create says (the docker CLI then pulls the one asked for)."""
        image = self._index.find(name)
        if platform:
            check_platform(name, platform, image.config)
        try:
            full = reference.parse(name, self._registry).full()
        except PouchError:
            full = image.id
        return {"id": image.id, "name": full if full in image.names else image.id,
                "config": image.config.get("config") or {}, "chain_id": image.chain_id,
                "snapshotter": SNAPSHOTTER}

    @method(idempotent=True, timeout=2.0)
    def count(self) -> int:
        """How many images there are."""
        return len(self._index)
