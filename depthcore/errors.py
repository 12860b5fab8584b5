"""The one error type a user acts on, and how commands report it.

`DepthcoreError` marks an error caused by something the user controls (params, files, data, the model file) whose
message already says what is wrong and what to do. Stage scripts and `depthcore predict` print it as one line on
stderr and exit with status 2, instead of a Python traceback; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

USER_ERROR_STATUS = 2


class DepthcoreError(Exception):
    """An error in the user's input whose message names the problem and the way on."""


def run_main(main: Callable[[], object]) -> None:
    """Call `main()`; a `DepthcoreError` becomes one line on stderr and exit status 2."""
    try:
        main()
    except DepthcoreError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(USER_ERROR_STATUS)
