"""`docker import` of a root file system tarball (plain or gzip'd) with `--change`, and
what it refuses, with the real CLI on a pouchd of the test's own."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from pouch.tests.faults.checks import list_leases
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.registry import layer

BUSYBOX = Path("/bin/busybox")


def rootfs(tmp_path: Path, compressed: bool) -> Path:
    data = layer({"bin/sh": BUSYBOX.read_bytes(), "bin/cat": BUSYBOX.read_bytes(),
                  "etc/greeting": b"imported\n"}, executable=("bin/sh", "bin/cat"))
    path = tmp_path / ("rootfs.tar.gz" if compressed else "rootfs.tar")
    path.write_bytes(data if compressed else gzip.decompress(data))
    return path


def test_docker_import_makes_an_image_that_runs_with_its_changes(pouchd: PouchDaemon,
                                                                   tmp_path: Path):
    image_id = pouchd.docker("import", "--change", 'CMD ["/bin/cat", "/etc/greeting"]',
                             "--change", "ENV GREETING=hello", "--change", "WORKDIR /etc",
                             "--message", "from a tarball", str(rootfs(tmp_path, False)),
                             "imported:v1")
    assert image_id.startswith("sha256:")

    assert pouchd.docker("run", "--rm", "imported:v1") == "imported"
    config = json.loads(pouchd.docker("image", "inspect", "--format", "{{json .Config}}",
                                      "imported:v1"))
    assert "GREETING=hello" in config["Env"] and config["WorkingDir"] == "/etc"
    assert pouchd.docker("history", "--format", "{{.Comment}}",
                         "imported:v1") == "from a tarball"


def test_a_gzipd_tarball_imports_untagged(pouchd: PouchDaemon, tmp_path: Path):
    image_id = pouchd.docker("import", str(rootfs(tmp_path, True)))
    assert pouchd.docker("images", "-q", "--no-trunc", "--filter", "dangling=true") == image_id
    assert pouchd.docker("run", "--rm", image_id, "/bin/cat", "/etc/greeting") == "imported"


def test_what_import_refuses_leaves_nothing(pouchd: PouchDaemon, tmp_path: Path):
    bad_change = pouchd.docker_result("import", "--change", "RUN rm -rf /",
                                      str(rootfs(tmp_path, False)), "refused:v1")
    assert bad_change.returncode == 1 and "is not a valid change command" in bad_change.stderr

    not_a_tar = tmp_path / "notes.txt"
    not_a_tar.write_text("no tar here\n" * 100)
    garbage = pouchd.docker_result("import", str(not_a_tar), "garbage:v1")
    assert garbage.returncode == 1 and "not a tar" in garbage.stderr

    assert pouchd.docker("images", "--format", "{{.Repository}}") == "busybox"
    assert list_leases(pouchd.containerd_socket) == []


def test_the_message_is_the_images_comment(pouchd: PouchDaemon, tmp_path: Path):
    tarball = str(rootfs(tmp_path, False))
    pouchd.docker("import", "-m", "imported msg", tarball, "said:v1")
    assert pouchd.docker("image", "inspect", "-f", "{{.Comment}}", "said:v1") == "imported msg"
    # Without one, dockerd's words for where it came from: the request's body.
    pouchd.docker("import", tarball, "unsaid:v1")
    assert pouchd.docker("image", "inspect", "-f", "{{.Comment}}",
                         "unsaid:v1") == "Imported from -"
    assert pouchd.docker("history", "--format", "{{.Comment}}",
                         "unsaid:v1") == "Imported from -"
