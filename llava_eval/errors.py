"""Which failures are the user's to fix, and the one line that tells them how. The CLI's `user_errors`
wrapper asks `explain` about every exception of an expected class (the project's errors, file-system
errors on paths the user gave, files that are not UTF-8) and re-raises what it has no words for, so a bug
keeps its traceback. Output paths are checked here before a command starts its work.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path, PurePath

from llava_types import UserError
from tasks.base import TaskError

EXPECTED = (UserError, TaskError, OSError, UnicodeDecodeError)
DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
# File-system errors caused by the path or the disk the user chose; anything else (a broken pipe, a
# refused connection) is not ours to explain.
PATH_ERRORS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG,
               errno.ELOOP, errno.EFBIG, *DISK_FULL}


def explain(exc: BaseException) -> str | None:
    """The one-line message for an expected failure; None for one that is not (the caller re-raises it)."""
    if isinstance(exc, UserError | TaskError):
        return str(exc)
    if isinstance(exc, UnicodeDecodeError):
        where = _file_in(exc.__traceback__)
        detail = f"byte 0x{bytes(exc.object[exc.start:exc.start + 1]).hex()} at offset {exc.start}"
        return f"{where or 'a file read'}: not UTF-8 text ({detail}); save it as UTF-8"
    if isinstance(exc, OSError) and exc.errno in PATH_ERRORS:
        where = exc.filename or _file_in(exc.__traceback__)
        if exc.errno in DISK_FULL:
            return f"no space left on device while writing {where or 'the output'}; free space and run it again"
        reason = (exc.strerror or os.strerror(exc.errno)).lower()
        if exc.filename2:
            return f"{exc.filename} -> {exc.filename2}: {reason}"
        return f"{where}: {reason}" if where else reason
    return None


def _file_in(tb) -> str | None:
    """The file being read or written where the traceback ends: the innermost frame's `self` or `path` that
    is a `Path` (pathlib runs `read_text`, `open`, `write_text` with the file as `self`)."""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for name in ("self", "path"):
            value = frame.f_locals.get(name)
            if isinstance(value, PurePath):
                return str(value)
    return None


def disk_full_in_run(exc: OSError, run_dir: Path) -> UserError:
    """A full disk while a run writes: what is done is safe, and a rerun resumes."""
    return UserError(f"no space left on device while writing {exc.filename or run_dir}; every finished batch is "
                     "saved there: free space and run the same command again to resume")


def check_output(path: str | os.PathLike, option: str, folder: bool = False) -> Path:
    """Refuse, before any work is done, an output that cannot be written: a file whose folder is missing or
    is a file, a path that is a folder where a file belongs (or the reverse), a place without write access.
    A missing output folder (`folder=True`) is fine when it can be created where its nearest existing
    ancestor is."""
    path = Path(path)
    if folder:
        if path.exists() and not path.is_dir():
            raise UserError(f"{option} {path}: is a file, not a folder")
        base = next(p for p in (path, *path.parents) if p.exists())
    else:
        if path.is_dir():
            raise UserError(f"{option} {path}: is a folder; name a file to write")
        base = path.parent
        if not base.exists():
            raise UserError(f"{option} {path}: folder {base} does not exist; create it first")
    if not base.is_dir():
        raise UserError(f"{option} {path}: {base} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=base, prefix=".llava-eval-write-check-"):
            pass
    except OSError as exc:
        raise UserError(f"{option} {path}: cannot write in {base} "
                        f"({(exc.strerror or 'not writable').lower()})") from None
    return path
