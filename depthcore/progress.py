"""Progress bars that suit where the output goes.

In a terminal: tqdm's bar, updated in place. Anywhere else (CI, `dvc repro > log`, a pipe): one plain line every
`LOG_INTERVAL` seconds and one at the end, instead of a carriage-return update per step, so that a log of a long run
stays readable and small.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm import tqdm

LOG_INTERVAL = 30.0  # seconds between lines when the output is not a terminal


class _Lines:
    """A file-like wrapper that turns tqdm's carriage-return redraws into whole lines."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def bar(iterable: Iterable | None = None, *, stream: TextIO | None = None, **kwargs: Any) -> tqdm:
    """`tqdm(iterable, **kwargs)` on stderr (or `stream`): a live bar in a terminal, else a line per LOG_INTERVAL."""
    stream = sys.stderr if stream is None else stream
    if _is_terminal(stream):
        return tqdm(iterable, file=stream, **kwargs)
    kwargs = {**kwargs, "mininterval": max(kwargs.get("mininterval", 0), LOG_INTERVAL), "leave": True}
    return tqdm(iterable, file=_Lines(stream), ascii=True, **kwargs)


def write(message: str) -> None:
    """Print one line of news (to stdout) without breaking a live progress bar."""
    tqdm.write(message)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
