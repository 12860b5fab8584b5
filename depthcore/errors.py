"""The one error type a user acts on, and how commands report it.

`DepthcoreError` marks an error caused by something the user controls (params, files, data, the model file) whose
message already says what is wrong and what to do. Stage scripts and `depthcore predict` print it as one line on
stderr and exit with status 2, instead of a Python traceback. So do the OS errors of the disk the user chose: full
(ENOSPC, EDQUOT, and torch's archive writer failing to write), read-only (EROFS) or not writable by the user (EACCES,
EPERM). Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from typing import NoReturn

USER_ERROR_STATUS = 2

_FREE_SPACE = "free some disk space (or move the repository to a disk with room) and run again"
_PERMISSION = "give this user access to it and its folder, or run from a copy of the repository that it owns"
#: errno of an OSError the user fixes -> what to do, said after the file and the system's words for the errno.
_OS_ERROR_ADVICE = {
    errno.ENOSPC: _FREE_SPACE,
    errno.EDQUOT: _FREE_SPACE,
    errno.EACCES: _PERMISSION,
    errno.EPERM: _PERMISSION,
    errno.EROFS: "run from a copy of the repository on a writable disk",
}
#: torch.save to a path writes through its C++ archive writer, which raises a RuntimeError instead of an OSError when a
#: write fails, most often because the disk is full: an enforce failure in this file, with one of these messages.
_TORCH_WRITER = "inline_container.cc"
_TORCH_WRITE_FAILURES = ("file write failed", "unexpected pos")


class DepthcoreError(Exception):
    """An error in the user's input whose message names the problem and the way on."""


def run_main(main: Callable[[], object]) -> None:
    """Call `main()`; a `DepthcoreError`, or an OS error of a full, read-only or unwritable disk, becomes one line on
    stderr and exit status 2."""
    try:
        main()
    except DepthcoreError as err:
        _exit(str(err))
    except OSError as err:
        if err.errno not in _OS_ERROR_ADVICE:
            raise
        _exit(_os_error_message(err))
    except RuntimeError as err:
        if not _is_torch_write_failure(err):
            raise
        _exit(f"writing a file failed, most likely because the disk is full (torch: {_first_line(err)}); {_FREE_SPACE}")


def _os_error_message(err: OSError) -> str:
    """'<file>: <what the system says>; <what to do>', the file(s) left out when the error names none."""
    files = " -> ".join(str(name) for name in (err.filename, err.filename2) if name is not None)
    return f"{files + ': ' if files else ''}{os.strerror(err.errno)}; {_OS_ERROR_ADVICE[err.errno]}"


def _is_torch_write_failure(err: RuntimeError) -> bool:
    line = _first_line(err)
    return _TORCH_WRITER in line and any(failure in line for failure in _TORCH_WRITE_FAILURES)


def _first_line(err: Exception) -> str:
    return str(err).partition("\n")[0].strip()


def _exit(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(USER_ERROR_STATUS)
