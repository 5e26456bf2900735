"""Reading /etc/passwd out of a container's snapshot layers without mounting them:
overlay's lookup rules (whiteouts, opaque directories) and symlinks kept inside the rootfs."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from pouch.actors.containerd.rootfs import read_rootfs_file
from pouch.proto.envelope import PouchError


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def whiteout(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(0, 0))


@pytest.fixture
def layers(tmp_path: Path) -> dict[str, Any]:
    """An overlay like containerd's: upper (the container's), then two image layers."""
    upper, mid, base = (tmp_path / n for n in ("upper", "l1", "l0"))
    for d in (upper, mid, base, tmp_path / "work"):
        d.mkdir()
    mounts = [
        {
            "type": "overlay",
            "source": "overlay",
            "options": [
                "index=off",
                f"workdir={tmp_path / 'work'}",
                f"upperdir={upper}",
                f"lowerdir={mid}:{base}",
            ],
        }
    ]
    return {"mounts": mounts, "upper": upper, "mid": mid, "base": base, "host": tmp_path}


def test_the_topmost_layer_holding_a_file_wins(layers: dict[str, Any]) -> None:
    write(layers["base"] / "etc/passwd", "root:x:0:0::/root:/bin/sh\n")
    write(layers["mid"] / "etc/passwd", "root:x:0:0::/root:/bin/bash\n")
    write(layers["base"] / "etc/group", "root:x:0:\n")
    assert read_rootfs_file(layers["mounts"], "etc/passwd") == "root:x:0:0::/root:/bin/bash\n"
    assert read_rootfs_file(layers["mounts"], "/etc/group") == "root:x:0:\n"
    write(layers["upper"] / "etc/passwd", "edited\n")
    assert read_rootfs_file(layers["mounts"], "etc/passwd") == "edited\n"


def test_a_whiteout_hides_the_file_of_a_lower_layer(layers: dict[str, Any]) -> None:
    write(layers["base"] / "etc/passwd", "root:x:0:0::/root:/bin/sh\n")
    whiteout(layers["mid"] / "etc/passwd")
    assert read_rootfs_file(layers["mounts"], "etc/passwd") is None


def test_a_whiteout_of_a_directory_hides_everything_under_it(layers: dict[str, Any]) -> None:
    write(layers["base"] / "etc/passwd", "x\n")
    whiteout(layers["upper"] / "etc")
    assert read_rootfs_file(layers["mounts"], "etc/passwd") is None


def test_an_opaque_directory_hides_the_lower_layers_contents(layers: dict[str, Any]) -> None:
    write(layers["base"] / "etc/passwd", "old\n")
    write(layers["mid"] / "etc/group", "new\n")
    os.setxattr(layers["mid"] / "etc", "trusted.overlay.opaque", b"y")
    assert read_rootfs_file(layers["mounts"], "etc/passwd") is None
    assert read_rootfs_file(layers["mounts"], "etc/group") == "new\n"


def test_an_absolute_symlink_resolves_inside_the_rootfs_across_layers(
    layers: dict[str, Any],
) -> None:
    write(layers["base"] / "usr/lib/os-release", "ID=busybox\n")
    (layers["mid"] / "etc").mkdir()
    (layers["mid"] / "etc/os-release").symlink_to("/usr/lib/os-release")
    assert read_rootfs_file(layers["mounts"], "etc/os-release") == "ID=busybox\n"
    (layers["upper"] / "etc").mkdir()
    (layers["upper"] / "etc/passwd").symlink_to("../usr/lib/os-release")
    assert read_rootfs_file(layers["mounts"], "etc/passwd") == "ID=busybox\n"


def test_symlinks_cannot_reach_files_outside_the_rootfs(layers: dict[str, Any]) -> None:
    secret = layers["host"] / "secret"
    write(secret, "host secret\n")
    (layers["upper"] / "etc").mkdir()
    (layers["upper"] / "etc/passwd").symlink_to(secret)
    (layers["upper"] / "etc/group").symlink_to("../../../../../../../" + str(secret))
    (layers["upper"] / "etc/shadow").symlink_to("../../secret")
    (layers["upper"] / "up").symlink_to("..")
    for path in ("etc/passwd", "etc/group", "etc/shadow", "up/secret", "../secret"):
        assert read_rootfs_file(layers["mounts"], path) is None, path
    # The same names inside the rootfs are what the links reach.
    write(layers["base"] / secret.relative_to("/"), "inside\n")
    write(layers["base"] / "secret", "inside too\n")
    assert read_rootfs_file(layers["mounts"], "etc/passwd") == "inside\n"
    assert read_rootfs_file(layers["mounts"], "etc/shadow") == "inside too\n"


def test_a_symlinked_directory_in_a_layer_is_not_followed_out_of_it(
    layers: dict[str, Any],
) -> None:
    outside = layers["host"] / "outside"
    write(outside / "passwd", "host passwd\n")
    layers["upper"].joinpath("etc").symlink_to(outside)
    assert read_rootfs_file(layers["mounts"], "etc/passwd") is None


def test_symlink_loops_and_non_files_read_as_absent(layers: dict[str, Any]) -> None:
    (layers["upper"] / "a").symlink_to("b")
    (layers["upper"] / "b").symlink_to("a")
    (layers["upper"] / "dir").mkdir()
    write(layers["base"] / "file", "f")
    assert read_rootfs_file(layers["mounts"], "a") is None
    assert read_rootfs_file(layers["mounts"], "dir") is None
    assert read_rootfs_file(layers["mounts"], "file/x") is None
    assert read_rootfs_file(layers["mounts"], "missing/passwd") is None


def test_a_bind_mounted_rootfs_is_read_from_its_source(tmp_path: Path) -> None:
    write(tmp_path / "etc/passwd", "root:x:0:0::/root:/bin/sh\n")
    mounts = [{"type": "bind", "source": str(tmp_path), "options": ["rbind", "rw"]}]
    assert read_rootfs_file(mounts, "etc/passwd") == "root:x:0:0::/root:/bin/sh\n"
    assert read_rootfs_file(mounts, "etc/group") is None


def test_a_rootfs_on_a_block_device_cannot_be_read_unmounted() -> None:
    with pytest.raises(PouchError) as e:
        read_rootfs_file([{"type": "ext4", "source": "/dev/dm-3", "options": []}], "etc/passwd")
    assert e.value.code == "internal"
