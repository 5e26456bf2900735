"""The pipe keeper holds a FIFO's reader so that what was written outlives every other
end (the shim's and the dead actor's), until it is released or the FIFO unlinked."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pouch.actors.pipekeeper import PipeHolder, PipeKeeper, socket_path
from pouch.tests.support.wait import wait_for

WITHIN = 5.0  # s: the keeper takes each datagram on its own thread


@pytest.fixture
def keeper(tmp_path: Path) -> Iterator[PipeKeeper]:
    keeper = PipeKeeper(socket_path(tmp_path))
    keeper.start()
    yield keeper
    keeper.stop()


def written_then_abandoned(fifo: Path, holder: PipeHolder | None, data: bytes) -> None:
    """As a container's run whose actor died: the hub's reader (given to `holder`, if
    any), the shim's writer, the data written, then every end closed."""
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    if holder is not None:
        holder.hold("c1", [reader])
    os.write(writer, data)
    os.close(writer)
    os.close(reader)


def read_again(fifo: Path) -> bytes:
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return os.read(fd, 1024)
    finally:
        os.close(fd)


def test_without_a_keeper_the_output_goes_with_the_last_end(tmp_path: Path):
    written_then_abandoned(tmp_path / "stdout", None, b"hi\n")
    assert read_again(tmp_path / "stdout") == b""


def test_a_held_pipe_keeps_its_output_for_the_next_reader(tmp_path: Path, keeper: PipeKeeper):
    holder = PipeHolder(socket_path(tmp_path))
    written_then_abandoned(tmp_path / "stdout", holder, b"hi\n")
    assert read_again(tmp_path / "stdout") == b"hi\n"
    holder.close()


def held(tmp_path: Path, keeper: PipeKeeper) -> tuple[PipeHolder, Path]:
    """A FIFO whose reader the keeper alone holds, as "c1"'s."""
    holder = PipeHolder(socket_path(tmp_path))
    fifo = tmp_path / "stdout"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    holder.hold("c1", [reader])
    os.close(reader)
    wait_for(lambda: keeper._held.keys() == {"c1"}, WITHIN, "the keeper holding")
    return holder, fifo


def test_a_released_pipe_is_let_go(tmp_path: Path, keeper: PipeKeeper):
    holder, _ = held(tmp_path, keeper)
    holder.release("c1")
    wait_for(lambda: keeper._held == {}, WITHIN, "the keeper letting go")
    holder.close()


def test_the_sweep_lets_go_of_unlinked_fifos(tmp_path: Path, keeper: PipeKeeper):
    holder, fifo = held(tmp_path, keeper)
    keeper._sweep()
    assert keeper._held.keys() == {"c1"}
    fifo.unlink()
    keeper._sweep()
    assert keeper._held == {}
    holder.close()


def test_a_holder_with_no_keeper_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    holder = PipeHolder(socket_path(tmp_path))
    fifo = tmp_path / "stdout"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    holder.hold("c1", [reader])
    holder.release("c1")
    os.close(reader)
    assert "may be lost" in caplog.text
