"""Fixtures for the HTTP setup: real `ordersaga serve` processes on free loopback ports.

:class:`ServiceProcess` starts one service as its own OS process (uvicorn), waits until its
``/health`` answers, and can SIGKILL and restart it on the same port and database. Every process
a test starts is killed when the test ends, whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

STARTUP_TIMEOUT = 20.0
SERVICES = ("inventory", "shipping", "payment")


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get_json(url: str, timeout: float = 2.0, token: str | None = None) -> tuple[int, Any]:
    """(status, JSON body) of a GET (with a bearer ``token``), with no proxy in the way."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class ServiceProcess:
    """One `ordersaga serve SERVICE` process on 127.0.0.1:PORT with its database URL."""

    def __init__(
        self,
        service: str,
        db_url: str,
        log_dir: Path,
        world: Path | None = None,
        token: str | None = None,
        extra: tuple[str, ...] = (),
    ):
        self.service = service
        self.db_url = db_url
        self.token = token  # the service token it requires (ORDERSAGA_SERVICE_TOKEN)
        self.extra = extra
        self.port = free_port()
        self.world = world
        self.log_path = log_dir / f"{service}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> ServiceProcess:
        args = [sys.executable, "-m", "ordersaga", "serve", self.service]
        args += ["--port", str(self.port), "--db", self.db_url, "--log-level", "warning"]
        if self.world is not None:
            args += ["--world", str(self.world)]
        args += self.extra
        env = ordersaga_env(**({"ORDERSAGA_SERVICE_TOKEN": self.token} if self.token else {}))
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.service} exited early:\n{self.log()}")
            try:
                status, body = get_json(f"{self.url}/health", timeout=1.0)
            except (OSError, ValueError):
                time.sleep(0.05)
                continue
            if status == 200 and body.get("service") == self.service:
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.service} not healthy after {timeout} s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        """SIGTERM, then wait for the graceful exit (SIGKILL if it does not come)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def stats(self) -> dict[str, Any]:
        status, body = get_json(f"{self.url}/stats", token=self.token)
        assert status == 200, body
        result: dict[str, Any] = body
        return result

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """``start_service(name, db_url, wait=True)``: a started process, killed after the test."""
    started: list[ServiceProcess] = []

    def start(service: str, db_url: str, *, wait: bool = True, **kw: Any) -> ServiceProcess:
        process = ServiceProcess(service, db_url, tmp_path, **kw)
        started.append(process)
        return process.start(wait=wait)

    yield start
    for process in started:
        process.kill()


def sqlite_url(directory: Path, service: str) -> str:
    return f"sqlite:///{directory / f'{service}.db'}"


def services_arg(processes: dict[str, ServiceProcess]) -> str:
    return ",".join(f"{name}={p.url}" for name, p in processes.items())


def dbs_arg(urls: dict[str, str]) -> str:
    return ",".join(f"{name}={url}" for name, url in urls.items())


#: The data key of the tests' PostgreSQL setups (submitters, the API and workers share it).
TEST_DATA_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def ordersaga_env(**extra: str) -> dict[str, str]:
    """The environment for a child `ordersaga`: no proxies, no armed crash points, no secrets
    but the tests' data key and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    for name in (
        "ORDERSAGA_CRASH_AT",
        "ORDERSAGA_SERVICE_TOKEN",
        "ORDERSAGA_API_KEYS",
        "ORDERSAGA_OPERATOR_TOKEN",
    ):
        env.pop(name, None)
    env["ORDERSAGA_DATA_KEY"] = TEST_DATA_KEY
    env.update(extra)
    return env


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def stub() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """``await stub(handler)``: the base URL of a server answering every request with it."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()
