"""Ingest throughput against Orthanc, the same files in the same run (issue 14).

    python -m bench.ingest_vs_orthanc [--n 50] [--workers 4] [--concurrency 4] \
        --database-url postgres://postgres@localhost:5432/bench_ingest --redis-url redis://127.0.0.1:6379/11

`../shared/tools/orthanc_ingest.py gen` writes N synthetic 27 MB MG files; its `orthanc`
subcommand POSTs them to a fresh Orthanc's /instances from 1 client and from C clients; its
`http` subcommand does the same to the portal's `POST /api/v1/images/` on gunicorn + PostgreSQL,
with an empty database and media folder for each mode and body: multipart/form-data (the
browser's and most clients' way) and the DICOM as the whole body (`application/dicom`, the way
Orthanc's /instances takes it). Renditions and predictions are queued on
the Redis broker (no worker drains them during the run: the figure is what the upload answers).
Peak RSS: Orthanc's VmHWM; the portal's largest gunicorn process. `uptime` is printed with each
figure: the CPU is shared.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._server import demo_token, manage, peak_rss_mb, scratch_env, start_gunicorn  # noqa: E402

TOOL = ROOT.parent / "shared" / "tools" / "orthanc_ingest.py"


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load average:")[-1].strip()


def tool(*args: str) -> dict:
    out = subprocess.run([sys.executable, str(TOOL), *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def fresh_database(url: str) -> None:
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    base = ["-h", parsed.hostname or "localhost", "-p", str(parsed.port or 5432), "-U", parsed.username or "postgres"]
    subprocess.run(["dropdb", *base, "--if-exists", "--force", name], check=True)
    subprocess.run(["createdb", *base, name], check=True)


def purge(env: dict) -> None:
    for queue in ("render", "inference", "export"):
        subprocess.run(
            [sys.executable, "-m", "celery", "-A", "portal", "purge", "-f", "-Q", queue],
            cwd=ROOT,
            env=env,
            capture_output=True,
            check=False,
        )


def portal(folder: Path, mode: str, args, port: int, raw: bool) -> dict:
    fresh_database(args.database_url)
    with tempfile.TemporaryDirectory(prefix="bench-portal-") as tmp:
        env = scratch_env(
            Path(tmp),
            DATABASE_URL=args.database_url,
            REDIS_URL=args.redis_url,
            PORTAL_UPLOAD_THROTTLE="100000/minute",
        )
        manage(env, "migrate", "--noinput")
        token = demo_token(env)
        server = start_gunicorn(env, port, workers=args.workers)
        try:
            before = load()
            body = ["--content-type", "application/dicom"] if raw else ["--field", "file"]
            result = tool(
                "http",
                f"http://127.0.0.1:{port}/api/v1/images/",
                str(folder),
                "--mode",
                mode,
                "-c",
                str(args.concurrency),
                "--reps",
                "1",
                *body,
                "-H",
                f"Authorization: Token {token}",
            )
            result["peak_rss_mb"] = peak_rss_mb(server)
            result["load_before"], result["load_after"] = before, load()
            stored = manage(env, "shell", "-c", "from screening.models import Image; print(Image.objects.count())")
            result["stored"] = int(stored.strip().splitlines()[-1])
        finally:
            server.terminate()
            server.wait(timeout=60)
            purge(env)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--concurrency", type=int, default=4, help="clients in the concurrent mode")
    parser.add_argument("--database-url", required=True, help="a scratch PostgreSQL database (dropped and re-made)")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--files", default="", help="reuse a folder of generated files")
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-mg-") as tmp:
        folder = Path(args.files) if args.files else Path(tmp)
        if not args.files:
            subprocess.run([sys.executable, str(TOOL), "gen", str(folder), "-n", str(args.n)], check=True)
        report: dict = {"files": len(list(folder.glob("*.dcm")))}
        for mode in ("seq", "conc"):
            orthanc = tool("orthanc", str(folder), "--mode", mode, "-c", str(args.concurrency), "--reps", "1")
            orthanc["load_after"] = load()
            report[f"orthanc_{mode}"] = orthanc
            report[f"portal_multipart_{mode}"] = portal(folder, mode, args, args.port, raw=False)
            report[f"portal_dicom_body_{mode}"] = portal(folder, mode, args, args.port, raw=True)
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
