"""docker system df: what images, containers and volumes take, as the docker CLI and
docker-py read GET /system/df."""

from __future__ import annotations

import json
from collections.abc import Callable

import docker as docker_py


def test_df_counts_a_containers_writes_a_volumes_files_and_the_image(
        docker: Callable[..., str], client: docker_py.DockerClient, name: str):
    volume = f"{name}-data"
    docker("run", "--name", name, "-v", f"{volume}:/data", "busybox", "sh", "-c",
           "head -c 300000 /dev/zero > /data/blob; head -c 200000 /dev/zero > /written")
    try:
        df = client.df()
        [mine] = [c for c in df["Containers"] if c["Id"] == docker("inspect", "-f",
                                                                   "{{.Id}}", name)]
        assert 200000 <= mine["SizeRw"] < 300000
        assert mine["SizeRootFs"] > mine["SizeRw"]
        [data] = [v for v in df["Volumes"] if v["Name"] == volume]
        assert data["UsageData"] == {"Size": 300000, "RefCount": 1}
        busybox_id = client.images.get("busybox").id
        [image] = [i for i in df["Images"] if i["Id"] == busybox_id]
        assert image["Containers"] >= 1
        assert df["LayersSize"] >= image["Size"] > 0
        assert df["BuildCache"] == []

        # The CLI's own summary and its verbose tables read the same answer.
        rows = [json.loads(line) for line in
                docker("system", "df", "--format", "{{json .}}").splitlines()]
        assert [row["Type"] for row in rows] == ["Images", "Containers", "Local Volumes",
                                                 "Build Cache"]
        assert volume in docker("system", "df", "-v")
    finally:
        docker("rm", "-v", name)
        docker("volume", "rm", volume)
