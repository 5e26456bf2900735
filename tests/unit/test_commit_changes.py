"""The changes of docker commit and docker import, read as dockerd's BuildFromConfig
reads them: each a Dockerfile instruction, through the builder's parser and dispatchers."""

from __future__ import annotations

import pytest

from pouch.actors.builder.metadata import apply_changes
from pouch.proto.envelope import PouchError

BASE = {"Env": ["PATH=/bin", "HOME=/app"], "Cmd": ["sh"], "WorkingDir": "/srv"}


def test_words_are_expanded_with_the_configs_environment_and_quotes_taken_off():
    config = apply_changes(['ENV DATA="$HOME/data" MODE=fast', 'LABEL "a b"="c d"',
                            "WORKDIR app", "VOLUME $HOME/cache", "EXPOSE 80 53/udp"], BASE)
    assert config["Env"] == ["PATH=/bin", "HOME=/app", "DATA=/app/data", "MODE=fast"]
    assert config["Labels"] == {"a b": "c d"}
    assert config["WorkingDir"] == "/srv/app"
    assert config["Volumes"] == {"/app/cache": {}}
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert BASE["Env"] == ["PATH=/bin", "HOME=/app"]  # the input is left as it was


def test_an_entrypoint_clears_the_cmd_unless_a_change_set_one_before():
    assert apply_changes(["ENTRYPOINT top"], BASE)["Cmd"] is None
    assert apply_changes(["ENTRYPOINT top"], BASE)["Entrypoint"] == ["/bin/sh", "-c", "top"]
    both = apply_changes(['CMD ["-b"]', 'ENTRYPOINT ["top"]'], BASE)
    assert (both["Entrypoint"], both["Cmd"]) == (["top"], ["-b"])


def test_healthcheck_and_onbuild_as_a_build_sets_them():
    config = apply_changes(["HEALTHCHECK --timeout=2s CMD [\"true\"]",
                            "onbuild COPY . /app"], BASE)
    assert config["Healthcheck"] == {"Test": ["CMD", "true"], "Timeout": 2_000_000_000}
    assert config["OnBuild"] == ["COPY . /app"]


@pytest.mark.parametrize(("change", "said"), [
    ("RUN true", "run is not a valid change command"),
    ("STOPSIGNAL SIGINT", "stopsignal is not a valid change command"),
    ("SHELL [\"bash\"]", "shell is not a valid change command"),
    ("BOGUS x", "unknown instruction: BOGUS"),
    ("ENV", "ENV requires at least one argument"),
])
def test_what_dockerd_refuses_is_refused_in_its_words(change: str, said: str):
    with pytest.raises(PouchError) as refused:
        apply_changes(["ENV OK=1", change], BASE)
    assert refused.value.code == "invalid" and said in refused.value.message
