"""`docker tag`, `docker rmi`, `docker history` and `docker image prune` with the real
CLI, each on a pouchd of its own (they change the images other tests use)."""

from __future__ import annotations

from pouch.tests.support.daemon import PouchDaemon


def image_id(pouchd: PouchDaemon, name: str) -> str:
    return pouchd.docker("image", "inspect", "--format", "{{.Id}}", name)


def test_a_tag_is_a_second_name_and_rmi_of_it_drops_only_that_name(pouchd: PouchDaemon):
    pouchd.docker("tag", "busybox", "mybox:v1")
    assert image_id(pouchd, "mybox:v1") == image_id(pouchd, "busybox")
    assert pouchd.docker("run", "--rm", "mybox:v1", "echo", "tagged") == "tagged"

    assert pouchd.docker("rmi", "mybox:v1") == "Untagged: mybox:v1"
    assert pouchd.docker("images", "--format", "{{.Repository}}:{{.Tag}}") == "busybox:latest"
    refused = pouchd.docker_result("tag", "busybox", "mybox@sha256:" + "a" * 64)
    assert refused.returncode != 0


def test_rmi_of_the_last_name_deletes_the_image(pouchd: PouchDaemon):
    full_id = image_id(pouchd, "busybox")
    assert pouchd.docker("rmi", "busybox").splitlines() == [
        "Untagged: busybox:latest", f"Deleted: {full_id}"]
    assert pouchd.docker("images", "-q") == ""
    missing = pouchd.docker_result("rmi", "busybox")
    assert missing.returncode == 1 and "No such image: busybox" in missing.stderr


def test_an_image_a_container_uses_is_kept_unless_forced(pouchd: PouchDaemon):
    full_id = image_id(pouchd, "busybox")
    cid = pouchd.docker("create", "busybox", "echo", "still here")

    refused = pouchd.docker_result("rmi", "busybox")
    assert refused.returncode == 1
    assert f"container {cid[:12]} is using its referenced image" in refused.stderr
    by_id = pouchd.docker_result("rmi", full_id)
    assert by_id.returncode == 1 and "image is being used by stopped container" in by_id.stderr

    assert pouchd.docker("rmi", "-f", "busybox") == "Untagged: busybox:latest"
    # The container keeps its image, now untagged, and still runs.
    assert pouchd.docker("images", "-q", "--no-trunc") == full_id
    assert pouchd.docker("start", "-a", cid) == "still here"


def test_an_id_with_names_in_two_repositories_needs_force(pouchd: PouchDaemon):
    full_id = image_id(pouchd, "busybox")
    pouchd.docker("tag", "busybox", "other/box:v1")
    refused = pouchd.docker_result("rmi", full_id[len("sha256:"):][:12])
    assert refused.returncode == 1 and "referenced in multiple repositories" in refused.stderr

    removed = pouchd.docker("rmi", "-f", full_id).splitlines()
    assert sorted(removed) == sorted(["Untagged: busybox:latest", "Untagged: other/box:v1",
                                      f"Deleted: {full_id}"])


def test_a_stopped_containers_image_is_kept_unless_forced(pouchd: PouchDaemon):
    cid = pouchd.docker("create", "busybox", "true")
    refused = pouchd.docker_result("rmi", "busybox")
    assert refused.returncode == 1
    assert ('conflict: unable to remove repository reference "busybox:latest" (must force) - '
            f"container {cid[:12]} is using its referenced image") in refused.stderr
    pouchd.docker("rm", cid)


def test_a_running_container_keeps_its_image_even_forced(pouchd: PouchDaemon):
    full_id = image_id(pouchd, "busybox")
    pouchd.docker("run", "-d", "--name", "runner", "busybox", "sleep", "60")
    refused = pouchd.docker_result("rmi", "-f", full_id)
    assert refused.returncode == 1
    assert "(cannot be forced) - image is being used by running container" in refused.stderr
    pouchd.docker("rm", "-f", "runner")


def test_history_lists_the_layers_newest_first(pouchd: PouchDaemon):
    rows = pouchd.docker("history", "--no-trunc", "--format", "{{.ID}} {{.Size}}",
                         "busybox").splitlines()
    assert rows and rows[0].split()[0] == image_id(pouchd, "busybox")
    assert all(r.split()[0] == "<missing>" for r in rows[1:])
    assert any(r.split()[1] != "0B" for r in rows)


def test_prune_deletes_untagged_images_and_with_all_every_unused_one(pouchd: PouchDaemon):
    full_id = image_id(pouchd, "busybox")
    assert pouchd.docker("image", "prune", "-f") == "Total reclaimed space: 0B"
    cid = pouchd.docker("create", "busybox", "true")

    kept = pouchd.docker("image", "prune", "-a", "-f")
    assert "Deleted" not in kept  # its container uses it
    pouchd.docker("rm", cid)
    pruned = pouchd.docker("image", "prune", "-a", "-f").splitlines()
    assert "untagged: busybox:latest" in pruned and f"deleted: {full_id}" in pruned
    assert pruned[-1].startswith("Total reclaimed space: ") and pruned[-1] != (
        "Total reclaimed space: 0B")
    assert pouchd.docker("images", "-aq") == ""



def test_an_id_with_two_tags_in_one_repository_needs_force(pouchd: PouchDaemon):
    full_id = image_id(pouchd, "busybox")
    short = full_id.removeprefix("sha256:")[:12]
    pouchd.docker("tag", "busybox", "busybox:2b")
    refused = pouchd.docker_result("rmi", short)
    assert refused.returncode == 1
    assert (f"conflict: unable to delete {short} (must be forced) - image is referenced in "
            "multiple repositories") in refused.stderr
    assert sorted(pouchd.docker("images", "--format", "{{.Repository}}:{{.Tag}}")
                  .splitlines()) == ["busybox:2b", "busybox:latest"]

    # One tag left: by its ID, the image goes without force.
    assert pouchd.docker("rmi", "busybox:2b") == "Untagged: busybox:2b"
    assert pouchd.docker("rmi", short).splitlines() == [
        "Untagged: busybox:latest", f"Deleted: {full_id}"]


def test_a_reference_filter_shows_only_the_names_it_matches(pouchd: PouchDaemon):
    pouchd.docker("tag", "busybox", "bb:v2")
    pouchd.docker("tag", "busybox", "other/bb:v1")

    def names(*args: str) -> list[str]:
        return sorted(pouchd.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                                    *args).splitlines())

    assert names() == ["bb:v2", "busybox:latest", "other/bb:v1"]
    assert names("busybox") == ["busybox:latest"]
    assert names("--filter", "reference=bb") == ["bb:v2"]
    assert names("--filter", "reference=*/bb") == ["other/bb:v1"]
    assert names("--filter", "reference=*:v*") == ["bb:v2"]  # `*` stops at a slash
    assert names("--filter", "reference=busybox:latest") == ["busybox:latest"]
    assert names("--filter", "reference=bb", "--filter", "reference=*/bb") == [
        "bb:v2", "other/bb:v1"]
    assert names("--filter", "reference=nothing*") == []
    rows = pouchd.docker("image", "ls", "--format", "{{json .}}", "busybox").splitlines()
    assert len(rows) == 1


def test_a_dangling_filter_is_true_or_false(pouchd: PouchDaemon):
    refused = pouchd.docker_result("image", "ls", "--filter", "dangling=bogus")
    assert refused.returncode == 1 and "Invalid filter 'dangling=[bogus]'" in refused.stderr
    assert pouchd.docker("image", "ls", "-q", "--filter", "dangling=true") == ""
    assert pouchd.docker("image", "ls", "--format", "{{.Repository}}",
                         "--filter", "dangling=false") == "busybox"
