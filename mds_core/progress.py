"""Progress bars that suit where the output goes.

On a terminal, a normal live ``tqdm`` bar. Anywhere else (a log file, CI, a launch's captured
output) the same bar is written as a plain line at most every :data:`LOG_INTERVAL` seconds, so
logs are not flooded with carriage-return updates.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm import tqdm

#: Seconds between two progress lines when the output is not a terminal.
LOG_INTERVAL = 10.0


class _LineWriter:
    """A file for ``tqdm`` that turns each redraw into one line of ``stream``."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress(iterable: Iterable | None = None, *, enabled: bool = True, stream: TextIO | None = None,
             **options: Any) -> tqdm:
    """``tqdm(iterable, **options)``, live on a terminal, plain lines every few seconds elsewhere,
    nothing at all when ``enabled`` is false."""
    stream = stream if stream is not None else sys.stderr
    if not enabled:
        return tqdm(iterable, disable=True, **options)
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(iterable, file=stream, dynamic_ncols=True, **options)
    return tqdm(iterable, file=_LineWriter(stream), mininterval=LOG_INTERVAL, maxinterval=LOG_INTERVAL * 6,
                ncols=100, ascii=True, **options)
