"""Helpers shared by the benches: a gunicorn server in a scratch folder, a token, multipart upload."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def manage(env: dict, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout


def start_gunicorn(env: dict, port: int, workers: int = 2, threads: int = 1) -> subprocess.Popen:
    """gunicorn on loopback; with threads > 1 its gthread workers (as docker-compose.yml runs the portal)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "portal.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--timeout",
            "300",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    for _ in range(100):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("gunicorn did not start")


def demo_token(env: dict) -> str:
    out = manage(env, "setup_demo", "--cases", "no")  # accounts only: the benches seed their own studies
    line = next(line for line in out.splitlines() if "username=apiclient" in line)
    return line.split("api-token=")[1].strip()


def upload(port: int, token: str, path: Path, fields: dict | None = None) -> tuple[int, bytes]:
    """Stream one file as multipart/form-data without reading it into memory."""
    boundary = uuid.uuid4().hex
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in (fields or {}).items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = len(head) + path.stat().st_size + len(tail)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.putrequest("POST", "/api/v1/images/")
    conn.putheader("Authorization", f"Token {token}")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    conn.send(head)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            conn.send(chunk)
    conn.send(tail)
    response = conn.getresponse()
    return response.status, response.read()


def peak_rss_mb(proc: subprocess.Popen) -> float:
    """Largest VmHWM among the gunicorn master and its workers."""
    pids = [proc.pid] + [
        int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    ]
    peak = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
    return peak / 1024


def scratch_env(tmp: Path, **extra: str) -> dict:
    env = {**os.environ, "PORTAL_VAR_DIR": str(tmp), "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost", **extra}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env
