"""Learning curve of the retraining loop: does feeding radiologists' labels back improve the model?

    python -m bench.learning_curve --data ../shared/data/mias --rounds 4 \
        --out bench/out/learning_curve --plot docs/learning_curve.png
    python -m bench.learning_curve --data ../shared/data/mias --rsna ../shared/data/rsna --rounds 3 \
        --feature-cache /path/to/feature/cache --plot docs/learning_curve_rsna.png

With --rsna (the issue-11 protocol): round 0 is every mini-MIAS woman plus a
quarter of the RSNA women; the other RSNA women arrive in `--rounds` batches, and
the AUCs are those of the RSNA women in the locked set. --feature-cache points the
runs at a backbone feature cache (keyed by image content, so it can be shared
with ml.train experiments): the trunk is frozen, so the runs only train heads.

A fresh portal (SQLite and media in a temporary folder, tasks in-process) starts
with an empty registry. Half of the women are imported with their labels as if
radiologists had read them (`seed_labels`), and a first run trains a model from
scratch on their training pool: it becomes the champion (never the shipped baseline,
which has seen every woman of the shared sets). The other women then
arrive in batches; after each batch the portal's own training run fine-tunes a
candidate from the champion and promotes it only if it is not worse on the
locked validation women. Every pool assignment, run, evaluation and promotion is
the portal's code (screening.ai.services: seeding, training, promotion), not a re-implementation.

Reported per round: the pools, the candidate's and the champion's AUC on the
current locked set (it grows as new women arrive, 20% of them), the AUC on the
women locked in round 0 (a fixed set, so rounds are comparable), the decision
and the time. JSON, a markdown table and a PNG plot.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _setup(var_dir: Path) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "PORTAL_S3_BUCKET"):
        os.environ.pop(name, None)
    os.environ["PORTAL_VAR_DIR"] = str(var_dir)
    os.environ["PORTAL_MEDIA_ROOT"] = str(var_dir / "media")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("PORTAL_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _women(labels_csv: Path) -> list[str]:
    with open(labels_csv, newline="") as fh:
        return sorted({row["patient_id"].strip() for row in csv.DictReader(fh)})


def _auc_on(scores: list[list], ids: set[str]) -> float:
    from ml.metrics import roc_auc

    rows = [r for r in scores if str(r[2]) in ids]
    return roc_auc([r[0] for r in rows], [r[1] for r in rows]) if rows else float("nan")


def _round(number: int, women: list[str], data: Path | list[Path], fixed: set[str] | None) -> dict:
    from screening.ai.services import seeding, training_run
    from screening.models import ModelVersion, TrainingRun

    started = time.perf_counter()
    for folder in data if isinstance(data, list) else [data]:
        seeding.seed_labels(folder / "images", folder / "images.csv", folder / "findings.csv", patient_ids=women)
    from django.conf import settings

    # Round 0 trains from scratch and its model serves: the shipped baseline has seen every woman of
    # the shared sets, the locked ones included, so it must neither seed nor judge the curve.
    settings.PORTAL_TRAINING_FROM_SCRATCH = number == 0
    run_id = training_run.run_training(trigger="bench")
    run = TrainingRun.objects.select_related("candidate").get(pk=run_id)
    if number == 0 and run.status == TrainingRun.Status.SUCCEEDED:
        from screening.ai.services.registry import promote_version

        promote_version(run.candidate)
    row = {
        "round": number,
        "new_women": len(women),
        "status": run.status,
        "error": run.error,
        "train": run.data_summary.get("train"),
        "validation": run.data_summary.get("validation"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if run.status != TrainingRun.Status.SUCCEEDED:
        return row
    candidate = run.candidate
    decision = candidate.metrics.get("decision") or {}
    locked = candidate.metrics["locked_validation"]
    row.update(
        {
            "candidate": candidate.name,
            "decision": decision.get("outcome"),
            "reasons": decision.get("reasons"),
            "candidate_auc": locked["auc"],
            "candidate_auc_ci": [locked["auc_ci_low"], locked["auc_ci_high"]],
            "candidate_sensitivity": locked["sensitivity"],
            "candidate_specificity": locked["specificity"],
        }
    )
    incumbent = decision.get("champion") and ModelVersion.objects.get(name=decision["champion"])
    if incumbent:
        champion_locked = incumbent.metrics["locked_validation"]
        row["champion_auc"] = champion_locked["auc"]
        row["champion_auc_ci"] = [champion_locked["auc_ci_low"], champion_locked["auc_ci_high"]]
    if fixed is not None:
        row["candidate_auc_fixed"] = _auc_on(locked["scores"], fixed)
        if incumbent:
            row["champion_auc_fixed"] = _auc_on(incumbent.metrics["locked_validation"]["scores"], fixed)
    serving = ModelVersion.objects.get(status=ModelVersion.Status.CHAMPION)
    row["serving"] = serving.name
    serving_scores = serving.metrics["locked_validation"]["scores"]
    row["serving_auc"] = serving.metrics["locked_validation"]["auc"]
    if fixed is not None:
        row["serving_auc_fixed"] = _auc_on(serving_scores, fixed)
    return row


def plot(
    rows: list[dict], path: Path, subtitle: str = "", title: str = "mini-MIAS", start: str = "half the women"
) -> None:
    """AUC of the serving champion per round, on the fixed round-0 locked women and on the whole locked set."""
    from PIL import Image, ImageDraw

    size, margin = (640, 420), 60
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    rounds = [r["round"] for r in rows]
    low, high = 0.4, 1.0
    width, height = size[0] - 2 * margin, size[1] - 2 * margin

    def xy(rnd: float, auc: float) -> tuple[float, float]:
        x = margin + (rnd - min(rounds)) / max(1, max(rounds) - min(rounds)) * width
        return x, size[1] - margin - (min(max(auc, low), high) - low) / (high - low) * height

    draw.rectangle([margin, margin, size[0] - margin, size[1] - margin], outline="black")
    for tick in np.arange(low, high + 1e-9, 0.1):
        _, y = xy(rounds[0], tick)
        draw.line([margin - 5, y, margin, y], fill="black")
        draw.text((margin - 40, y - 6), f"{tick:.1f}", fill="black")
    for r in rounds:
        x, _ = xy(r, low)
        draw.text((x - 4, size[1] - margin + 8), str(r), fill="black")
    draw.text((margin, 15), f"Validation AUC of the serving champion per round ({title})", fill="black")
    draw.text((margin, 30), subtitle, fill=(90, 90, 90))
    chance = xy(rounds[0], 0.5)[1]
    for x in range(margin, size[0] - margin, 12):
        draw.line([x, chance, x + 6, chance], fill=(170, 170, 170))
    draw.text((size[0] // 2 - 90, size[1] - 25), f"round (0 = {start})", fill="black")
    series = [
        ("serving_auc_fixed", (200, 30, 30), "women locked in round 0 (fixed)"),
        ("serving_auc", (30, 90, 200), "all locked women so far"),
        ("candidate_auc", (120, 120, 120), "candidate of the round (all locked)"),
    ]
    for n, (key, colour, label) in enumerate(series):
        points = [xy(r["round"], r[key]) for r in rows if r.get(key) is not None and not np.isnan(r[key])]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        draw.line([margin + 10, margin + 12 + 16 * n, margin + 30, margin + 12 + 16 * n], fill=colour, width=2)
        draw.text((margin + 36, margin + 6 + 16 * n), label, fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def table(rows: list[dict]) -> str:
    def f(value) -> str:
        return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"

    lines = [
        "| round | women added | train images (abn) | locked images (abn) | candidate AUC (95% CI) | champion AUC "
        "| decision | serving AUC, round-0 locked women | s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ci = r.get("candidate_auc_ci") or [None, None]
        train, val = r.get("train") or {}, r.get("validation") or {}
        lines.append(
            f"| {r['round']} | {r['new_women']} | {train.get('images', '')} ({train.get('abnormal', '')}) "
            f"| {val.get('images', '')} ({val.get('abnormal', '')}) "
            f"| {f(r.get('candidate_auc'))} ({f(ci[0])}-{f(ci[1])}) | {f(r.get('champion_auc'))} "
            f"| {r.get('decision') or r['status']} | {f(r.get('serving_auc_fixed'))} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.learning_curve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mias")
    parser.add_argument("--rounds", type=int, default=4, help="batches the second half of the women arrives in")
    parser.add_argument("--seed", type=int, default=0, help="which women start and in which order the rest arrive")
    parser.add_argument("--input", default="", help="HxW model input, e.g. 512x320 (default: the ModelConfig's)")
    parser.add_argument("--views", default="", help="augmentation views, e.g. orig,vflip (default: the config's)")
    parser.add_argument("--epochs", type=int, default=0, help="maximum epochs per run (default: the config's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rsna", type=Path, help="RSNA folder: mini-MIAS + a quarter of its women, then the rest")
    parser.add_argument("--feature-cache", type=Path, help="share this backbone feature cache (content-keyed)")
    parser.add_argument("--config", default="{}", help="ModelConfig fields for every run, as JSON")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "retrain")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "learning_curve.png")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    var_dir = Path(tempfile.mkdtemp(prefix="bench-retrain-"))
    _setup(var_dir)
    from django.conf import settings

    overrides = {}
    if args.input:
        height, width = (int(v) for v in args.input.lower().split("x"))
        overrides.update(input_height=height, input_width=width)
    if args.views:
        overrides["augment_views"] = [v.strip() for v in args.views.split(",") if v.strip()]
    if args.epochs:
        overrides["epochs"] = args.epochs
    overrides.update(json.loads(args.config))
    settings.PORTAL_TRAINING_OVERRIDES = overrides
    settings.PORTAL_TRAINING_CACHE_DIR = var_dir / "training-cache"
    settings.PORTAL_MODEL_DIR = var_dir / "models"
    if args.feature_cache:
        settings.PORTAL_TRAINING_CACHE_DIR.mkdir(parents=True, exist_ok=True)
        (settings.PORTAL_TRAINING_CACHE_DIR / "features").symlink_to(args.feature_cache.resolve())
    # The bench measures the retraining loop: the live prediction that ingest queues for every
    # seeded image (in-process here) is not part of it and would only cost time.
    from screening import dispatch

    send = dispatch.send
    dispatch.send = lambda name, *a: True if name == "screening.tasks.predict_image" else send(name, *a)

    from screening.models import Patient

    women = _women(args.data / "images.csv")
    order = [women[i] for i in np.random.default_rng(args.seed).permutation(len(women))]
    data: Path | list[Path] = args.data
    if args.rsna:
        rsna = _women(args.rsna / "images.csv")
        rsna = [rsna[i] for i in np.random.default_rng(args.seed).permutation(len(rsna))]
        quarter = len(rsna) // 4
        batches = [order + rsna[:quarter]] + [list(b) for b in np.array_split(rsna[quarter:], args.rounds)]
        data = [args.data, args.rsna]
        women = women + rsna
    else:
        half = len(order) // 2
        batches = [order[:half]] + [list(b) for b in np.array_split(order[half:], args.rounds)]
    rows: list[dict] = []
    fixed: set[str] | None = None
    for number, batch in enumerate(batches):
        row = _round(number, batch, data, fixed)
        if fixed is None:
            from screening.models import Image, TrainingRun

            locked = Patient.objects.filter(split="validation")
            if args.rsna:
                locked = locked.filter(patient_id__startswith="rsna-")
            fixed = {str(pk) for pk in Image.objects.filter(study__patient__in=locked).values_list("pk", flat=True)}
            first = TrainingRun.objects.select_related("candidate").order_by("-pk").first()
            scores = ((first.candidate.metrics or {}).get("locked_validation") or {}).get("scores") or []
            auc = _auc_on(scores, fixed)  # round 0's model serves (see _round): the same number for both
            row = {**row, "serving_auc_fixed": auc, "candidate_auc_fixed": auc}
        rows.append(row)
        print(json.dumps(row, default=float), flush=True)
    result = {
        "rounds": rows,
        "config_overrides": overrides,
        "women": len(women),
        "seed": args.seed,
        "threads": args.threads,
    }
    (args.out / "learning_curve.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    config = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "ModelConfig defaults"
    title = "mini-MIAS + RSNA; fixed line: RSNA women" if args.rsna else "mini-MIAS"
    start = "mini-MIAS + a quarter of RSNA" if args.rsna else "half the women"
    plot(rows, args.plot, f"{config}; {len(women)} women, seed {args.seed}; dashed: chance", title, start)
    print(table(rows))
    print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
