"""``hcm cache info`` and ``hcm cache verify``: what they print (``hcm.cache.inspect``) and their exit status."""

from __future__ import annotations

import json
import os
import sys

from hcm.cache.inspect import cache_info, format_info, verify_cache
from hcm.cache.schema import CacheError


def info_report(directory: str | os.PathLike, as_json: bool = False, verbose: bool = False) -> tuple[str, int]:
    """What ``hcm cache info`` prints, and its exit status (1 with a clear message when not a cache)."""
    try:
        info = cache_info(directory)
    except CacheError as exc:
        return f"error: {exc}", 1
    return (json.dumps(info, indent=1) if as_json else format_info(info, verbose)), 0


def verify_report(directory: str | os.PathLike) -> tuple[str, int]:
    """What ``hcm cache verify`` prints (each problem, or OK), and its exit status (1 when anything is wrong)."""
    try:
        problems = verify_cache(directory)
    except CacheError as exc:
        return f"error: {exc}", 1
    if not problems:
        return f"OK: {directory}", 0
    return "\n".join([*problems, f"{len(problems)} problem(s) in {directory}"]), 1


def info_command(directory: str | os.PathLike, as_json: bool = False, verbose: bool = False) -> int:
    """``hcm cache info``: print the summary (an error to stderr); the exit status."""
    return _show(*info_report(directory, as_json, verbose))


def verify_command(directory: str | os.PathLike) -> int:
    """``hcm cache verify``: print each problem or OK (problems to stderr); the exit status."""
    return _show(*verify_report(directory))


def _show(text: str, status: int) -> int:
    print(text, file=sys.stderr if status else sys.stdout)
    return status
