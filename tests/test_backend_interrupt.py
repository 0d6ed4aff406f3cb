"""Ctrl-C while TensorFlow imports: third-party import code under a bare `except:` must not swallow it (expkit.backend)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from expkit.backend import ctrl_c_after


@pytest.fixture(autouse=True)
def default_ctrl_c() -> Iterator[None]:
    """Python's own SIGINT handler, as in a terminal's foreground job (a pytest-xdist worker may run with SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_inside_a_bare_except_is_raised_when_the_block_ends() -> None:
    reached_end_of_block = False
    with pytest.raises(KeyboardInterrupt), ctrl_c_after():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # the handler runs here, between bytecodes
        except:  # noqa: E722  # what some imported module code does
            pytest.fail("the signal reached the code inside the block")
        reached_end_of_block = True
    assert reached_end_of_block
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_no_ctrl_c_no_interrupt_and_another_handler_is_left_alone() -> None:
    with ctrl_c_after():
        pass
    seen: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with ctrl_c_after():  # a StopRequest or a host application owns Ctrl-C: it still gets it, at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            assert seen == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)
