"""A throwaway PostgreSQL server for tests: initdb and pg_ctl of the Debian ``postgresql``
package, run as a non-root user, in a temporary folder, on a free loopback port.

``start_server()`` returns the server (``.url``, ``.stop()``) or raises ``Unavailable`` with the
reason it cannot start one here.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SEARCHED = "/usr/lib/postgresql/*/bin"


class Unavailable(RuntimeError):
    """No PostgreSQL server can be started on this machine (the message says why)."""


def binaries() -> Path:
    """The folder of initdb and pg_ctl (the newest installed version)."""
    found = sorted(Path("/").glob(SEARCHED.lstrip("/")),
                   key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    found = [p for p in found if (p / "initdb").is_file()]
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise Unavailable("PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run installs it)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    folder: Path
    bin: Path
    port: int
    user: dict

    @property
    def url(self) -> str:
        return f"postgresql://hcm@127.0.0.1:{self.port}/postgres"

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, capture_output=True, text=True, timeout=120, **self.user)

    def stop(self) -> None:
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def start_server() -> Server:
    """initdb + pg_ctl start; as root the server runs as the ``postgres`` user (initdb refuses root)."""
    folder_bin = binaries()
    user: dict = {}
    folder = Path(tempfile.mkdtemp(prefix="hcm-pg-"))
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            raise Unavailable("running as root and there is no 'postgres' user to run the server as") from None
        os.chown(folder, account.pw_uid, account.pw_gid)
        user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": [], "cwd": str(folder)}
    server = Server(folder, folder_bin, free_port(), user)
    steps = [
        [str(folder_bin / "initdb"), "-D", str(folder / "data"), "-U", "hcm", "--auth=trust", "-E", "UTF8",
         "--no-sync"],
        [str(folder_bin / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "server.log"), "-w", "-t", "60",
         "-o", f"-p {server.port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
    ]
    for step in steps:
        done = server.run(*step)
        if done.returncode != 0:
            log = (folder / "server.log").read_text() if (folder / "server.log").is_file() else ""
            server.stop()
            raise Unavailable(f"{Path(step[0]).name} failed ({done.returncode}): {done.stderr.strip()} {log[-500:]}")
    return server
