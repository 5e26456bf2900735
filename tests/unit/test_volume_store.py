"""The volumes on disk: made whole or not at all, found again, taken away by a rename;
and the mountinfo reading the actor trusts."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pouch.actors.mountpoints import mount_points, mounted_under
from pouch.actors.volume.actor import created_at
from pouch.actors.volume.store import DATA, META, Record, Store, remove_tree, tree_size


def test_a_volume_is_made_with_its_metadata_and_found_again(tmp_path: Path):
    store = Store(tmp_path / "volumes")
    assert store.load() == ({}, [])
    record = Record(name="data", options={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"},
                    labels={"a": "1"}, anonymous="c" * 64, destination="/d",
                    users={"c" * 64: 1700000000.5})
    store.create(record)
    assert record.created > 0
    assert (tmp_path / "volumes" / "data" / DATA).is_dir()
    assert oct((tmp_path / "volumes" / "data" / DATA).stat().st_mode & 0o777) == "0o755"
    record.active["e" * 64] = 1700000001.0
    store.save(record)

    found, trash = Store(tmp_path / "volumes").load()
    assert trash == [] and found == {"data": record}
    assert found["data"].in_use and found["data"].holders() == ["c" * 64, "e" * 64]


def test_half_made_and_foreign_folders(tmp_path: Path):
    root = tmp_path / "volumes"
    (root / ".new-0123").mkdir(parents=True)  # a create cut short
    (root / "handmade" / DATA).mkdir(parents=True)  # no volume.json: a plain volume
    (root / "junk").mkdir()  # no _data: not a volume
    (root / "broken" / DATA).mkdir(parents=True)
    (root / "broken" / META).write_text("{not json")
    found, trash = Store(root).load()
    assert sorted(found) == ["broken", "handmade"]
    assert found["handmade"].options is None and not found["handmade"].in_use
    assert not (root / ".new-0123").exists()
    assert trash == []


def test_removal_is_a_rename_then_a_deletion_finished_at_the_next_start(tmp_path: Path):
    store = Store(tmp_path / "volumes")
    store.load()
    store.create(Record(name="gone"))
    (store.data("gone") / "sub").mkdir()
    (store.data("gone") / "sub" / "f").write_bytes(b"x" * 100)
    os.link(store.data("gone") / "sub" / "f", store.data("gone") / "hard")
    (store.data("gone") / "link").symlink_to("/etc/passwd")
    trashed = store.trash("gone")
    assert not store.folder("gone").exists()
    assert tree_size(trashed / DATA) == 100  # a hard link counted once, symlinks not
    found, trash = store.load()  # as if the actor died before deleting
    assert found == {} and trash == [trashed]
    remove_tree(trashed)
    assert not trashed.exists()
    assert Path("/etc/passwd").exists()


def test_records_round_trip_through_json():
    record = Record(name="x", labels=None, options=None, users={"b": 2.0, "a": 1.0})
    data = json.loads(json.dumps(record.to_json()))
    assert data["Users"] == {"a": 1.0, "b": 2.0}
    assert Record.from_json("x", data) == record
    assert Record.from_json("x", {"Users": ["a"]}).users == {"a": 0.0}


def test_mountinfo_is_read_with_its_escapes(tmp_path: Path):
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/root rw\n"
        "40 22 0:40 / /var/lib/pouch/volumes/a\\040b/_data rw - tmpfs tmpfs rw,size=1024k\n"
        "41 22 0:41 / /var/lib/pouch/volumes/ab/_data rw - tmpfs tmpfs rw\n")
    assert mount_points(info)[1:] == [Path("/var/lib/pouch/volumes/a b/_data"),
                                      Path("/var/lib/pouch/volumes/ab/_data")]
    assert Path("/") in mount_points()
    assert Path("/proc") in mounted_under(Path("/proc"))
    assert mounted_under(Path("/pro")) == []  # a folder, not a prefix of the name


def test_created_at_is_rfc3339_to_the_second():
    text = created_at(1_700_000_000.7)
    assert text.startswith("2023-11-") and "." not in text
    assert text.endswith("Z") or text[-6] in "+-"
