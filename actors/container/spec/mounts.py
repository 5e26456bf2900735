"""A container's own mounts: binds, volumes and tmpfs, planned as dockerd 20.10 plans them.

Pure logic: the create body (``HostConfig.Binds``, ``HostConfig.Mounts``,
``Config.Volumes``), the image's ``Volumes`` and the mounts of the containers named
by ``HostConfig.VolumesFrom`` (resolved by the caller) go in; a list of
:class:`Planned` mounts comes out, one per destination, or an error worded as
dockerd words it (its volume/mounts linux parser and registerMountPoints).

The volume of a planned mount is a name (empty: an anonymous volume, named when the
volume actor makes it); its ``source`` becomes the host path once the volume is
acquired. Whether a `--mount` bind source exists is asked of ``exists`` (the host,
unless a test gives another).

- :func:`plan`: the mounts of a create request;
- :func:`parse_bind`, :func:`parse_mount`, :func:`parse_volumes_from`: one entry each;
- :func:`inspect_mounts`: inspect's ``Mounts`` as dockerd shows them;
- :func:`bind_mount`: the OCI mount of a bind or a volume (tmpfs stays with
  ``oci``'s own tmpfs handling).
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pouch.proto.envelope import PouchError, invalid, not_found

__all__ = [
    "LOCAL_DRIVER", "Planned", "bind_mount", "check_driver", "check_volume_name",
    "from_records", "inherited", "inspect_mounts", "parse_bind", "parse_mount",
    "parse_volumes_from", "plan", "records", "rootfs_propagation", "tmpfs_data", "valid_mode",
]  # fmt: skip

LOCAL_DRIVER = "local"
DEFAULT_PROPAGATION = "rprivate"
PROPAGATIONS = frozenset(("private", "rprivate", "shared", "rshared", "slave", "rslave"))
_RW_MODES = frozenset(("rw", "ro"))
_LABEL_MODES = frozenset(("z", "Z"))
_COPY_MODES = frozenset(("nocopy",))
_CONSISTENCY_MODES = frozenset(("consistent", "cached", "delegated"))
# dockerd's local driver's rule for volume names.
_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_MOUNT_KEYS = frozenset((
    "Type", "Source", "Target", "ReadOnly", "Consistency", "BindOptions", "VolumeOptions",
    "TmpfsOptions"))  # fmt: skip


@dataclass(frozen=True)
class Planned:
    """One mount of a container. `source`: a bind's host path, a volume's host path
    once acquired (empty before); `name`: a volume's name (empty: anonymous, until the
    volume actor names it)."""

    type: str  # bind | volume | tmpfs
    destination: str
    source: str = ""
    name: str = ""
    driver: str = ""
    rw: bool = True
    mode: str = ""  # as inspect shows it: the -v mode, "z" for a local volume
    propagation: str = ""
    recursive: bool = True  # BindOptions.NonRecursive turns it off
    nocopy: bool = False  # a new volume does not get the image's files
    labels: dict[str, str] = field(default_factory=dict)
    driver_opts: dict[str, str] = field(default_factory=dict)
    tmpfs_options: str = ""  # tmpfs: "ro,mode=1777,size=64m"
    make_source: bool = False  # -v: a missing host folder is made at start, as dockerd

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def of(cls, value: Mapping[str, Any]) -> Planned:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in known})


def records(mounts: Iterable[Planned]) -> list[dict[str, Any]]:
    """The mounts as a container's record keeps them."""
    return [m.as_dict() for m in mounts]


def from_records(values: Iterable[Mapping[str, Any]] | None) -> list[Planned]:
    return [Planned.of(v) for v in values or ()]


# -- modes (dockerd's linux parser) --------------------------------------------


def _options(mode: str) -> list[str]:
    return mode.split(",") if mode else []


def valid_mode(mode: str) -> bool:
    """At most one of each kind: rw/ro, z/Z, a propagation, nocopy, a consistency."""
    counts: dict[str, int] = {}
    for option in _options(mode):
        for kind, modes in (("rw", _RW_MODES), ("label", _LABEL_MODES), ("prop", PROPAGATIONS),
                            ("copy", _COPY_MODES), ("consistency", _CONSISTENCY_MODES)):
            if option in modes:
                counts[kind] = counts.get(kind, 0) + 1
                break
        else:
            return False
    return all(n <= 1 for n in counts.values())


def _read_write(mode: str) -> bool:
    return "ro" not in _options(mode)


def _propagation(mode: str) -> str:
    return next((o for o in _options(mode) if o in PROPAGATIONS), "")


# -- errors ------------------------------------------------------------------


def _spec_error(raw: str) -> PouchError:
    return invalid(f"invalid volume specification: '{raw}'")


def _mount_error(kind: str, why: str) -> PouchError:
    return invalid(f'invalid mount config for type "{kind}": {why}')


def _duplicate(destination: str) -> PouchError:
    return invalid(f"Duplicate mount point: {destination}")


def _check_target(kind: str, target: str) -> str:
    """The cleaned destination. Errors: invalid, as dockerd's validateMountConfig."""
    if not target:
        raise _mount_error(kind, "field Target must not be empty")
    if posixpath.normpath(target) in ("/", "//"):
        raise _mount_error(kind, "invalid specification: destination can't be '/'")
    if not target.startswith("/"):
        raise _mount_error(kind, f"invalid mount path: '{target}' mount path must be absolute")
    return _clean(target)


def _clean(path: str) -> str:
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if path.startswith("/") else cleaned


def check_volume_name(name: str) -> None:
    """dockerd's local driver's name rule, checked before any volume is made."""
    if not _VOLUME_NAME.fullmatch(name):
        raise invalid(
            f'create {name}: "{name}" includes invalid characters for a local volume name, '
            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path")


def check_driver(driver: str) -> str:
    """Only the local driver is here; the name a volume's record keeps."""
    if driver in ("", LOCAL_DRIVER):
        return LOCAL_DRIVER
    raise not_found(f'error looking up volume plugin {driver}: plugin "{driver}" not found')


# -- HostConfig.Binds ----------------------------------------------------------


def parse_bind(raw: str, volume_driver: str = "") -> Planned:
    """One `-v` entry: "[src:]dst[:mode]"; an absolute src is a host path (made at start
    if missing, as dockerd does for -v), any other a volume name. Errors: invalid."""
    if not isinstance(raw, str):
        raise invalid("invalid HostConfig.Binds: must be a list of strings")
    if raw.count(":") > 2:
        raise _spec_error(raw)
    parts = raw.split(":", 2)
    if not parts[0]:
        raise _spec_error(raw)
    source, mode = "", ""
    if len(parts) == 1:
        target = parts[0]
    elif len(parts) == 2:
        if valid_mode(parts[1]):  # "/dst:ro": a volume cannot take a mode
            raise _spec_error(raw)
        source, target = parts
    else:
        source, target, mode = parts
    if not valid_mode(mode):
        raise invalid(f"invalid mode: {mode}")
    kind = "bind" if source.startswith("/") else "volume"
    propagation = _propagation(mode)
    try:
        destination = _check_target(kind, target)
        if kind == "bind":
            return Planned(type="bind", destination=destination, source=_clean(source),
                           rw=_read_write(mode), mode=mode,
                           propagation=propagation or DEFAULT_PROPAGATION, make_source=True)
        if propagation:
            raise _mount_error(kind, "field BindOptions must not be specified")
    except PouchError as exc:
        raise invalid(f"invalid volume specification: '{raw}': {exc.message}") from None
    driver = check_driver(volume_driver)
    if source:
        check_volume_name(source)
    # A local volume from -v shows "z" when no mode was given (dockerd's setBindModeIfNull).
    return Planned(type="volume", destination=destination, name=source, driver=driver,
                   rw=_read_write(mode), mode=mode or "z", nocopy="nocopy" in _options(mode))


# -- HostConfig.Mounts -------------------------------------------------------------


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"invalid HostConfig.Mounts: {what} must be an object")
    return value


def _string_map(value: Any, what: str) -> dict[str, str]:
    mapping = _object(value, what)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise invalid(f"invalid HostConfig.Mounts: {what} must map strings to strings")
    return dict(mapping)


def parse_mount(spec: Any, exists: Callable[[str], bool] = os.path.exists) -> Planned:
    """One `--mount` entry (the API's Mount object). Errors: invalid; not_found for a
    volume driver other than local."""
    if not isinstance(spec, dict):
        raise invalid("invalid HostConfig.Mounts: each mount must be an object")
    unknown = sorted(set(spec) - _MOUNT_KEYS)
    if unknown:
        raise invalid(f"invalid HostConfig.Mounts: unknown field {unknown[0]}")
    kind = spec.get("Type") or ""
    source = spec.get("Source") or ""
    target = spec.get("Target") or ""
    readonly = spec.get("ReadOnly") or False
    if not isinstance(kind, str) or not isinstance(source, str) or not isinstance(target, str):
        raise invalid("invalid HostConfig.Mounts: Type, Source and Target must be strings")
    if not isinstance(readonly, bool):
        raise invalid("invalid HostConfig.Mounts: ReadOnly must be true or false")
    bind_opts = spec.get("BindOptions")
    volume_opts = spec.get("VolumeOptions")
    tmpfs_opts = spec.get("TmpfsOptions")
    destination = _check_target(kind, target)
    if kind == "bind":
        return _bind_mount(source, destination, readonly, bind_opts, volume_opts, exists)
    if kind == "volume":
        if bind_opts is not None:
            raise _mount_error(kind, "field BindOptions must not be specified")
        if not source and readonly:
            raise _mount_error(kind, "must not set ReadOnly mode when using anonymous volumes")
        options = _object(volume_opts, "VolumeOptions")
        driver_config = _object(options.get("DriverConfig"), "VolumeOptions.DriverConfig")
        driver_name = driver_config.get("Name") or ""
        if not isinstance(driver_name, str):
            raise invalid("invalid HostConfig.Mounts: VolumeOptions.DriverConfig.Name must be "
                          "a string")
        nocopy = options.get("NoCopy") or False
        if not isinstance(nocopy, bool):
            raise invalid("invalid HostConfig.Mounts: VolumeOptions.NoCopy must be true or false")
        driver = check_driver(driver_name)
        if source:
            check_volume_name(source)
        return Planned(
            type="volume", destination=destination, name=source, driver=driver,
            rw=not readonly, mode="z", nocopy=nocopy,
            labels=_string_map(options.get("Labels"), "VolumeOptions.Labels"),
            driver_opts=_string_map(driver_config.get("Options"),
                                    "VolumeOptions.DriverConfig.Options"))
    if kind == "tmpfs":
        if bind_opts is not None:
            raise _mount_error(kind, "field BindOptions must not be specified")
        if source:
            raise _mount_error(kind, "field Source must not be specified")
        return Planned(type="tmpfs", destination=destination,
                       rw=not readonly, tmpfs_options=tmpfs_data(tmpfs_opts, readonly))
    raise _mount_error(kind, "mount type unknown")


def _bind_mount(source: str, destination: str, readonly: bool, bind_opts: Any,
                volume_opts: Any, exists: Callable[[str], bool]) -> Planned:
    if not source:
        raise _mount_error("bind", "field Source must not be empty")
    options = _object(bind_opts, "BindOptions")
    propagation = options.get("Propagation") or ""
    if propagation and propagation not in PROPAGATIONS:
        raise _mount_error("bind", f"invalid propagation mode: {propagation}")
    if volume_opts is not None:
        raise _mount_error("bind", "field VolumeOptions must not be specified")
    if not source.startswith("/"):
        raise _mount_error("bind", f"invalid mount path: '{source}' mount path must be absolute")
    if not exists(source):
        raise _mount_error("bind", f"bind source path does not exist: {source}")
    return Planned(type="bind", destination=destination, source=_clean(source),
                   rw=not readonly, propagation=propagation or DEFAULT_PROPAGATION,
                   recursive=not options.get("NonRecursive"))


def tmpfs_data(options: Any, readonly: bool) -> str:
    """The tmpfs mount data of TmpfsOptions, as dockerd's ConvertTmpfsOptions writes it
    (the size with the largest unit that divides it)."""
    opts = _object(options, "TmpfsOptions")
    size, mode = opts.get("SizeBytes") or 0, opts.get("Mode") or 0
    for key, value in (("SizeBytes", size), ("Mode", mode)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _mount_error("tmpfs", f"TmpfsOptions.{key} must be a non-negative integer")
    data = ["ro"] if readonly else []
    if mode:
        data.append(f"mode={mode:o}")
    if size:
        suffix = ""
        for unit, divisor in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
            if size % divisor == 0:
                size, suffix = size // divisor, unit
                break
        data.append(f"size={size}{suffix}")
    return ",".join(data)


# -- HostConfig.VolumesFrom ---------------------------------------------------------


def parse_volumes_from(spec: Any) -> tuple[str, str]:
    """"container[:ro|rw]" -> (container, mode). Errors: invalid."""
    if not isinstance(spec, str):
        raise invalid("invalid HostConfig.VolumesFrom: must be a list of strings")
    if not spec:
        raise invalid("volumes-from specification cannot be an empty string")
    ref, sep, mode = spec.partition(":")
    if not sep:
        return ref, "rw"
    if not valid_mode(mode) or _propagation(mode) or "nocopy" in _options(mode):
        raise invalid(f"invalid mode: {mode}")
    return ref, mode


def inherited(mounts: Iterable[Planned], mode: str) -> list[Planned]:
    """Another container's mounts as `--volumes-from` gives them: read-only if either
    says so; a volume's files are never copied again (dockerd's copy of a MountPoint)."""
    return [dataclasses.replace(m, rw=m.rw and _read_write(mode), mode="", nocopy=True,
                                make_source=False)
            for m in mounts]


# -- a create request's mounts --------------------------------------------------------


def _volume_keys(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, dict):
        raise invalid(f"invalid {what}: must be a map of paths to empty objects")
    return [k for k in value if isinstance(k, str)]


def plan(config: Mapping[str, Any], host_config: Mapping[str, Any],
         image_volumes: Any = None,
         volumes_from: Sequence[tuple[str, Sequence[Planned]]] = (),
         exists: Callable[[str], bool] = os.path.exists) -> list[Planned]:
    """Every mount of a new container, in dockerd's order of precedence: the mounts of
    `volumes_from` ((mode, that container's mounts) each), then Binds, then Mounts, each
    replacing what an earlier step put at its destination (two of Binds and Mounts at
    one place are an error), then an anonymous volume for each of Config.Volumes and the
    image's Volumes nothing covers yet (nor HostConfig.Tmpfs). Errors: invalid (as
    dockerd words them); not_found: a volume driver other than local."""
    volume_driver = host_config.get("VolumeDriver") or ""
    if not isinstance(volume_driver, str):
        raise invalid("invalid HostConfig.VolumeDriver: must be a string")
    tmpfs = host_config.get("Tmpfs") or {}
    tmpfs_targets = {_clean(t) for t in tmpfs if isinstance(t, str)} if isinstance(
        tmpfs, dict) else set()
    planned: dict[str, Planned] = {}
    for mode, mounts in volumes_from:
        for mount in inherited(mounts, mode):
            planned[mount.destination] = mount
    explicit: set[str] = set()
    binds = host_config.get("Binds") or []
    if not isinstance(binds, list):
        raise invalid("invalid HostConfig.Binds: must be a list of strings")
    for raw in binds:
        mount = parse_bind(raw, volume_driver)
        if mount.destination in explicit or mount.destination in tmpfs_targets:
            raise _duplicate(mount.destination)
        explicit.add(mount.destination)
        planned[mount.destination] = mount
    specs = host_config.get("Mounts") or []
    if not isinstance(specs, list):
        raise invalid("invalid HostConfig.Mounts: must be a list of objects")
    for spec in specs:
        mount = parse_mount(spec, exists)
        if mount.destination in explicit or mount.destination in tmpfs_targets:
            raise _duplicate(mount.destination)
        explicit.add(mount.destination)
        planned[mount.destination] = mount
    anonymous = _volume_keys(image_volumes, "the image's Volumes")
    anonymous += _volume_keys(config.get("Volumes"), "Config.Volumes")
    for target in anonymous:
        try:
            destination = _check_target("volume", target)
        except PouchError as exc:
            raise invalid(f"invalid Config.Volumes: {exc.message}") from None
        if destination in planned or destination in tmpfs_targets:
            continue  # not an error: it may well come from the image
        planned[destination] = Planned(type="volume", destination=destination,
                                       driver=check_driver(volume_driver))
    return list(planned.values())


# -- what inspect shows, what runc mounts -------------------------------------------


def inspect_mounts(mounts: Iterable[Planned]) -> list[dict[str, Any]]:
    """inspect's `Mounts` (dockerd's types.MountPoint: Name and Driver only when set)."""
    out = []
    for m in sorted(mounts, key=lambda m: m.destination):
        point: dict[str, Any] = {"Type": m.type}
        if m.name:
            point["Name"] = m.name
        point["Source"] = m.source
        point["Destination"] = m.destination
        if m.driver:
            point["Driver"] = m.driver
        point.update(Mode=m.mode, RW=m.rw, Propagation=m.propagation)
        out.append(point)
    return out


def bind_mount(m: Planned) -> dict[str, Any]:
    """The OCI mount of a bind or a volume (a bind of its host path)."""
    options = ["rbind" if m.recursive else "bind"]
    if not m.rw:
        options.append("ro")
    if m.propagation:
        options.append(m.propagation)
    return {"destination": m.destination, "type": "bind", "source": m.source,
            "options": options}


def rootfs_propagation(mounts: Iterable[Planned]) -> str:
    """The root's propagation a bind's own needs (dockerd: a shared bind makes the root
    shared, a slave one rslave); "" when none asks."""
    wanted = {m.propagation for m in mounts if m.type == "bind"}
    if wanted & {"shared", "rshared"}:
        return "shared"
    if wanted & {"slave", "rslave"}:
        return "rslave"
    return ""
