"""Pipeline throughput: upload N images through the API, a real Celery worker predicts them.

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 \
    python -m bench.pipeline [--n 100] [--model PATH] [--database-url postgres://...] [--redis-url redis://...]

Reports upload->prediction latency p50/p95 and stored predictions per second,
then, in the same run on the same machine, the bare model forward throughput on
ready tensors (the worker's batch size) and the pipeline's overhead over it.

With --queue-first every image is uploaded before the worker starts, so the worker never waits for
uploads and shares the cores with nothing but PostgreSQL: stored predictions/s is then its steady rate
(from its first batch stored to its last), the figure to compare with the bare forward pass; the
per-image breakdown (preprocess on the loader thread, forward + heatmap) comes from the rows.
Needs PostgreSQL and Redis (defaults: localhost, scratch database bench_pipeline, Redis db 14).
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

import numpy as np
from PIL import Image as PILImage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._server import demo_token, manage, scratch_env, start_gunicorn, upload  # noqa: E402


def synthetic_pngs(folder: Path, n: int) -> list[Path]:
    """mini-MIAS-like 1024x1024 8-bit images: a breast against the left edge, texture, a label."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:1024, 0:1024]
    breast = (xx / 560.0) ** 2 + ((yy - 512) / 430.0) ** 2 <= 1
    paths = []
    for i in range(n):
        image = np.full((1024, 1024), 5, np.uint8)
        image[breast] = np.clip(110 + 25 * rng.standard_normal(int(breast.sum())), 20, 240).astype(np.uint8)
        image[40:100, 820:960] = 250
        path = folder / f"img{i:03d}.png"
        PILImage.fromarray(image).save(path)
        paths.append(path)
    return paths


def bare_forward(model_path: Path, batch: int, reps: int = 5) -> list[float]:
    """Images per second of the model alone on ready tensors (the bench's own images, preprocessed), batch as
    in the worker: one figure per repetition."""
    import torch

    from ml.inference import Predictor
    from ml.preprocess import preprocess

    torch.set_num_threads(os.cpu_count() or 1)
    predictor = Predictor.load(model_path)
    with tempfile.TemporaryDirectory() as tmp:
        files = synthetic_pngs(Path(tmp), batch)
        x = np.stack(
            [
                preprocess(np.asarray(PILImage.open(f), dtype=np.float32) / 255.0, "LR"[i % 2], predictor.config).image
                for i, f in enumerate(files)
            ]
        )
    predictor.forward(x)  # warm-up
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        predictor.forward(x)
        rates.append(batch / (time.perf_counter() - t0))
    return rates


def batch_timing(log_text: str) -> dict[str, float]:
    """Medians of the worker's per-batch timing lines (screening.ai.services.predictions._log_timing)."""
    rows = [
        dict((k, float(v)) for k, v in re.findall(r"(\w+)=([\d.]+)", line.split("ms/image:", 1)[1]))
        for line in log_text.splitlines()
        if "batch timing ms/image:" in line
    ]
    names = ["decode", "preprocess", "forward", "heatmap", "store"]
    return {name: float(np.median([row[name] for row in rows])) for name in names} if rows else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--model", type=Path, default=ROOT / "ml" / "weights" / "baseline.pt")
    parser.add_argument("--database-url", default="postgres://postgres@localhost:5432/bench_pipeline")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--queue-first", action="store_true", help="upload everything, then start the worker")
    args = parser.parse_args()

    bare_before = bare_forward(args.model, args.batch)
    db_name = args.database_url.rsplit("/", 1)[1]
    base = args.database_url.rsplit("/", 1)[0]
    subprocess.run(["psql", f"{base}/postgres", "-qc", f"DROP DATABASE IF EXISTS {db_name}"], check=True)
    subprocess.run(["psql", f"{base}/postgres", "-qc", f"CREATE DATABASE {db_name}"], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = scratch_env(
            tmp,
            DATABASE_URL=args.database_url,
            REDIS_URL=args.redis_url,
            PORTAL_INFERENCE_BATCH=str(args.batch),
            MALLOC_MMAP_MAX_="0",
            MALLOC_TRIM_THRESHOLD_="100000000000",
        )
        manage(env, "migrate", "--noinput")
        manage(env, "register_model", str(args.model.resolve()), "--name", "bench", "--promote")
        token = demo_token(env)
        files = synthetic_pngs(tmp, args.n)
        subprocess.run(
            [sys.executable, "-m", "celery", "-A", "portal", "purge", "-f", "-Q", "inference"],
            cwd=ROOT,
            env=env,
            capture_output=True,
        )

        worker_log = open(tmp / "worker.log", "w")  # noqa: SIM115 (closed with the run)

        def start_worker() -> subprocess.Popen:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "portal",
                    "worker",
                    "-Q",
                    "inference",
                    "-c",
                    "1",
                    "--prefetch-multiplier",
                    "1",
                    "-l",
                    "info",
                    "--without-gossip",
                    "--without-mingle",
                ],
                cwd=ROOT,
                env=env,
                stdout=worker_log,
                stderr=subprocess.STDOUT,
            )

        worker = None if args.queue_first else start_worker()
        server = start_gunicorn(env, args.port, workers=1)
        try:
            if worker is not None:
                time.sleep(8)  # the worker imports torch before its first task
            uploaded_at: dict[int, float] = {}
            started = time.time()
            for i, path in enumerate(files):
                sent = time.time()
                status, body = upload(args.port, token, path, {"patient_id": f"B{i // 2}", "laterality": "LR"[i % 2]})
                if status != 201:
                    raise SystemExit(f"upload failed: {status} {body[:200]!r}")
                uploaded_at[json.loads(body)["id"]] = sent
            if worker is None:
                worker = start_worker()
            code = (
                "import json,time;from screening.models import Prediction as P\n"
                "while P.objects.exclude(status__in=['done','failed']).exists(): time.sleep(0.2)\n"
                "print(json.dumps([[p.image_id,p.status,p.updated.timestamp(),p.preprocess_ms,p.inference_ms]"
                " for p in P.objects.all()]))"
            )
            rows = json.loads(manage(env, "shell", "-c", code).strip().splitlines()[-1])
        finally:
            server.terminate()
            server.wait()
            if worker is not None:
                worker.terminate()
                worker.wait()
            worker_log.close()
            timing = batch_timing((tmp / "worker.log").read_text())
    done = [(row[0], row[2]) for row in rows if row[1] == "done"]
    latency = np.array([ts - uploaded_at[image_id] for image_id, ts in done]) * 1000
    if args.queue_first:
        # Steady rate: from the first stored batch to the last (the first batch also paid the model's loading).
        stamps = sorted(ts for _, ts in done)
        first = sum(1 for ts in stamps if ts == stamps[0])
        rate = (len(stamps) - first) / (stamps[-1] - stamps[0])
    else:
        rate = len(done) / (max(ts for _, ts in done) - started)
    preprocess = np.median([row[3] for row in rows if row[1] == "done" and row[3] is not None] or [0])
    forward = np.median([row[4] for row in rows if row[1] == "done" and row[4] is not None] or [0])
    # The median of the repetitions before and after the pipeline ran: a typical rate on this machine, as the
    # pipeline's own rate (over a minute of work) is; the best single repetition would flatter the bare pass.
    bare = float(np.median(bare_before + bare_forward(args.model, args.batch)))
    overhead = (bare / rate - 1) * 100
    print(
        "| images | done | upload->prediction p50 / p95 ms | stored predictions/s | bare forward images/s "
        f"(batch {args.batch}) | pipeline overhead |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {args.n} | {len(done)} | {np.percentile(latency, 50):.0f} / {np.percentile(latency, 95):.0f} | "
        f"{rate:.2f} | {bare:.2f} | {overhead:.0f}% |"
    )
    if timing:
        print(
            "per image, medians over the worker's batches (ms): "
            + ", ".join(f"{name} {value:.1f}" for name, value in timing.items())
            + " (decode and preprocess on the loader thread; store = heatmap PNGs, the batch's transaction and"
            " its studies' exam scores)"
        )
    mode = "uploaded first, then drained" if args.queue_first else "uploads and worker concurrent"
    print(
        f"\n{mode}; per image (medians of the stored rows): preprocess {preprocess:.0f} ms on the loader "
        f"thread, forward + heatmap {forward:.0f} ms; bare forward {1000 / bare:.0f} ms per image at batch {args.batch}"
    )


if __name__ == "__main__":
    main()
