"""`swimctl serve` processes on one Redis, for the multi-hub tests: each on a port of its own
that it keeps across restarts, its log in a file, and ways to end it (SIGTERM, kill -9,
SIGSTOP)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from tests.redis_server import free_port

SWIMCTL = [sys.executable, "-m", "swimctl"]
URL_LINE = re.compile(r"listening on (ws://\S+)")


def make_key(db: str, tier: str = "developer") -> tuple[str, int]:
    out = subprocess.run([*SWIMCTL, "keys", "create", "--tier", tier, "--owner", "t", "--json",
                          "--db", db], capture_output=True, text=True, check=True)
    created = orjson.loads(out.stdout)
    return created["api_key"], int(created["id"])


class HubProcess:
    def __init__(self, name: str, directory: Path, db: str, broker: str, *args: str) -> None:
        self.name = name
        self.db = db
        self.broker = broker
        self.args = args
        self.port = free_port()
        self.log_path = directory / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/swim/v1/ws"

    def start(self, timeout: float = 20.0) -> HubProcess:
        env = {**os.environ, "SWIM_DB": self.db, "SWIM_BROKER": self.broker}
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*SWIMCTL, "serve", "--port", str(self.port), *self.args], env=env,
                stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + timeout
        while URL_LINE.search(self.log_path.read_text(errors="replace")[offset:]) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"hub {self.name} did not start:\n{self.log()[-2000:]}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        """kill -9: nothing cleaned up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, and the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def wait(self, timeout: float = 20.0) -> int:
        """The exit status, once it stops by itself."""
        assert self.proc is not None
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
