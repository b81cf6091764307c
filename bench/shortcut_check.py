"""Does burned-in text move the model's score? Paint a text-like block beside the breast and predict again.

    python -m bench.shortcut_check [--model PATH] [--data ../shared/data/rsna] [--n 40]

For `n` random images of a labelled folder (seed 0), a 30 x 170 block of random
bright pixels goes in the top corner away from the chest wall, where scanners burn
in their labels; the image is predicted with and without it. Prints the mean and
largest change of the probability (the model card's "Shortcut checks").
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    import torch

    from ml.data import find_image
    from ml.inference import Predictor, load_image
    from ml.preprocess import breast_mask

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint (default: the shipped baseline)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "rsna")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    predictor = Predictor.load(args.model, device="cpu")
    with open(args.data / "images.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(0)
    deltas = []
    for row in (rows[i] for i in rng.choice(len(rows), min(args.n, len(rows)), replace=False)):
        image = load_image(find_image(args.data / "images", row["image_id"]))
        mask, factor = breast_mask(image, predictor.config)
        breast_on_left = (np.flatnonzero(mask.any(axis=0)) * factor).mean() < image.shape[1] / 2
        x0 = image.shape[1] - 200 if breast_on_left else 20
        text = image.copy()
        block = (rng.random((30, 170)) > 0.5).astype(np.float32)
        text[20:50, x0 : x0 + 170] = np.maximum(text[20:50, x0 : x0 + 170], block)
        plain, painted = predictor.predict([(image, row["laterality"]), (text, row["laterality"])], batch_size=2)
        deltas.append(abs(plain.probability - painted.probability))
    deltas = np.array(deltas)
    result = {
        "images": int(deltas.size),
        "mean_abs_delta": float(deltas.mean()),
        "max_abs_delta": float(deltas.max()),
        "moved_over_0.01": int((deltas > 0.01).sum()),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
