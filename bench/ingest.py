"""Ingest throughput: N synthetic 3328x4096 16-bit MG DICOMs through the REST endpoint of gunicorn.

    python -m bench.ingest [--n 50] [--workers 2] [--database-url postgres://...]

Reports images/s, MB/s and the peak RSS of a server process. Uses a scratch
database (SQLite unless --database-url) and media folder; tasks run in-process
unless REDIS_URL is set.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._server import demo_token, manage, peak_rss_mb, scratch_env, start_gunicorn, upload  # noqa: E402
from tests.dicom_factory import mg_dataset, to_bytes  # noqa: E402


def synthetic(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    base = (rng.random((4096, 3328)) * 16383).astype(np.uint16)
    paths = []
    for i in range(n):
        pixels = np.roll(base, i * 7, axis=0)
        path = folder / f"mg{i:03d}.dcm"
        path.write_bytes(to_bytes(mg_dataset(pixels, bits=16, patient_id=f"BENCH-{i // 4}", seed=i)))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = scratch_env(tmp, DATABASE_URL=args.database_url)
        manage(env, "migrate", "--noinput")
        token = demo_token(env)
        files = synthetic(tmp, args.n)
        total_mb = sum(p.stat().st_size for p in files) / 1e6
        server = start_gunicorn(env, args.port, args.workers)
        try:
            latencies = []
            started = time.perf_counter()
            for path in files:
                t0 = time.perf_counter()
                status, body = upload(args.port, token, path)
                latencies.append(time.perf_counter() - t0)
                if status != 201:
                    raise SystemExit(f"upload failed: {status} {body[:200]!r}")
            elapsed = time.perf_counter() - started
            rss = peak_rss_mb(server)
        finally:
            server.terminate()
            server.wait()
    lat = np.array(latencies) * 1000
    print("| server | files | MB | images/s | MB/s | latency p50 / p95 ms | peak RSS per process MB |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| gunicorn, {args.workers} workers, {'PostgreSQL' if args.database_url else 'SQLite'} | {args.n} | "
        f"{total_mb:.0f} | {args.n / elapsed:.2f} | {total_mb / elapsed:.1f} | "
        f"{np.percentile(lat, 50):.0f} / {np.percentile(lat, 95):.0f} | {rss:.0f} |"
    )


if __name__ == "__main__":
    main()
