"""The real load-balancer config (deploy/nginx.conf) with Debian's nginx on loopback, in front of
the stack's gateways and dashboard; and docker-compose.yml validated by docker-compose.

These need the system packages nginx and docker-compose: ``make test-deploy`` installs them.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from justchat.client import Client
from justchat.devservers import find_free_port
from justchat.stack import Stack

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def loopback_config(stack: Stack, port: int, prefix: Path) -> str:
    """deploy/nginx.conf with its upstreams pointed at the stack and its listener on loopback."""
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    gateways = "".join(
        f"        server {url.split('/')[2]} max_fails=0;\n" for url in stack.gateway_urls
    )
    conf, n = re.subn(
        r"(upstream gateways \{\n\s+least_conn;\n)(?:\s*#.*\n)*\s*server [^\n]+\n",
        lambda m: m.group(1) + gateways,
        conf,
    )
    assert n == 1
    conf, n = re.subn(r"server dashboard:8000;", f"server 127.0.0.1:{stack.config.api_port};", conf)
    assert n == 1
    conf, n = re.subn(r"listen 80;", f"listen 127.0.0.1:{port};", conf)
    assert n == 1
    # Run unprivileged-style in a private prefix: pid, logs and temp files under it.
    head = f"pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\ndaemon off;\n"
    conf = conf.replace(
        "http {",
        f"http {{\n    access_log {prefix}/access.log;\n"
        f"    client_body_temp_path {prefix}/body;\n"
        f"    proxy_temp_path {prefix}/proxy;\n",
        1,
    )
    return head + conf


@pytest.fixture
def balancer(stack: Stack, tmp_path: Path) -> Iterator[str]:
    port = find_free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(loopback_config(stack, port, tmp_path))
    check = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    nginx = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf)])
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)


@pytest.mark.slow
async def test_chat_and_api_through_the_load_balancer(balancer: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{balancer}", timeout=10) as http:
        assert (await http.get("/health")).status_code == 200
        signup = await http.post(
            "/api/v1/auth/signup", json={"username": "lbuser1", "password": "Pass-word1"}
        )
        assert signup.status_code in (201, 409)
        preflight = await http.options(
            "/api/v1/auth/me",
            headers={
                "Origin": "http://app.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "Authorization",
            },
        )
        assert preflight.status_code in (200, 204)
    # Many sockets through one address: least_conn spreads them over both gateways, and
    # clients on different replicas still chat.
    clients = [await Client.connect(f"ws://{balancer}/ws") for _ in range(6)]
    try:
        for client in clients:
            await client.join(424242)
            await client.expect("channel_join", where=lambda f, c=client: f.payload.user == c.user)
        await clients[0].send(424242, "through nginx")
        got = await asyncio.gather(*(c.expect("chat_send") for c in clients))
        assert {f.payload.content for f in got} == {"through nginx"}
    finally:
        for client in clients:
            await client.close()


def test_compose_file_is_valid() -> None:
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "JUSTCHAT_JWT_SECRET": "x" * 40},
    )
    assert result.returncode == 0, result.stderr
