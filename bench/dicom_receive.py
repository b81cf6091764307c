"""DICOM receive throughput: the portal's C-STORE receiver against Orthanc's, same files, same client.

    python -m bench.dicom_receive [--n 50] [--files DIR] [--database-url postgres://...]
        [--redis-url redis://... [--workers]]

N synthetic 4096x3328 MG files of about 27 MB (`../shared/tools/orthanc_ingest.py gen`;
--files reuses a folder of them) are sent by ONE dcmtk `storescu` association to
  - the portal: `manage.py dicom_receiver` on a scratch database (embedded SQLite, or
    --database-url, which must hold no images) and media folder. Every model version is marked
    not servable, so nothing is queued for prediction (in embedded mode a prediction would run
    in the receiver): this measures receive + ingest (validation, dedup, audit) only. With
    --redis-url (the production shape) the renditions are queued on the broker for the render
    workers (none runs during the run; the queue is purged after); without it (embedded mode)
    each is made in the receiver's process on a background thread, after the C-STORE answer; with
    --workers one Celery render worker makes them while the receiver receives (the production shape);
  - Orthanc (Debian package, 1.10.1 tested) on an empty temporary store.
Both runs happen in this one invocation, after os.sync(), with the files already in the page
cache. Reports images/s, MB/s (1e6 bytes of files sent), the peak RSS (VmHWM) of the receiving
process, and portal/Orthanc ratios; prints a Markdown row and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._server import manage, scratch_env  # noqa: E402
from tests.dicom_peers import ECHOSCU, STORESCU, free_port, orthanc  # noqa: E402

GENERATOR = ROOT.parent / "shared" / "tools" / "orthanc_ingest.py"


def vm_hwm_mb(pid: int) -> float:
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())[1]) / 1024


def send(port: int, called_ae: str, files: list[Path]) -> dict:
    """One storescu association with every file; the wall time and its answers."""
    os.sync()
    started = time.perf_counter()
    result = subprocess.run(
        [STORESCU, "-v", "-aet", "BENCH", "-aec", called_ae, "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    log = result.stdout + result.stderr
    answers = re.findall(r"Received Store Response \(([^)]*)\)", log)
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    return {
        "wall_s": round(wall, 2),
        "images_per_s": round(len(files) / wall, 2),
        "MB_per_s": round(megabytes / wall, 1),
        "stored": answers.count("Success"),
        "failed": len(files) - answers.count("Success"),
    }


def start_render_worker(env: dict, tmp: Path) -> subprocess.Popen:
    """One Celery render worker (the production shape: renditions made beside the receiver while it receives)."""
    with open(tmp / "worker.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", "render", "-c", "1", "--pool", "solo"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


def portal_run(files: list[Path], tmp: Path, database_url: str, redis_url: str = "", workers: bool = False) -> dict:
    env = scratch_env(tmp, DATABASE_URL=database_url, PORTAL_DICOM_ALLOWED_AES="BENCH@127.0.0.1,ECHOSCU@127.0.0.1")
    env.pop("REDIS_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    manage(env, "migrate", "--noinput")
    # Predictions off: a version that cannot serve queues nothing (enqueue_images).
    off = "from screening.models import ModelVersion; ModelVersion.objects.update(servable=False)"
    manage(env, "shell", "-c", off)
    count = "from screening.models import Image; print(Image.objects.count())"
    if int(manage(env, "shell", "-c", count).split()[-1]) != 0:
        sys.exit("the portal's database already holds images: give an empty one")
    worker = start_render_worker(env, tmp) if workers else None
    port = free_port()
    with open(tmp / "receiver.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "dicom_receiver", "--port", str(port), "--host", "127.0.0.1"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(  # poll until it answers a C-ECHO
            [ECHOSCU, "-aet", "ECHOSCU", "-aec", "SCREENING", "127.0.0.1", str(port)], capture_output=True
        ).returncode:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the receiver did not start, see {tmp / 'receiver.log'}")
            time.sleep(0.1)
        figures = send(port, "SCREENING", files)
        figures["peak_rss_MB"] = round(vm_hwm_mb(proc.pid), 1)
        figures["count_ok"] = int(manage(env, "shell", "-c", count).split()[-1]) == len(files)
        figures["load_average"] = load_average()
        return figures
    finally:
        proc.terminate()
        proc.wait(60)
        if worker:
            worker.terminate()
            worker.wait(120)
        if redis_url:
            subprocess.run(
                [sys.executable, "-m", "celery", "-A", "portal", "purge", "-f", "-Q", "render,inference"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                check=False,
            )


def load_average() -> str:
    """The CPU is shared with other jobs: every figure says how loaded it was."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def orthanc_run(files: list[Path], tmp: Path) -> dict:
    with orthanc(tmp) as pacs:
        figures = send(pacs.dicom_port, "ORTHANC", files)
        figures["peak_rss_MB"] = round(vm_hwm_mb(pacs.process.pid), 1)
        figures["count_ok"] = int(pacs.get("/statistics")["CountInstances"]) == len(files)
        figures["version"] = pacs.get("/system")["Version"]
        figures["load_average"] = load_average()
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--files", help="a folder of mg_*.dcm from orthanc_ingest.py gen (default: generate)")
    parser.add_argument("--database-url", default="", help="default: embedded SQLite in a scratch folder")
    parser.add_argument("--redis-url", default="", help="queue renditions on this broker (default: embedded mode)")
    parser.add_argument("--workers", action="store_true", help="with --redis-url: a render worker runs meanwhile")
    args = parser.parse_args()
    if args.workers and not args.redis_url:
        sys.exit("--workers needs --redis-url")
    if not (STORESCU and ECHOSCU):
        sys.exit("dcmtk (storescu, echoscu) is not installed")
    with tempfile.TemporaryDirectory(prefix="dicom-receive-") as scratch:
        tmp = Path(scratch)
        folder = Path(args.files) if args.files else tmp / "files"
        if not args.files:
            subprocess.run([sys.executable, str(GENERATOR), "gen", str(folder), "-n", str(args.n)], check=True)
        files = sorted(folder.glob("mg_*.dcm"))[: args.n]
        for path in files:  # into the page cache, so neither run reads the disk
            path.read_bytes()
        (tmp / "portal").mkdir()
        (tmp / "orthanc").mkdir()
        result = {
            "files": len(files),
            "total_MB": round(sum(f.stat().st_size for f in files) / 1e6, 1),
            "database": "PostgreSQL" if args.database_url else "SQLite",
            "predictions": "off (no servable model version)",
            "orthanc": orthanc_run(files, tmp / "orthanc"),
            "renditions": (
                "made by a render worker meanwhile"
                if args.workers
                else "queued on the broker"
                if args.redis_url
                else "made after each answer (embedded mode)"
            ),
            "portal": portal_run(files, tmp / "portal", args.database_url, args.redis_url, args.workers),
        }
    portal, pacs = result["portal"], result["orthanc"]
    result["ratio_images_per_s"] = round(portal["images_per_s"] / pacs["images_per_s"], 2)
    result["ratio_peak_rss"] = round(portal["peak_rss_MB"] / pacs["peak_rss_MB"], 2)
    for name, fig in (("portal receiver, " + result["database"], portal), (f"Orthanc {pacs['version']}", pacs)):
        print(
            f"| {name} | {len(files)} | {fig['images_per_s']} | {fig['MB_per_s']} | {fig['peak_rss_MB']} MB "
            f"| {fig['stored']}/{len(files)} |"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
