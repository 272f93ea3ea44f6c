"""Build and load hcm's small C++ kernels with the system compiler, once per machine.

A kernel is one C++ source file beside this module with ``extern "C"`` functions. On first use
it is compiled with ``$CXX`` (default ``c++``) and :data:`FLAGS` into a shared library in
``$HCM_KERNEL_CACHE`` (default ``~/.cache/hcm/kernels``), named by a hash of the source, the
compiler command, the flags and the machine (``-march=native`` code only runs on a CPU like the
one that built it). The compiler writes to a temporary file that is renamed onto that name, so a
process never loads a half-written library, also when several processes build at once. The
library is then loaded with :mod:`ctypes`; no torch headers are involved, so a build takes about
a second.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import subprocess
from pathlib import Path

from hcm.core.files import atomic_write

FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17")
DEFAULT_CACHE = Path("~/.cache/hcm/kernels")
BUILD_TIMEOUT_S = 300


class KernelUnavailable(RuntimeError):
    """A kernel could not be built or loaded here; the message says why in one line."""


def kernel_cache_folder() -> Path:
    """Where built kernels live: ``$HCM_KERNEL_CACHE`` or ``~/.cache/hcm/kernels``."""
    return Path(os.environ.get("HCM_KERNEL_CACHE") or DEFAULT_CACHE).expanduser()


def compiler_command() -> list[str]:
    """The C++ compiler command: ``$CXX`` split like a shell would (``ccache g++`` works), or ``c++``."""
    return shlex.split(os.environ.get("CXX") or "c++")


def _machine() -> str:
    """The CPU the binary is built for: architecture, OS and, on Linux, the CPU's model and feature flags."""
    keys = ("model name", "flags", "Features", "CPU part")
    lines: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key = line.split(":", 1)[0].strip()
                if key in keys:
                    lines.setdefault(key, line.strip())
                elif not line.strip() and lines:  # the first CPU is enough
                    break
    except OSError:
        pass
    return " ".join([platform.system(), platform.machine(), *lines.values()])


def library_path(source: Path, command: list[str]) -> Path:
    """The cached library for ``source`` built by ``command`` on this machine."""
    digest = hashlib.sha256(source.read_bytes())
    digest.update("\0".join([*command, *FLAGS, _machine()]).encode())
    return kernel_cache_folder() / f"{source.stem}-{digest.hexdigest()[:16]}.so"


def _compile(command: list[str], source: Path, output: Path) -> None:
    try:
        done = subprocess.run([*command, *FLAGS, str(source), "-o", str(output)],
                              capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise KernelUnavailable(f"cannot run the C++ compiler {shlex.join(command)!r}: {error}") from error
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        detail = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "no output")
        raise KernelUnavailable(
            f"compiling {source.name} with {shlex.join(command)!r} failed (exit {done.returncode}): {detail[:200]}"
        )


def build(source: Path) -> Path:
    """The path of ``source``'s library, compiling it first when the cache does not hold it."""
    command = compiler_command()
    target = library_path(source, command)
    if not target.exists():
        try:
            atomic_write(target, lambda tmp: _compile(command, source, tmp))
        except OSError as error:
            raise KernelUnavailable(
                f"cannot write {target}: {error} (set HCM_KERNEL_CACHE to a writable folder)"
            ) from error
    return target


def load(source: Path) -> ctypes.CDLL:
    """``source`` built (or found in the cache) and loaded; raises :class:`KernelUnavailable`."""
    path = build(source)
    try:
        return ctypes.CDLL(str(path))
    except OSError as error:
        raise KernelUnavailable(f"cannot load {path}: {error}") from error
