"""Inference benchmark: preprocessing and forward latency, batch throughput, peak RSS.

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 python bench/inference.py [--model PATH] [--threads 2]

Inputs are synthetic (a 1024x1024 8-bit PNG and a 3328x4096 16-bit DICOM of a
phantom breast), so the bench needs no patient data. CUDA is used when present.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml.checkpoint import BASELINE_PATH  # noqa: E402
from ml.config import ModelConfig  # noqa: E402
from ml.inference import Predictor, load_image  # noqa: E402
from ml.model import build_model  # noqa: E402
from ml.preprocess import preprocess  # noqa: E402


def phantom(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """A breast-shaped half ellipse on the left edge with texture, in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    breast = ((xx / (cols * 0.5)) ** 2 + ((yy - rows / 2) / (rows * 0.42)) ** 2) <= 1.0
    image = np.full((rows, cols), 0.02, dtype=np.float32)
    image[breast] = np.clip(0.45 + 0.1 * rng.standard_normal(int(breast.sum())), 0.1, 0.9)
    image[40:120, cols - 200 : cols - 60] = 1.0  # a film label
    return image


def write_png(path: Path) -> Path:
    Image.fromarray((phantom(1024, 1024) * 255).astype(np.uint8)).save(path)
    return path


def write_dicom(path: Path) -> Path:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    stored = (phantom(4096, 3328, seed=1) * 16383).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality, ds.PhotometricInterpretation, ds.ImageLaterality = "MG", "MONOCHROME2", "L"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 14, 13, 0
    ds.WindowCenter, ds.WindowWidth = 8192, 16384
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def timed(fn: Callable[[], object], reps: int, sync: Callable[[], None]) -> list[float]:
    fn()  # warm-up
    sync()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint (default: shipped baseline, else an untrained model)")
    parser.add_argument("--device", help="cpu or cuda (default: CUDA when available)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--batches", default="1,8,32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.model or BASELINE_PATH.exists():
        predictor = Predictor.load(args.model, device=args.device)
    else:
        config = ModelConfig()
        checkpoint = {"threshold": 0.5, "calibration": {"a": 1.0, "b": 0.0}}
        predictor = Predictor(
            build_model(config),
            checkpoint,
            torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu")),
            "untrained",
        )
    device = predictor.device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    config = predictor.config
    rows: list[tuple[str, str]] = []

    with tempfile.TemporaryDirectory() as tmp:
        files = {
            "1024x1024 PNG (8-bit)": write_png(Path(tmp) / "p.png"),
            "3328x4096 DICOM (16-bit)": write_dicom(Path(tmp) / "d.dcm"),
        }
        for name, path in files.items():
            image = load_image(path)
            dec = timed(lambda p=path: load_image(p), args.reps, sync)
            pre = timed(lambda im=image: preprocess(im, "L", config), args.reps, sync)
            e2e = timed(lambda im=image: predictor.predict([(im, "L")]), args.reps, sync)
            rows.append((f"{name}: decode ms p50 / p95", f"{np.median(dec):.0f} / {np.percentile(dec, 95):.0f}"))
            rows.append((f"{name}: preprocess ms p50 / p95", f"{np.median(pre):.0f} / {np.percentile(pre, 95):.0f}"))
            rows.append(
                (
                    f"{name}: predict (preprocess+forward+heatmap) ms p50 / p95",
                    f"{np.median(e2e):.0f} / {np.percentile(e2e, 95):.0f}",
                )
            )

        # The inference budget: a 4-view exam (L/R x CC/MLO, full-field 16-bit DICOM already decoded) at
        # batch 1, with breast and exam scores, as a worker predicts one exam (display-size heatmaps).
        views = [(load_image(files["3328x4096 DICOM (16-bit)"]), side) for side in ("L", "L", "R", "R")]

        def exam() -> None:
            results = [predictor.predict([item], batch_size=1, heatmap_max_side=1024)[0] for item in views]
            predictor.score_exam([(side, r.logit) for (_, side), r in zip(views, results, strict=True)])

        ex = timed(exam, max(1, args.reps // 3), sync)
        rows.append(
            (
                "4-view exam (16-bit DICOMs, decoded), batch 1, 1024 px heatmaps, breast and exam scores: s p50 / max",
                f"{np.median(ex) / 1000:.2f} / {np.max(ex) / 1000:.2f}",
            )
        )
        x1 = preprocess(load_image(files["1024x1024 PNG (8-bit)"]), "L", config).image[None]
        fwd = timed(lambda: predictor.forward(x1), args.reps, sync)
        rows.append(
            (
                f"forward only, batch 1, {config.input_height}x{config.input_width} ms p50 / p95",
                f"{np.median(fwd):.0f} / {np.percentile(fwd, 95):.0f}",
            )
        )
        png = load_image(files["1024x1024 PNG (8-bit)"])
        for b in (int(v) for v in args.batches.split(",")):
            reps = max(1, min(args.reps, 40 // b))
            items = [(png, "L")] * b
            t = timed(lambda it=items, bs=b: predictor.predict(it, batch_size=bs), reps, sync)
            rows.append((f"predict() throughput, batch {b}, 1024 PNG (images/s)", f"{b / (np.median(t) / 1000):.1f}"))
            ready = np.repeat(x1, b, axis=0)
            t = timed(lambda r=ready: predictor.forward(r), reps, sync)
            rows.append((f"bare model forward, batch {b} (images/s)", f"{b / (np.median(t) / 1000):.1f}"))

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(("peak RSS (MB)", f"{peak_mb:.0f}"))
    where = torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"Model {predictor.version} on {where}, torch {torch.__version__}, load average {load}\n")
    print("| measure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
