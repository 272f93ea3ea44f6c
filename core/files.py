"""Writing files so that a crash never leaves half of one, and reading JSON with clear errors.

Every file hcm writes and later reads goes through :func:`atomic_write`: the content goes to a
temporary file beside the target, is flushed to disk (fsync), then renamed over the target
(``os.replace`` is atomic on POSIX). The previous version stays intact until the new one is
complete, also when the disk fills up mid-write. The temporary file is created with mode 0666 less
the umask, like any file ``open()`` creates, so colleagues on a shared server can read what hcm
wrote when their umask lets them (``tempfile.mkstemp`` would make every file 0600).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable

from hcm.core.errors import UsageError


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], temp: Path | None = None) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, move it onto ``path``.

    The temporary name is unique to this call (or ``temp``, when the caller needs a name that
    says who writes it), so concurrent writers never remove each other's files; on any error
    (including ``KeyboardInterrupt``) the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if temp is None:
        tmp = _new_temp_file(path)
    else:
        tmp = Path(temp)
        create_new(tmp)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def plain_name(value: str) -> bool:
    """Whether ``value`` names a file inside a folder: not empty, no separator, not ``.``/``..``
    (an id read from a dataset's label file is joined to a media path only if it is plain)."""
    return bool(value) and "/" not in value and "\\" not in value and "\0" not in value and value not in (".", "..")


def leads_out(folder: Path, path: Path) -> bool:
    """Whether ``path``, its links followed, ends outside ``folder`` (``folder`` itself included):
    a link planted in a dataset or cache folder must not make hcm read files elsewhere."""
    return Path(folder).resolve() not in Path(path).resolve().parents


def create_new(path: Path) -> None:
    """Create ``path`` as a new empty regular file (``O_CREAT | O_EXCL | O_NOFOLLOW``): a leftover
    of that name is removed first, and a symbolic link planted there is removed, never followed."""
    path.unlink(missing_ok=True)
    _create_exclusive(path)


def _create_exclusive(path: Path) -> None:
    """Create ``path`` empty, mode 0666 less the umask; FileExistsError when anything (a link too) is there."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666))


def open_lock(path: str | os.PathLike) -> io.TextIOWrapper:
    """Open (creating it if needed) the lock file ``path`` for ``fcntl`` locking, without following
    a symbolic link (``O_NOFOLLOW``): a link there, or anything but a regular file, is refused with a
    UsageError, so a lock name can never make hcm create or open a file elsewhere."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UsageError(f"lock file {path} is a symbolic link; hcm never follows links for its lock files "
                             f"(one could make it write outside {path.parent}). Remove the link and re-run") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError(f"lock file {path} is not a regular file; remove it and re-run")
    return os.fdopen(fd, "a+")


def _new_temp_file(path: Path) -> Path:
    """A new empty file ``.<name>.<random>.tmp`` beside ``path``, mode 0666 less the umask."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            _create_exclusive(tmp)
        except FileExistsError:
            continue
        return tmp


def fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def json_safe(value: Any) -> Any:
    """NaN/inf -> None and numpy/torch scalars -> Python numbers, so the JSON is standard."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(json_safe(data), indent=2, default=str) + "\n")


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The JSON value in ``path``; ``what`` names the file in errors ("run config", "manifest")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} {path} is not UTF-8 text ({error}); is it the right file?") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} {path} is not valid JSON ({error}); the file is damaged") from error


def read_json_object(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """Like :func:`read_json`, and the value must be a JSON object."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} must hold a JSON object, found {type(data).__name__}")
    return data


def write_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Rows of dicts as CSV; the header is the union of keys in first-seen order."""
    header = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def check_writable(directory: str | os.PathLike, what: str) -> Path:
    """Create ``directory`` if needed and prove a file can be written there, before any work starts.

    Raises a :class:`~hcm.core.errors.UsageError` naming the folder (read-only file system, no
    permission, a file in the way) instead of failing later with a traceback.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory, prefix=".hcm-write-check."):
            pass
    except OSError as error:
        raise UsageError(f"{what} {directory} is not writable ({error.strerror or error}); choose another "
                         f"folder (--workdir) or fix its permissions") from error
    return directory
