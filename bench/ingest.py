"""Ingest throughput and memory.

    python -m bench.ingest [--n 50] [--workers 2] [--database-url postgres://...]
    python -m bench.ingest --memory [--cases png8,dicom16,png16,j2k]

Throughput: N synthetic 3328x4096 16-bit MG DICOMs through the REST endpoint of
gunicorn; reports images/s, MB/s and the peak RSS of a server process. Uses a
scratch database (SQLite unless --database-url) and media folder; tasks run
in-process unless REDIS_URL is set.

Memory: the peak RSS one upload of a 60-megapixel image adds to the process that
ingests it. Each case runs the ingest service in a fresh process on a scratch
SQLite database: it ingests a small file of the same kind first (imports, plugins,
connections), resets the process's peak RSS (Linux: /proc/self/clear_refs; plain
ru_maxrss would also count the forked parent's pages), ingests the large file and
reports its peak RSS less its RSS before. The target is at most 3x the decoded
8-bit image (180 MB for 60 megapixels).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._server import demo_token, manage, peak_rss_mb, scratch_env, start_gunicorn, upload  # noqa: E402
from tests.dicom_factory import mg_dataset, phantom, to_bytes  # noqa: E402


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


MEGAPIXELS_60 = (8660, 6928)  # 59,996,480 pixels, a 3:2.5 detector shape, under the 60 MP cap


def _large_file(kind: str, folder: Path) -> Path:
    from PIL import Image
    from pydicom.uid import JPEG2000Lossless

    rows, columns = MEGAPIXELS_60
    if kind == "png8":  # the case: a black PNG, tens of KB on disk
        path = folder / "black.png"
        Image.fromarray(np.zeros((rows, columns), np.uint8)).save(path)
    elif kind == "png16":
        path = folder / "noise16.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 65535, (rows, columns), dtype=np.uint16)).save(path)
    elif kind == "dicom16":
        path = folder / "noise16.dcm"
        pixels = np.random.default_rng(0).integers(0, 65535, (rows, columns), dtype=np.uint16)
        path.write_bytes(to_bytes(mg_dataset(pixels, bits=16, patient_id="BENCH-MEM")))
    elif kind == "j2k":
        path = folder / "phantom12-j2k.dcm"
        ds = mg_dataset(phantom(rows=rows, columns=columns, bits=12), patient_id="BENCH-J2K")
        ds.compress(JPEG2000Lossless)
        path.write_bytes(to_bytes(ds))
    else:
        raise SystemExit(f"unknown case {kind}")
    return path


def _small_file(kind: str, folder: Path) -> Path:
    from PIL import Image
    from pydicom.uid import JPEG2000Lossless

    if kind.startswith("png"):
        path = folder / f"small-{kind}.png"
        Image.fromarray(np.zeros((64, 48), np.uint16 if kind == "png16" else np.uint8)).save(path)
        return path
    ds = mg_dataset(bits=16 if kind == "dicom16" else 12, patient_id="BENCH-WARM")
    if kind == "j2k":
        ds.compress(JPEG2000Lossless)
    path = folder / f"small-{kind}.dcm"
    path.write_bytes(to_bytes(ds))
    return path


def _ingest_and_measure(small: str, large: str) -> None:
    """In a fresh process: warm up with `small`, then the peak RSS `large` adds, as JSON on stdout."""
    import django

    django.setup()
    from screening.intake.services.ingest import ingest_file

    def ingest(path: str):
        with open(path, "rb") as fh:
            return ingest_file(file=fh, filename=Path(path).name, patient_id="BENCH-MEM")

    ingest(small)
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    before = _status_mb("VmRSS")
    started = time.perf_counter()
    image = ingest(large).image
    seconds = time.perf_counter() - started
    peak = _status_mb("VmHWM")
    print(json.dumps({"added_mb": peak - before, "seconds": seconds, "rows": image.rows,
                      "columns": image.columns, "baseline_mb": before}))  # fmt: skip


def _status_mb(field: str) -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) / 1024


def memory(cases: list[str]) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for kind in cases:
            folder = tmp / kind
            folder.mkdir()
            # memory:// keeps predictions out of the measured process (no in-process task run).
            env = scratch_env(folder, CELERY_BROKER_URL="memory://", DJANGO_SETTINGS_MODULE="portal.settings")
            manage(env, "migrate", "--noinput")
            large, small = _large_file(kind, folder), _small_file(kind, folder)
            result = subprocess.run(
                [sys.executable, "-m", "bench.ingest", "--measure", str(small), str(large)],
                cwd=ROOT, env=env, check=True, capture_output=True, text=True,
            )  # fmt: skip
            measured = json.loads(result.stdout.strip().splitlines()[-1])
            picture_mb = measured["rows"] * measured["columns"] / 1e6
            rows.append((kind, large.stat().st_size / 1e6, measured, picture_mb))
    print("| image | file MB | 8-bit picture MB | peak RSS added MB | x 8-bit picture | s | RSS before MB |")
    print("|---|---|---|---|---|---|---|")
    for kind, file_mb, m, picture_mb in rows:
        print(
            f"| {kind} {m['rows']}x{m['columns']} | {file_mb:.1f} | {picture_mb:.0f} | {m['added_mb']:.0f} | "
            f"{m['added_mb'] / picture_mb:.2f} | {m['seconds']:.1f} | {m['baseline_mb']:.0f} |"
        )
    print("target: at most 3x the 8-bit picture")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--memory", action="store_true", help="peak RSS per upload of a 60-megapixel image")
    parser.add_argument("--cases", default="png8,dicom16", help="for --memory: png8, png16, dicom16, j2k")
    parser.add_argument("--measure", nargs=2, metavar=("SMALL", "LARGE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        _ingest_and_measure(*args.measure)
        return
    if args.memory:
        memory(args.cases.split(","))
        return

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
