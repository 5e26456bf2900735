"""docker build with the classic builder (DOCKER_BUILDKIT=0) and docker-py's
images.build against pouchd: steps, layers, history, the cache, multi-stage builds,
build args, and a failing step, as a user runs them."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import docker as docker_py
import pytest

from pouch.tests.faults.checks import list_leases
from pouch.tests.integration.test_image_pull import publish_busybox
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.fileserver import Served, closed_port, serving
from pouch.tests.support.registry import Registry
from pouch.tests.support.tars import tar_of
from pouch.tests.support.unixhttp import UnixConnection
from pouch.tests.support.wait import wait_for


@pytest.fixture(autouse=True)
def classic_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")


def context(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "ctx"
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def build(pouchd: PouchDaemon, folder: Path, *args: str) -> str:
    return pouchd.docker("build", *args, str(folder), timeout=180)


SIMPLE = """\
FROM busybox
RUN echo built > /built && echo to the output
COPY greeting.txt /app/
WORKDIR /app
CMD ["cat", "/app/greeting.txt", "/built"]
"""


def test_a_simple_build_runs_copies_and_tags(pouchd: PouchDaemon, tmp_path: Path):
    folder = context(tmp_path, {"Dockerfile": SIMPLE, "greeting.txt": "hello\n"})
    out = build(pouchd, folder, "-t", "simple:v1", "-t", "simple:other")
    lines = out.splitlines()
    assert "Step 1/5 : FROM busybox" in lines
    assert "Step 2/5 : RUN echo built > /built && echo to the output" in lines
    assert "to the output" in lines
    assert any(line.startswith(" ---> Running in ") for line in lines)
    assert any(line.startswith("Removing intermediate container ") for line in lines)
    assert "Step 5/5 : CMD [\"cat\", \"/app/greeting.txt\", \"/built\"]" in lines
    built = [line for line in lines if line.startswith("Successfully built ")]
    assert built and "Successfully tagged simple:v1" in lines
    assert "Successfully tagged simple:other" in lines

    assert pouchd.docker("run", "--rm", "simple:v1") == "hello\nbuilt"
    assert pouchd.docker("run", "--rm", "simple:other", "pwd") == "/app"
    history = pouchd.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}",
                            "simple:v1").splitlines()
    assert history[0].startswith("/bin/sh -c #(nop)  CMD")
    assert history[1].startswith("/bin/sh -c #(nop)  WORKDIR")
    assert history[2].startswith("/bin/sh -c #(nop) COPY file:")
    assert history[3] == "/bin/sh -c echo built > /built && echo to the output"
    # The steps' images show with -a only, as dockerd's; no step container is left
    # behind, nor any lease.
    shown = pouchd.docker("images", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert sorted(shown) == ["busybox:latest", "simple:other", "simple:v1"]
    assert "<none>:<none>" in pouchd.docker("images", "-a", "--format",
                                            "{{.Repository}}:{{.Tag}}").split()
    assert pouchd.docker("ps", "-aq") == ""
    assert list_leases(pouchd.containerd_socket) == []


def test_a_rebuild_uses_the_cache_and_a_change_invalidates_from_its_step(
        pouchd: PouchDaemon, tmp_path: Path):
    dockerfile = ("FROM busybox\nENV STAGE=one\nRUN echo run > /run.txt\nCOPY a.txt /a.txt\n"
                  "RUN cat /a.txt > /b.txt\nCMD [\"cat\", \"/b.txt\"]\n")
    folder = context(tmp_path, {"Dockerfile": dockerfile, "a.txt": "first\n"})
    first = build(pouchd, folder, "-t", "cached:v1")
    assert "Using cache" not in first
    again = build(pouchd, folder, "-t", "cached:v1")
    assert again.count(" ---> Using cache") == 5  # every step but FROM
    assert _built(first) == _built(again)

    (folder / "a.txt").write_text("second\n")
    changed = build(pouchd, folder, "-t", "cached:v2")
    steps = changed.split("Step ")
    assert "Using cache" in steps[2] and "Using cache" in steps[3]  # ENV, first RUN
    assert all("Using cache" not in step for step in steps[4:])  # from the COPY on
    assert pouchd.docker("run", "--rm", "cached:v2") == "second"
    assert pouchd.docker("run", "--rm", "cached:v1") == "first"

    no_cache = build(pouchd, folder, "--no-cache", "-t", "cached:v3")
    assert "Using cache" not in no_cache


def _built(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("Successfully built"))


def test_the_cache_outlives_a_daemon_restart(pouchd: PouchDaemon, tmp_path: Path):
    folder = context(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo once > /once\n"})
    first = build(pouchd, folder, "-t", "kept:v1")
    assert pouchd.proc is not None
    pouchd.proc.send_signal(signal.SIGTERM)  # stopped as a user stops it: its home stays
    assert pouchd.proc.wait(30) == 0
    pouchd.start()
    again = build(pouchd, folder, "-t", "kept:v1")
    assert again.count(" ---> Using cache") == 1
    assert _built(first) == _built(again)


def test_a_failing_run_shows_its_exit_code_and_leaves_its_container(pouchd: PouchDaemon,
                                                                     tmp_path: Path):
    folder = context(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo before && exit 3\n"})
    result = pouchd.docker_result("build", "-t", "failing:v1", str(folder), timeout=180)
    assert result.returncode == 3, result.stderr
    assert "before" in result.stdout
    assert "The command '/bin/sh -c echo before && exit 3' returned a non-zero code: 3" \
        in result.stderr
    # As dockerd's classic builder: the failed step's container stays (no --force-rm).
    left = pouchd.docker("ps", "-a", "--format", "{{.Command}} {{.Status}}").splitlines()
    assert len(left) == 1, left
    assert pouchd.docker_result("image", "inspect", "failing:v1").returncode != 0

    forced = pouchd.docker_result("build", "--force-rm", str(folder), timeout=180)
    assert forced.returncode == 3
    assert len(pouchd.docker("ps", "-aq").split()) == 1
    assert list_leases(pouchd.containerd_socket) == []


MULTI = """\
ARG BASE=busybox
FROM ${BASE} AS builder
ARG GREETING=hello
RUN mkdir /out && echo "$GREETING from the builder" > /out/greeting
FROM busybox AS tester
RUN echo tested > /tested
FROM busybox
COPY --from=builder /out/greeting /greeting
CMD ["cat", "/greeting"]
"""


def test_multi_stage_with_target_and_build_args(pouchd: PouchDaemon, tmp_path: Path):
    folder = context(tmp_path, {"Dockerfile": MULTI})
    out = build(pouchd, folder, "--build-arg", "GREETING=hi", "-t", "multi:v1")
    assert "Step 1/9 : ARG BASE=busybox" in out and "Step 8/9 : COPY --from=builder" in out
    assert pouchd.docker("run", "--rm", "multi:v1") == "hi from the builder"

    target = build(pouchd, folder, "--target", "tester", "-t", "multi:tester")
    assert "Step 6/6 : RUN echo tested > /tested" in target
    assert pouchd.docker("run", "--rm", "multi:tester", "cat", "/tested") == "tested"

    unused = build(pouchd, folder, "--build-arg", "NOBODY=x")
    assert "[Warning] One or more build-args [NOBODY] were not consumed" in unused

    missing = pouchd.docker_result("build", "--target", "nowhere", str(folder), timeout=60)
    assert missing.returncode != 0
    assert "failed to reach build target nowhere in Dockerfile" in missing.stderr


def test_a_dockerignore_keeps_files_out_and_errors_name_the_line(pouchd: PouchDaemon,
                                                                 tmp_path: Path):
    folder = context(tmp_path, {
        "Dockerfile": "FROM busybox\nCOPY . /ctx/\nRUN ls -a /ctx | sort | tr '\\n' ' '\n",
        ".dockerignore": "secret*\n**/*.log\n!keep.log\n",
        "secret.txt": "no\n", "app.txt": "yes\n", "sub/x.log": "no\n", "keep.log": "yes\n"})
    out = build(pouchd, folder, "-t", "ignored:v1")
    assert pouchd.docker("run", "--rm", "ignored:v1", "ls", "-A", "/ctx", "/ctx/sub").split() \
        == ["/ctx:", ".dockerignore", "Dockerfile", "app.txt", "keep.log", "sub", "/ctx/sub:"]
    assert "Successfully built" in out

    (folder / "Dockerfile").write_text("FROM busybox\nRUN true\nBOGUS thing\n")
    bad = pouchd.docker_result("build", str(folder), timeout=60)
    assert bad.returncode != 0
    assert "dockerfile parse error line 3: unknown instruction: BOGUS" in bad.stderr

    (folder / "Dockerfile").write_text("FROM busybox\nCOPY ../outside /x\n")
    escape = pouchd.docker_result("build", str(folder), timeout=60)
    assert escape.returncode != 0
    assert "forbidden path outside the build context: ../outside" in escape.stderr


def test_docker_py_builds_with_a_dockerfile_outside_the_context(pouchd: PouchDaemon,
                                                                tmp_path: Path):
    folder = context(tmp_path, {"data.txt": "from docker-py\n"})
    outside = tmp_path / "elsewhere.Dockerfile"
    outside.write_text("FROM busybox\nCOPY data.txt /data.txt\nLABEL made=py\n"
                       "CMD [\"cat\", \"/data.txt\"]\n")
    client = docker_py.DockerClient(base_url=pouchd.host, version="1.41", timeout=120)
    try:
        image, logs = client.images.build(path=str(folder), dockerfile=str(outside),
                                          tag="py:v1", labels={"extra": "yes"}, rm=True)
        assert "py:v1" in image.tags
        assert image.labels == {"made": "py", "extra": "yes"}
        assert any("Successfully built" in entry.get("stream", "") for entry in logs)
        assert client.containers.run("py:v1", remove=True) == b"from docker-py\n"

        fileobj = io.BytesIO()
        with tarfile.open(fileobj=fileobj, mode="w:gz") as tar:
            data = b"FROM busybox\nRUN exit 7\n"
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        fileobj.seek(0)
        with pytest.raises(docker_py.errors.BuildError) as failed:
            client.images.build(fileobj=fileobj, custom_context=True, encoding="gzip")
        assert "returned a non-zero code: 7" in str(failed.value)
    finally:
        client.close()


def test_a_dockerfile_from_stdin_builds_with_a_context_folder(pouchd: PouchDaemon,
                                                              tmp_path: Path):
    # `-f -`: the CLI puts the Dockerfile into the context's tar, which it ends unpadded.
    folder = context(tmp_path, {"data.txt": "from the folder\n"})
    out = pouchd.docker("build", "-q", "-t", "stdin:v1", "-f", "-", str(folder),
                        input="FROM busybox\nCOPY data.txt /\nCMD [\"cat\", \"/data.txt\"]\n",
                        timeout=180)
    assert out.startswith("sha256:")
    assert pouchd.docker("run", "--rm", "stdin:v1") == "from the folder"


def test_prune_deletes_a_dangling_build_with_the_steps_it_was_made_on(pouchd: PouchDaemon,
                                                                      tmp_path: Path):
    before = pouchd.docker("images", "-aq", "--no-trunc")
    folder = context(tmp_path, {"Dockerfile": "FROM busybox\nENV STEP=1\nRUN true\n"})
    built = build(pouchd, folder, "-q")  # untagged: dangling
    assert built in pouchd.docker("images", "-aq", "--no-trunc")
    pruned = pouchd.docker("image", "prune", "-f")
    assert f"deleted: {built}" in pruned
    # Its untagged steps too, as dockerd's prune deletes them (one prune, not one per step).
    assert pouchd.docker("images", "-aq", "--no-trunc") == before


def test_history_shows_every_step(pouchd: PouchDaemon, tmp_path: Path):
    folder = context(tmp_path, {"Dockerfile": "FROM busybox\nLABEL a=b\nRUN echo x > /x\n"
                                              "EXPOSE 8080\nUSER nobody\n"})
    build(pouchd, folder, "-t", "hist:v1")
    rows = [json.loads(line) for line in pouchd.docker(
        "history", "--no-trunc", "--format", "{{json .}}", "hist:v1").splitlines()]
    base = len(pouchd.docker("history", "-q", "busybox").splitlines())
    assert len(rows) == base + 4
    created = [row["CreatedBy"] for row in rows[:4]]
    assert created[0] == "/bin/sh -c #(nop)  USER nobody"
    assert created[1] == "/bin/sh -c #(nop)  EXPOSE 8080"
    assert created[2] == "/bin/sh -c echo x > /x"
    assert created[3] == "/bin/sh -c #(nop)  LABEL a=b"
    assert rows[0]["Size"] == "0B" and rows[2]["Size"] != "0B"
    inspected = pouchd.inspect("hist:v1")
    assert inspected["Config"]["User"] == "nobody"
    assert "8080/tcp" in inspected["Config"]["ExposedPorts"]


def test_onbuild_add_of_a_tar_and_copy_chown(pouchd: PouchDaemon, tmp_path: Path):
    parent = context(tmp_path / "parent", {
        "Dockerfile": "FROM busybox\nONBUILD COPY marker.txt /from-child/\n"
                      "ONBUILD RUN echo triggered > /triggered\n"})
    build(pouchd, parent, "-t", "parent:v1")
    archive = tmp_path / "child" / "ctx" / "bundle.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in (("bundle/one.txt", b"one\n"), ("bundle/two.txt", b"two\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    child = context(tmp_path / "child", {
        "Dockerfile": "FROM parent:v1\nADD bundle.tar.gz /opt/\n"
                      "COPY --chown=1234:5678 marker.txt /owned.txt\n"
                      "COPY --chown=nobody:users marker.txt /named.txt\n",
        "marker.txt": "marked\n"})
    out = build(pouchd, child, "-t", "child:v1")
    assert "# Executing 2 build triggers" in out
    run = ("cat /from-child/marker.txt /triggered /opt/bundle/one.txt /opt/bundle/two.txt; "
           "stat -c '%u:%g' /owned.txt /named.txt")
    assert pouchd.docker("run", "--rm", "child:v1", "sh", "-c", run).split() == [
        "marked", "triggered", "one", "two", "1234:5678", "65534:100"]
    # The triggers ran in the child: its image carries none of them any more.
    assert pouchd.inspect("child:v1")["Config"]["OnBuild"] in (None, [])


def test_builder_prune_drops_the_cache(pouchd: PouchDaemon, tmp_path: Path):
    folder = context(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo a > /a\nENV X=1\n"})
    build(pouchd, folder, "-t", "pruned:v1")
    assert "Using cache" in build(pouchd, folder, "-t", "pruned:v1")
    out = pouchd.docker("builder", "prune", "-f")
    assert "Total reclaimed space" in out
    assert "Using cache" not in build(pouchd, folder, "-t", "pruned:v1")
    assert pouchd.docker("run", "--rm", "pruned:v1", "cat", "/a") == "a"


def test_two_builds_at_once(pouchd: PouchDaemon, tmp_path: Path):
    folders = [context(tmp_path / str(i), {
        "Dockerfile": f"FROM busybox\nRUN sleep 1 && echo {i} > /which\n"
                      'CMD ["cat", "/which"]\n'})
        for i in range(2)]
    env = {**os.environ, "DOCKER_HOST": pouchd.host, "DOCKER_BUILDKIT": "0"}
    procs = [subprocess.Popen(["docker", "build", "-t", f"both:{i}", str(folder)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, folder in enumerate(folders)]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    assert [pouchd.docker("run", "--rm", f"both:{i}") for i in range(2)] == ["0", "1"]


def test_a_cancelled_build_leaves_nothing(pouchd: PouchDaemon, tmp_path: Path):
    folder = context(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo started; sleep 120\n"})
    env = {**os.environ, "DOCKER_HOST": pouchd.host, "DOCKER_BUILDKIT": "0"}
    proc = subprocess.Popen(["docker", "build", "-t", "cancelled:v1", str(folder)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "started":
                break
        # The step runs (its output may come before the container's state says so).
        wait_for(lambda: pouchd.docker("ps", "-q") != "", 10, "the step's container running")
    finally:
        proc.send_signal(signal.SIGINT)  # the user's ^C: the CLI closes the connection
        proc.wait(30)
    wait_for(lambda: pouchd.docker("ps", "-aq") == "", 30, "the step's container removed")
    assert pouchd.docker_result("image", "inspect", "cancelled:v1").returncode != 0
    wait_for(lambda: list_leases(pouchd.containerd_socket) == [], 30, "no lease left")
    assert list((pouchd.home / "builder" / "contexts").iterdir()) == []
    assert not [p for p in (pouchd.home / "tmp").iterdir() if p.name.startswith("build-")]


def test_a_run_layer_holds_only_what_the_command_changed(pouchd: PouchDaemon,
                                                          tmp_path: Path):
    folder = context(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo x > /x\n"})
    image_id = build(pouchd, folder, "-q", "-t", "layer:v1").splitlines()[-1]
    assert image_id.startswith("sha256:")
    saved = tmp_path / "saved.tar"
    pouchd.docker("save", "-o", str(saved), "layer:v1")
    with tarfile.open(saved) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        top = archive.extractfile(manifest[0]["Layers"][-1])
        assert top is not None
        with tarfile.open(fileobj=io.BytesIO(top.read())) as layer:
            # Not the runtime's mount points (/etc/hosts, /etc/resolv.conf, ...).
            assert [m.name for m in layer if not m.isdir()] == ["x"]


def test_a_large_context_streams_through(pouchd: PouchDaemon, tmp_path: Path):
    folder = context(tmp_path, {"Dockerfile": "FROM busybox\nCOPY big /big\nCOPY tree /tree\n"})
    big = os.urandom(6 << 20)
    (folder / "big").write_bytes(big)
    for i in range(300):
        (folder / "tree" / f"d{i % 7}").mkdir(parents=True, exist_ok=True)
        (folder / "tree" / f"d{i % 7}" / f"f{i}").write_bytes(os.urandom(3000))
    build(pouchd, folder, "-t", "large:v1")
    assert pouchd.docker("run", "--rm", "large:v1", "sha256sum", "/big").split()[0] \
        == hashlib.sha256(big).hexdigest()
    assert pouchd.docker("run", "--rm", "large:v1", "sh", "-c",
                         "find /tree -type f | wc -l") == "300"


def test_hostile_contexts_are_refused_naming_the_member(pouchd: PouchDaemon):
    client = docker_py.APIClient(base_url=pouchd.host, version="1.41", timeout=60)
    try:
        for name, extra in (("../escape", None), ("/abs", None), ("link", "../../etc")):
            fileobj = io.BytesIO()
            with tarfile.open(fileobj=fileobj, mode="w") as tar:
                data = b"FROM busybox\nCOPY . /x\n"
                info = tarfile.TarInfo("Dockerfile")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                member = tarfile.TarInfo(name)
                if extra is not None:
                    member.type, member.linkname = tarfile.SYMTYPE, extra
                    tar.addfile(member)
                    inner = tarfile.TarInfo("link/passwd")
                    inner.size = 1
                    tar.addfile(inner, io.BytesIO(b"x"))
                else:
                    member.size = 1
                    tar.addfile(member, io.BytesIO(b"x"))
            fileobj.seek(0)
            messages = list(client.build(fileobj=fileobj, custom_context=True, decode=True))
            errors = [m["error"] for m in messages if "error" in m]
            assert errors, (name, messages)
            assert name.lstrip("/") in errors[0] or "link/passwd" in errors[0], errors
        # A Dockerfile that is a link out of the context is read inside it, as dockerd
        # reads it: the host's file never is (its lines would show in the parse error).
        fileobj = io.BytesIO()
        with tarfile.open(fileobj=fileobj, mode="w") as tar:
            link = tarfile.TarInfo("Dockerfile")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
        fileobj.seek(0)
        messages = list(client.build(fileobj=fileobj, custom_context=True, decode=True))
        assert [m.get("error") for m in messages if "error" in m] == [
            "Cannot locate specified Dockerfile: Dockerfile"], messages
    finally:
        client.close()
    assert pouchd.docker("images", "-q", "--filter", "dangling=true") == ""


def test_cache_from_limits_the_cache_to_those_images(pouchd: PouchDaemon, tmp_path: Path):
    folder = context(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo a > /a\n"})
    build(pouchd, folder, "-t", "source:v1")
    other = context(tmp_path / "other", {"Dockerfile": "FROM busybox\nENV Y=1\n"})
    build(pouchd, other, "-t", "unrelated:v1")
    assert "Using cache" not in build(pouchd, folder, "--cache-from", "unrelated:v1")
    assert "Using cache" in build(pouchd, folder, "--cache-from", "source:v1")


def test_removing_a_built_image_takes_its_steps_with_it(pouchd: PouchDaemon, tmp_path: Path):
    folder = context(tmp_path, {"Dockerfile": "FROM busybox\nENV A=1\nRUN echo x > /x\n"
                                              "CMD [\"cat\", \"/x\"]\n"})
    build(pouchd, folder, "-t", "gone:v1")
    before = set(pouchd.docker("images", "-aq", "--no-trunc").split())
    removed = pouchd.docker("rmi", "gone:v1").splitlines()
    assert sum(line.startswith("Deleted: ") for line in removed) == 3  # CMD, RUN, ENV
    after = set(pouchd.docker("images", "-aq", "--no-trunc").split())
    assert len(before - after) == 3 and len(after) == 1  # busybox alone
    assert pouchd.docker("run", "--rm", "busybox", "true") == ""


def test_from_pulls_a_missing_base_and_pull_always_asks(pouchd: PouchDaemon, tmp_path: Path):
    with Registry() as registry:
        base = f"{registry.host}/demo/base:v1"
        publish_busybox(registry, "demo/base", "v1")
        folder = context(tmp_path, {"Dockerfile": f"FROM {base}\nRUN cat /etc/greeting\n"})
        out = build(pouchd, folder, "-t", "pulled:v1")
        assert "v1: Pulling from demo/base" in out and "pulled" in out.splitlines()
        again = build(pouchd, folder, "--pull", "-t", "pulled:v1")
        assert f"Status: Image is up to date for {base}" in again
        assert "Using cache" in again


def test_what_dockerd_refuses_before_building_is_refused_at_once(pouchd: PouchDaemon,
                                                                 tmp_path: Path):
    """A bad tag, squash (dockerd 20.10 without its experimental mode), a remote context
    (this daemon fetches none: the docker CLI fetches URLs itself, docker-py passes them
    on), a platform other than this machine's: an error before anything is built."""
    folder = context(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo ran > /ran\n"})
    bad = pouchd.docker_result("build", "-t", "Bad:Tag", str(folder), timeout=60)
    assert bad.returncode != 0 and "invalid reference format" in bad.stderr
    squash = pouchd.docker_result("build", "--squash", str(folder), timeout=60)
    assert squash.returncode != 0  # the CLI asks the daemon whether it is experimental
    assert "only supported on a Docker daemon with experimental" in squash.stderr
    other = pouchd.docker_result("build", "--platform", "linux/s390x", str(folder),
                                 timeout=60)
    assert other.returncode != 0 and "linux/s390x" in other.stderr, other.stderr

    client = docker_py.APIClient(base_url=pouchd.host, version="1.41", timeout=60)
    try:
        # docker-py checks tags itself too: they go as they are, on its HTTP session.
        for query, words in (
                ({"t": "Bad:Tag"},
                 "invalid reference format: repository name must be lowercase"),
                ({"t": ["ok:v1", "ok@sha256:" + "a" * 64]},
                 "build tag cannot contain a digest"),
                ({"platform": "linux//amd64"},
                 'platform specifier component must match "^[A-Za-z0-9_-]+$"'),
                ({"platform": "windows/amd64"}, "not windows/amd64"),
                ({"squash": "1"}, "squash is only supported with experimental mode")):
            answer = client.post(f"{client.base_url}/v1.41/build", params=query,
                                 data=tar_of({"Dockerfile": b"FROM busybox\nRUN true\n"}),
                                 headers={"Content-Type": "application/x-tar"})
            assert answer.status_code == 400, (query, answer.text)
            assert words in answer.json()["message"], (query, answer.text)
        with pytest.raises(docker_py.errors.APIError) as refused:
            list(client.build(fileobj=io.BytesIO(tar_of({"Dockerfile": b"FROM busybox\n"})),
                              custom_context=True, platform="linux/s390x"))
        assert refused.value.status_code == 400
        remote = "http://127.0.0.1:9/context.tar"
        with pytest.raises(docker_py.errors.APIError) as refused:
            list(client.build(path=remote))
        assert refused.value.status_code == 400 and remote in str(refused.value.explanation)
    finally:
        client.close()
    assert pouchd.docker("ps", "-aq") == ""
    assert pouchd.docker("images", "-a", "--format", "{{.Repository}}") == "busybox"
    # A small refused body is read to its end before the next request on the same
    # connection, which is read from its first byte.
    conn = UnixConnection(pouchd.socket)
    try:
        conn.request("POST", "/v1.41/build?platform=windows/amd64", body=b"\x04[|f?")
        assert conn.getresponse().read() and conn.sock is not None
        conn.request("GET", "/v1.41/version")
        answer = conn.getresponse()
        assert (answer.status, json.loads(answer.read())["ApiVersion"]) == (200, "1.41")
    finally:
        conn.close()

    here = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    out = build(pouchd, folder, "--platform", f"linux/{here}", "-t", "same:v1")
    assert "Successfully tagged same:v1" in out


def test_workdir_makes_its_folder_and_a_file_copied_onto_a_folder_goes_into_it(
        pouchd: PouchDaemon, tmp_path: Path):
    """As dockerd's classic builder: WORKDIR makes its folder (and its parents) where the
    image has none, so that COPY x . lands in it; a file copied onto a folder the image
    has goes into it, never in its place; WORKDIR of a folder there already adds nothing."""
    dockerfile = ("FROM busybox\nWORKDIR /app/sub\nCOPY a.txt .\nCOPY a.txt /tmp\n"
                  "WORKDIR /tmp\nCOPY a.txt named.txt\nRUN pwd > /where\n")
    folder = context(tmp_path, {"Dockerfile": dockerfile, "a.txt": "a\n"})
    build(pouchd, folder, "-t", "workdir:v1")
    shown = pouchd.docker("run", "--rm", "workdir:v1", "sh", "-c",
                          "cat /app/sub/a.txt /tmp/a.txt /tmp/named.txt /where; "
                          "stat -c '%a:%u' /app /app/sub /tmp")
    assert shown.split() == ["a", "a", "a", "/tmp", "755:0", "755:0", "1777:0"]
    history = pouchd.docker("history", "--format", "{{.CreatedBy}}|{{.Size}}",
                            "workdir:v1").splitlines()
    assert "/bin/sh -c #(nop)  WORKDIR /tmp|0B" in history
    assert "Using cache" in build(pouchd, folder, "-t", "workdir:v1")


def _lines(output: str) -> list[str]:
    """Build output with IDs as <id>, and without the CLI's own first line."""
    return [re.sub(r"[0-9a-f]{12,64}", "<id>", line) for line in output.splitlines()
            if not line.startswith("Sending build context")]


def test_the_output_is_dockerds_line_for_line(pouchd: PouchDaemon, tmp_path: Path):
    """As dockerd 20.10's classic builder prints it (these lines are its own), but for
    the " ---> Running in" and "Removing intermediate container" lines of metadata steps
    (ENV, CMD, ...), for which dockerd makes a container and pouch makes none."""
    parent = context(tmp_path / "parent", {
        "Dockerfile": "FROM busybox\nONBUILD RUN echo trig\nONBUILD ENV T=1\n"})
    build(pouchd, parent, "-t", "parent:v1")
    child = pouchd.docker_result("build", "-", input="FROM parent:v1\nRUN echo child\n",
                                 timeout=180)
    assert child.returncode == 0, child.stderr
    assert _lines(child.stdout) == [
        "", "Step 1/2 : FROM parent:v1", "# Executing 2 build triggers",
        " ---> Running in <id>", "trig", "Removing intermediate container <id>",
        " ---> <id>",
        "Step 2/2 : RUN echo child", " ---> Running in <id>", "child",
        "Removing intermediate container <id>", " ---> <id>", "Successfully built <id>"]

    scratch = pouchd.docker_result("build", "-", input="FROM scratch\nENV A=1\n")
    assert _lines(scratch.stdout) == ["", "Step 1/2 : FROM scratch", " ---> ",
                                      "Step 2/2 : ENV A=1", " ---> <id>",
                                      "Successfully built <id>"]

    quiet = pouchd.docker_result("build", "-q", "-",
                                 input="FROM busybox\nRUN echo before && exit 3\n")
    assert quiet.returncode == 3 and quiet.stdout == ""
    # Quiet, until it fails: then what it said shows, as dockerd shows it.
    assert [line for line in _lines(quiet.stderr) if line][-6:] \
        == ["Step 1/2 : FROM busybox", " ---> <id>", "Step 2/2 : RUN echo before && exit 3",
            " ---> Running in <id>", "before",
            "The command '/bin/sh -c echo before && exit 3' returned a non-zero code: 3"]

    missing = context(tmp_path / "missing", {"Dockerfile": "FROM busybox\nCOPY nothere /x\n"})
    failed = pouchd.docker_result("build", str(missing), timeout=60)
    assert failed.returncode == 1
    assert failed.stderr.strip().endswith(
        "COPY failed: file not found in build context or excluded by .dockerignore: "
        "stat nothere: file does not exist")
    empty = context(tmp_path / "empty", {"Dockerfile": ""})
    failed = pouchd.docker_result("build", str(empty), timeout=60)
    assert failed.stderr.strip().endswith("the Dockerfile (Dockerfile) cannot be empty")


# -- ADD <url>, from a server of the test's own on 127.0.0.1 --------------------------

WEB_DATE = "Wed, 21 Oct 2015 07:28:00 GMT"  # 1445412480


def test_add_of_a_url_downloads_it_as_dockerd_does(pouchd: PouchDaemon, tmp_path: Path):
    """ADD <url> as dockerd 20.10's classic builder runs it (these outputs are its own):
    the daemon reaches 127.0.0.1 although its HTTP(S)_PROXY is a closed port (loopback
    is never proxied); the file goes into a folder under the URL's name, or at the path
    given, 0600, dated by Last-Modified (else the epoch), an archive never unpacked,
    --chown honoured. Each build downloads again; the step is cached by what came."""
    bundle = tar_of({"inside.txt": b"in\n"}, gzip=True)
    files = {"/files/hello.txt": Served(b"hello from the web\n", {"Last-Modified": WEB_DATE}),
             "/files/bundle.tar.gz": Served(bundle),
             "/named/": Served(b"no name\n")}
    with serving(files) as server:
        hello = server.url("/files/hello.txt")
        dockerfile = (f"FROM busybox\nADD {hello} /downloads/\nADD {hello} /renamed.txt\n"
                      f"ADD {server.url('/files/bundle.tar.gz')} /downloads/\n"
                      f"ADD --chown=1234:5678 {hello} /owned.txt\nADD {hello} /tmp\n"
                      f"ADD {server.url('/named/')} /unnamed-file\n")
        folder = context(tmp_path, {"Dockerfile": dockerfile})
        first = build(pouchd, folder, "-t", "fetched:v1")
        assert _lines(first)[3:6] == [f"Step 2/7 : ADD {hello} /downloads/", "", " ---> <id>"]
        shown = pouchd.docker("run", "--rm", "fetched:v1", "sh", "-c",
                              "cat /downloads/hello.txt; ls /downloads; sha256sum "
                              "/downloads/bundle.tar.gz; stat -c '%n %a %u:%g %Y %s' "
                              "/downloads/* /renamed.txt /owned.txt /tmp/hello.txt "
                              "/unnamed-file")
        assert shown.splitlines() == [
            "hello from the web", "bundle.tar.gz", "hello.txt",
            f"{hashlib.sha256(bundle).hexdigest()}  /downloads/bundle.tar.gz",
            "/downloads/bundle.tar.gz 600 0:0 0 105",
            "/downloads/hello.txt 600 0:0 1445412480 19",
            "/renamed.txt 600 0:0 1445412480 19", "/owned.txt 600 1234:5678 1445412480 19",
            "/tmp/hello.txt 600 0:0 1445412480 19", "/unnamed-file 600 0:0 0 8"]
        # The sums are dockerd's own (its history of this very build, as root).
        history = pouchd.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}",
                                "fetched:v1").splitlines()
        hello_sum = "4bd589178d0a2d8a5b2ab0d3dc78e8054d552444ffb4362947b86650229bb08c"
        assert [line.rstrip() for line in history[:3]] == [
            "/bin/sh -c #(nop) ADD 625d3aab8d30f8858faf7b6cfa2b57217a7e24d41a29f8131bda697bb"
            "2f79fea in /unnamed-file",
            f"/bin/sh -c #(nop) ADD {hello_sum} in /tmp",
            f"/bin/sh -c #(nop) ADD --chown=1234:5678{hello_sum} in /owned.txt"]
        assert re.fullmatch(r"/bin/sh -c #\(nop\) ADD [0-9a-f]{64} in /downloads/ ", history[3])
        assert server.asked["/files/hello.txt"] == 4

        again = build(pouchd, folder, "-t", "fetched:v1")
        assert again.count(" ---> Using cache") == 6 and _built(again) == _built(first)
        assert server.asked["/files/hello.txt"] == 8  # downloaded again, then looked up

        files["/files/hello.txt"] = Served(b"changed\n", {"Last-Modified": WEB_DATE})
        changed = build(pouchd, folder, "-t", "fetched:v2")
        assert "Using cache" not in changed
        assert pouchd.docker("run", "--rm", "fetched:v2", "cat", "/renamed.txt") == "changed"
        assert pouchd.docker("run", "--rm", "fetched:v1", "cat", "/renamed.txt") \
            == "hello from the web"
    wait_for(lambda: list((pouchd.home / "builder" / "contexts").iterdir()) == [], 10,
             "the builds' contexts and downloads removed")


def test_add_of_a_url_that_fails_names_it_and_fails_at_once(pouchd: PouchDaemon):
    """A 404, a closed port, a host only a proxy could reach (the daemon's is a closed
    loopback port), a nameless download into a folder, COPY of a URL: the step fails at
    once, in dockerd 20.10's words (these are its own), naming the URL; nothing is left."""
    with serving({"/files/hello.txt": Served(b"hello\n"), "/": Served(b"index\n")}) as server:
        hello, missing, index = (server.url(path) for path in
                                 ("/files/hello.txt", "/missing.txt", "/"))
        port = closed_port()
        gone = f"http://127.0.0.1:{port}/gone.txt"
        far = "http://files.example.invalid/a.txt"
        for line, error in (
                (f"ADD {missing} /x", f"ADD failed: failed to GET {missing} with status 404 "
                                      "Not Found: no such file: /missing.txt"),
                (f"ADD {gone} /x", f'ADD failed: Get "{gone}": dial tcp 127.0.0.1:{port}: '
                                   "connect: connection refused"),
                (f"ADD {far} /x", f'ADD failed: Get "{far}": proxyconnect tcp: dial tcp '
                                  "127.0.0.1:9: connect: connection refused"),
                (f"ADD {index} /dir/", f"ADD failed: cannot determine filename for source "
                                       f"{index}"),
                (f"ADD {hello} {hello} /multi", "When using ADD with more than one source "
                 "file, the destination must be a directory and end with a /"),
                (f"COPY {hello} /x", "COPY failed: source can't be a URL for COPY")):
            began = time.monotonic()
            failed = pouchd.docker_result("build", "-", input=f"FROM busybox\n{line}\n",
                                          timeout=60)
            assert failed.returncode == 1, failed.stdout
            assert failed.stderr.strip().endswith(error), failed.stderr
            assert time.monotonic() - began < 15, line
    assert pouchd.docker("ps", "-aq") == ""
    assert pouchd.docker("images", "-a", "--format", "{{.Repository}}") == "busybox"
    wait_for(lambda: list((pouchd.home / "builder" / "contexts").iterdir()) == [], 10,
             "the builds' contexts and downloads removed")
    assert not [p for p in (pouchd.home / "tmp").iterdir() if p.name.startswith("build-")]


def test_a_build_cancelled_while_downloading_gives_the_download_up(pouchd: PouchDaemon,
                                                                     tmp_path: Path):
    slow = Served(b"x" * (8 << 20), pause=0.2)  # 128 parts of 64 kB, one each 0.2 s
    with serving({"/slow.bin": slow}) as server:
        folder = context(tmp_path, {
            "Dockerfile": f"FROM busybox\nADD {server.url('/slow.bin')} /\n"})
        env = {**os.environ, "DOCKER_HOST": pouchd.host, "DOCKER_BUILDKIT": "0"}
        proc = subprocess.Popen(["docker", "build", "-t", "slow:v1", str(folder)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: server.asked["/slow.bin"] == 1, 60, "the download under way")
            wait_for(lambda: list((pouchd.home / "builder" / "contexts").glob("remote-*/*/*")),
                     10, "the download's file")
        finally:
            proc.send_signal(signal.SIGINT)  # the user's ^C: the CLI closes the connection
            proc.wait(30)
        wait_for(lambda: server.cut["/slow.bin"] == 1, 10, "the download given up")
    wait_for(lambda: list((pouchd.home / "builder" / "contexts").iterdir()) == [], 10,
             "the build's context and download removed")
    assert pouchd.docker_result("image", "inspect", "slow:v1").returncode != 0
    assert pouchd.docker("images", "-a", "--format", "{{.Repository}}") == "busybox"


def test_docker_py_sees_a_downloads_progress(pouchd: PouchDaemon):
    """As dockerd sends it: progress now and then (no last one), then a blank line."""
    body = os.urandom(3 << 20)
    with serving({"/big.bin": Served(body)}) as server:
        client = docker_py.APIClient(base_url=pouchd.host, version="1.41", timeout=120)
        try:
            dockerfile = f"FROM busybox\nADD {server.url('/big.bin')} /big.bin\n"
            messages = list(client.build(fileobj=io.BytesIO(dockerfile.encode()),
                                         decode=True, tag="big:v1"))
        finally:
            client.close()
    progress = [m for m in messages if m.get("status") == "Downloading"]
    assert progress, messages
    assert progress[0]["progressDetail"]["total"] == len(body)
    assert 0 < progress[0]["progressDetail"]["current"] < len(body)
    assert progress[0]["progress"].startswith("[") and \
        progress[0]["progress"].endswith("/3.146MB")
    assert messages[messages.index(progress[-1]) + 1] == {"stream": "\n"}
    assert pouchd.docker("run", "--rm", "big:v1", "sha256sum", "/big.bin").split()[0] \
        == hashlib.sha256(body).hexdigest()
