"""The meta store's folders (pouch.actors.container.meta): a removal's, and a restore's."""

from __future__ import annotations

from pathlib import Path

from pouch.actors.container.meta import MetaStore
from pouch.tests.support.wait import wait_for

CID = "a" * 64
GONE_WITHIN = 5.0


def test_a_removed_folder_leaves_its_place_at_once_and_its_files_are_deleted(tmp_path: Path):
    store = MetaStore(tmp_path / "containers")
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
