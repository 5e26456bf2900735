"""Offline test images: a busybox image in `docker save` format, built from
Debian's busybox-static, since no machine here reaches a registry.

    python -m pouch.tests.images OUT.tar [--tag busybox:latest]

prints the image ID. The output is deterministic: the same busybox binary,
tag and extra files always give the same image ID.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import posixpath
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

BUSYBOX = Path("/bin/busybox")
INSTALL_HINT = "apt-get install busybox-static"
# A fixed moment, so that archives and IDs do not depend on when they were built.
CREATED = "2024-01-01T00:00:00Z"
MTIME = 1704067200
# The pause image's command: pid 1 of a pod, reaping what is orphaned to it (wait), at
# rest (sleep), and gone at once on SIGTERM.
PAUSE_CMD = ["sh", "-c", 'trap "exit 0" TERM; while :; do sleep 3600 & wait; done']
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "nobody:x:65534:65534:nobody:/home:/bin/false\n"
)
GROUP = "root:x:0:\ndaemon:x:1:\ntty:x:5:\nwheel:x:10:root\nusers:x:100:\nnogroup:x:65534:\n"
# Directories every container expects, even when empty; mode per path.
EMPTY_DIRS = {
    "tmp": 0o1777,
    "root": 0o700,
    "home": 0o755,
    "var": 0o755,
    "proc": 0o555,
    "sys": 0o555,
    "dev": 0o755,
    "etc": 0o755,
    "usr/bin": 0o755,
    "sbin": 0o755,
    "usr/sbin": 0o755,
}

# Debian architecture names -> Go's (GOARCH, variant), which image configs use.
DEBIAN_TO_GO = {
    "amd64": ("amd64", ""),
    "arm64": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v5"),
    "i386": ("386", ""),
    "ppc64el": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "mips64el": ("mips64le", ""),
    "riscv64": ("riscv64", ""),
    "loong64": ("loong64", ""),
}
MACHINE_TO_DEBIAN = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf", "i686": "i386"}


class BusyboxMissing(RuntimeError):
    pass


def build_busybox_tarball(
    out: Path, tag: str = "busybox:latest", extra_files: dict[str, bytes] | None = None,
    cmd: list[str] | None = None,
) -> str:
    """Write a docker-save archive of busybox to `out`; return its image ID.

    An empty `tag` makes an untagged image. `extra_files` (path -> content)
    are added to the layer, so tests can make images that differ; `cmd` replaces
    the image's command (["sh"]).
    """
    layer = _layer_tar(_read_busybox(), extra_files or {})
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = _canonical_json(_image_config(diff_id, cmd or ["sh"]))
    config_hex = hashlib.sha256(config).hexdigest()
    legacy = {"config": config_hex, "diff_id": diff_id}
    layer_id = hashlib.sha256(_canonical_json(legacy)).hexdigest()

    repo_tags = [_with_tag(tag)] if tag else None
    manifest = [
        {"Config": f"{config_hex}.json", "RepoTags": repo_tags, "Layers": [f"{layer_id}/layer.tar"]}
    ]
    files: dict[str, bytes] = {
        f"{config_hex}.json": config,
        f"{layer_id}/VERSION": b"1.0",
        f"{layer_id}/json": _canonical_json(_legacy_layer_json(layer_id)),
        f"{layer_id}/layer.tar": layer,
        "manifest.json": _canonical_json(manifest),
    }
    if repo_tags:
        repo, _, version = repo_tags[0].rpartition(":")
        files["repositories"] = _canonical_json({repo: {version: layer_id}})

    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_dir(tar, layer_id, 0o755)
        for name in sorted(files):
            _add_file(tar, name, files[name], 0o644)
    return "sha256:" + config_hex


def go_architecture() -> tuple[str, str]:
    """This machine's (architecture, variant) as image configs spell them."""
    debian = ""
    if shutil.which("dpkg"):
        debian = subprocess.run(
            ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
        ).stdout.strip()
    if not debian:
        debian = MACHINE_TO_DEBIAN.get(platform.machine(), platform.machine())
    return DEBIAN_TO_GO.get(debian, (debian, ""))


def _read_busybox() -> bytes:
    if not BUSYBOX.is_file():
        raise BusyboxMissing(f"{BUSYBOX} is missing: run `{INSTALL_HINT}` to build test images")
    return BUSYBOX.read_bytes()


def _applets() -> list[str]:
    listing = subprocess.run(
        [str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=True
    ).stdout
    return [line.strip("/") for line in listing.splitlines() if line.strip("/")]


def _layer_tar(busybox: bytes, extra_files: dict[str, bytes]) -> bytes:
    files: dict[str, tuple[bytes, int]] = {
        "bin/busybox": (busybox, 0o755),
        "etc/passwd": (PASSWD.encode(), 0o644),
        "etc/group": (GROUP.encode(), 0o644),
    }
    for name, content in extra_files.items():
        files[name.strip("/")] = (content, 0o644)
    links = {applet: "/bin/busybox" for applet in _applets() if applet not in files}

    dirs = dict(EMPTY_DIRS)
    for path in [*files, *links]:
        parent = posixpath.dirname(path)
        while parent and parent not in dirs:
            dirs[parent] = 0o755
            parent = posixpath.dirname(parent)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        # A parent's name is a prefix of its children's, so sorting puts it first.
        for name in sorted([*dirs, *files, *links]):
            if name in dirs:
                _add_dir(tar, name, dirs[name])
            elif name in files:
                _add_file(tar, name, *files[name])
            else:
                _add_symlink(tar, name, links[name])
    return buf.getvalue()


def _image_config(diff_id: str, cmd: list[str]) -> dict[str, Any]:
    arch, variant = go_architecture()
    config: dict[str, Any] = {
        "architecture": arch,
        "os": "linux",
        "created": CREATED,
        "config": {"Env": [PATH_ENV], "Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [
            {"created": CREATED, "created_by": "pouch tests: /bin/busybox from busybox-static"}
        ],
    }
    if variant:
        config["variant"] = variant
    return config


def _legacy_layer_json(layer_id: str) -> dict[str, Any]:
    arch, _ = go_architecture()
    return {
        "id": layer_id,
        "created": CREATED,
        "os": "linux",
        "architecture": arch,
        "config": {"Env": [PATH_ENV], "Cmd": ["sh"]},
    }


def _with_tag(tag: str) -> str:
    # A ':' after the last '/' is a tag; one before it is a registry port.
    return tag if ":" in tag.rpartition("/")[2] else f"{tag}:latest"


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _entry(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _add_dir(tar: tarfile.TarFile, name: str, mode: int) -> None:
    tar.addfile(_entry(name, tarfile.DIRTYPE, mode))


def _add_file(tar: tarfile.TarFile, name: str, content: bytes, mode: int) -> None:
    info = _entry(name, tarfile.REGTYPE, mode)
    info.size = len(content)
    tar.addfile(info, io.BytesIO(content))


def _add_symlink(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = _entry(name, tarfile.SYMTYPE, 0o777)
    info.linkname = target
    tar.addfile(info)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pouch.tests.images",
        description="Build an offline busybox image tarball in docker-save format.",
    )
    parser.add_argument("out", type=Path, help="where to write the archive")
    parser.add_argument("--tag", default="busybox:latest", help="repository:tag to record")
    parser.add_argument("--pause", action="store_true",
                        help="a pods' pause image: it sleeps, reaps zombies, exits on SIGTERM")
    args = parser.parse_args(argv)
    try:
        image_id = build_busybox_tarball(args.out, tag=args.tag,
                                         cmd=PAUSE_CMD if args.pause else None)
    except BusyboxMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(image_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
