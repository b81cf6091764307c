"""Training: frozen ImageNet backbone features, a small patch head trained on top.

On two CPU cores a whole-image fine-tune of 216 mammograms memorises them, so the
backbone is frozen: each image (and a few augmented views of it) goes through the
backbone once, and the patch head then trains in seconds per epoch with
image-level labels plus patch-level labels from the finding positions and radii.

    python -m ml.train --images DIR --labels images.csv --findings findings.csv \
        --out ml/weights/baseline.pt --cv 5 --seed 0

`fit()` is the function the portal's retraining job calls with its own Examples.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ml.adabn import adapt_batchnorm
from ml.calibrate import exam_levels, operating_point, operating_point_record, sources_on_split
from ml.checkpoint import make_checkpoint, save_checkpoint
from ml.config import ModelConfig
from ml.cv import train_with_cv
from ml.data import Example, load_folder, patient_split, summarize
from ml.features import Progress, extract_features
from ml.fit import fit_projection, fold_head, head_for, head_logits, project, seed_all, train_head, unfold_head
from ml.model import MammoNet, build_model


def _init_model(
    config: ModelConfig,
    init_checkpoint: dict[str, Any] | str | Path | None,
    seed: int,
    examples: Sequence[Example] = (),
    cache_dir: str | Path | None = None,
) -> MammoNet:
    if init_checkpoint is None:
        model = build_model(config, seed=seed)
        if config.adabn:  # a champion carries its adapted statistics; a new model adapts to these images
            adapt_batchnorm(model, examples, config, cache_dir)
        return model
    if not isinstance(init_checkpoint, dict):
        from ml.checkpoint import load_checkpoint

        init_checkpoint = load_checkpoint(init_checkpoint)
    return build_model(config, init_checkpoint["state_dict"])


def fit(
    train: Sequence[Example],
    val: Sequence[Example] | None,
    config: ModelConfig | None = None,
    init_checkpoint: dict[str, Any] | str | Path | None = None,
    progress: Progress | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    command: str = "",
) -> dict[str, Any]:
    """Train on `train`, stop early and calibrate on `val` (patients never shared); return a checkpoint dict.

    With `val=None` a patient-level split of `train` (config.val_fraction) is made.
    `init_checkpoint` (the current champion, dict or path) starts the head from its
    weights; with `config=None` its config is used too.
    """
    if config is None and init_checkpoint is not None:
        if not isinstance(init_checkpoint, dict):
            from ml.checkpoint import load_checkpoint

            init_checkpoint = load_checkpoint(init_checkpoint)
        config = ModelConfig.from_dict(init_checkpoint["config"])  # continue the champion as it was configured
    config = config or ModelConfig()
    if not val:
        train, val = patient_split(train, config.val_fraction, seed)
    shared = {ex.patient_id for ex in train} & {ex.patient_id for ex in val}
    if shared:
        raise ValueError(f"{len(shared)} patients are in both training and validation data")
    seed_all(seed)
    started = time.time()
    model = _init_model(config, init_checkpoint, seed, [*train, *val], cache_dir)
    train_f = extract_features(model, train, config, cache_dir=cache_dir, progress=progress)
    val_f = extract_features(model, val, config, views=["orig"], cache_dir=cache_dir, progress=progress)
    projection = fit_projection(train_f, config.feature_projection, seed=seed)
    small = head_for(config, (projection.components if projection is not None else train_f[0].views[0]).shape[0])
    if init_checkpoint is not None:
        unfold_head(small, projection, model)  # continue the champion's head where it left off
    small_val = project(val_f, projection)
    result = train_head(small, project(train_f, projection), small_val, config, seed=seed, progress=progress)
    fold_head(small, projection, model)
    logits = head_logits(small, small_val)
    op = operating_point([ex.label for ex in val], logits, [ex.patient_id for ex in val], config)
    levels = exam_levels(val, logits, config)
    sources = sources_on_split(val, logits, config, seed)
    return make_checkpoint(
        model,
        config,
        exam_model=levels["exam_model"],
        calibration=op["calibration"],
        threshold=op["threshold"],
        sources=sources,
        operating_point=operating_point_record(op, config, "validation split"),
        metrics={"validation": op["metrics"], "levels": levels["levels"], "best_epoch": result["best_epoch"]},
        training_data={"train": summarize(train), "validation": summarize(val)},
        training={
            "seed": seed,
            "command": command,
            "seconds": round(time.time() - started, 1),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "history": result["history"],
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.train", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="DIR[=SOURCE]",
        help="a labelled folder (DIR/images, DIR/images.csv, DIR/findings.csv if present), named SOURCE "
        "(default: the folder's name); repeat it to train one model on several sources",
    )
    parser.add_argument("--images", help="folder of <image_id>.png|.dcm (one source, instead of --data)")
    parser.add_argument("--labels", help="images.csv: image_id, patient_id, laterality, label")
    parser.add_argument("--findings", help="findings.csv: image_id, x, y, radius (patch supervision)")
    parser.add_argument("--config", default="{}", help="ModelConfig fields as JSON, e.g. '{\"pool_top_k\": 8}'")
    parser.add_argument("--out", required=True, help="checkpoint path to write")
    parser.add_argument("--epochs", type=int, help="maximum epochs (default from ModelConfig)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cv", type=int, default=0, help="k > 1: k-fold patient CV, then train on all data")
    parser.add_argument("--val-fraction", type=float, help="share of patients for validation (without --cv)")
    parser.add_argument("--cache-dir", help="cache backbone features here between runs")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(args.config).items()}
    config = dataclasses.replace(ModelConfig(), **overrides)
    if args.epochs:
        config.epochs = args.epochs
    if args.val_fraction:
        config.val_fraction = args.val_fraction
    if not args.data and not (args.images and args.labels):
        parser.error("give --data DIR (repeatable) or --images and --labels")
    examples = load_folder(args.images, args.labels, args.findings) if args.images else []
    for spec in args.data:
        folder, _, source = spec.partition("=")
        root = Path(folder)
        findings = root / "findings.csv"
        examples += load_folder(
            root / "images", root / "images.csv", findings if findings.exists() else None, source or root.name
        )
    command = "python -m ml.train " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.cv and args.cv > 1:
        checkpoint = train_with_cv(examples, config, args.cv, args.seed, args.cache_dir, command)
    else:
        checkpoint = fit(examples, None, config, seed=args.seed, cache_dir=args.cache_dir, command=command)
    save_checkpoint(checkpoint, args.out)
    summary = {k: checkpoint[k] for k in ("threshold", "calibration", "operating_point")}
    summary["metrics"] = {k: v for k, v in checkpoint["metrics"].items()}
    print(json.dumps(summary, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
