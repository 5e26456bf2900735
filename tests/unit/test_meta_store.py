"""The meta store's folders (pouch.actors.container.meta): a removal's, and a restore's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pouch.actors.container import meta
from pouch.actors.container.meta import MetaStore
from pouch.tests.support.wait import wait_for

CID = "a" * 64
GONE_WITHIN = 5.0


def test_a_removed_folder_leaves_its_place_at_once_and_its_files_are_deleted(tmp_path: Path):
    store = MetaStore(tmp_path / "containers")
    store.make_folder(CID)
    store.create(CID, "box", "none")()
    (store.folder(CID) / "json.log").write_bytes(b"x" * 100_000)

    store.remove(CID)

    assert not store.folder(CID).exists()
    assert store.ids() == set()
    wait_for(lambda: not any((tmp_path / "removed-folders").iterdir()), GONE_WITHIN,
             "the removed folder's files deleted")


def test_a_restore_deletes_what_a_cut_removal_left(tmp_path: Path):
    left = tmp_path / "removed-folders" / CID
    left.mkdir(parents=True)
    (left / "json.log").write_text("{}\n")

    records, interrupted = MetaStore(tmp_path / "containers").load_all()

    assert records == [] and interrupted == []
    wait_for(lambda: not (tmp_path / "removed-folders").exists(), GONE_WITHIN,
             "the cut removal's folder deleted")


def record(store: MetaStore) -> dict[str, Any]:
    return {"Name": "/box", "State": {"ExitCode": 3}, "Config": {"Tty": True},
            "LogPath": str(store.folder(CID) / "json.log")}


def test_a_buried_container_s_log_is_kept_beside_its_tomb_for_a_while(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """For a stream cut by an actor's death and taken up after the removal."""
    store = MetaStore(tmp_path / "containers")
    store.make_folder(CID)
    store.create(CID, "box", "none")()
    for name in ("json.log", "json.log.1", "json.log.2"):
        (store.folder(CID) / name).write_text(name)

    tomb = store.bury(CID, record(store))
    store.remove(CID)

    kept = Path(tomb["Log"])
    assert (tomb["ExitCode"], tomb["Tty"]) == (3, True)
    assert [kept.with_name(kept.name + end).read_text() for end in ("", ".1", ".2")] == [
        "json.log", "json.log.1", "json.log.2"]
    assert list(store.tombs()) == [CID]
    assert kept.exists()
    monkeypatch.setattr(meta, "LOG_KEPT", -1.0)  # and later
    assert list(store.tombs()) == [CID]  # the tomb stays longer
    assert not any(tmp_path.glob("removed-containers/*.log*"))


def test_a_log_outside_the_container_s_folder_is_not_moved(tmp_path: Path):
    """A CRI container's: its pod's log directory is the kubelet's."""
    store = MetaStore(tmp_path / "containers")
    store.make_folder(CID)
    store.create(CID, "box", "none")()
    log = tmp_path / "pod" / "box.log"
    log.parent.mkdir()
    log.write_text("line\n")

    tomb = store.bury(CID, {**record(store), "LogPath": str(log)})

    assert tomb["Log"] == "" and log.read_text() == "line\n"
