"""Progress output: live bars on a terminal, plain lines every few seconds elsewhere."""

from __future__ import annotations

import io

from mds_core.progress import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    for _ in progress(range(500), desc="epoch 1/1", stream=stream):
        pass
    text = stream.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert 1 <= len(lines) <= 3 and "epoch 1/1" in lines[-1] and "500/500" in lines[-1]


def test_progress_is_a_live_bar_on_a_terminal_and_silent_when_disabled():
    terminal = Terminal()
    for _ in progress(range(5), desc="eval", stream=terminal):
        pass
    assert "\r" in terminal.getvalue()
    quiet = io.StringIO()
    for _ in progress(range(5), enabled=False, stream=quiet):
        pass
    assert quiet.getvalue() == ""
