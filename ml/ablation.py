"""Ablations for the model card: partial fine-tuning of the trunk on cached activations.

Two CPU cores cannot fine-tune the whole trunk at 1024 x 640, but they can train its last
block(s) when everything before them runs once per image and is cached:

    python -m ml.ablation cache --data ../shared/data/mias --data ../shared/data/rsna \
        --mid-dir /tmp/mammo-mid --feature-cache /tmp/mammo-features --threads 1
    python -m ml.ablation finetune --data ... --mid-dir /tmp/mammo-mid --json out.json
    python -m ml.ablation tta --data ../shared/data/mias --feature-cache /tmp/mammo-features --json out.json

`cache` stores, per image, the input of trunk block `split` (192 channels at stride 32)
and also writes the frozen trunk's final features in `ml.train`'s cache format, so that
`python -m ml.train --cache-dir /tmp/mammo-features` (the shipped procedure) reuses them.
`tta` measures test-time augmentation: the shipped head procedure (ml.cv.cross_validate) trained on the
original view, each fold's head also scoring the vertically flipped image, the two logits averaged;
`--seeds N` adds a seed ensemble (N heads per fold, same folds, logits averaged).
`finetune` trains blocks `split..` plus the 1x1 head conv and the patch head on the cache,
in the same patient-level folds as `ml.train`, and prints out-of-fold AUCs per source with
95% bootstrap intervals by woman.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ml import metrics
from ml.config import ModelConfig
from ml.data import Example, load_folder, patient_folds
from ml.features import cache_key, geometry_values, light_geometry, patch_targets
from ml.inference import load_image
from ml.model import MammoNet, breast_cells, build_model, pool_top_k
from ml.preprocess import preprocess

DEFAULT_SPLIT = 15  # Lite0 blocks 15 (192 -> 320) + conv_head (320 -> 1280) are trained


def load_examples(specs: list[str]) -> list[Example]:
    examples: list[Example] = []
    for spec in specs:
        folder, _, source = spec.partition("=")
        root = Path(folder)
        findings = root / "findings.csv"
        examples += load_folder(
            root / "images", root / "images.csv", findings if findings.exists() else None, source or root.name
        )
    return examples


def trunk_head(model: MammoNet, x: torch.Tensor, split: int) -> torch.Tensor:
    """Normalised input -> the input of block `split`."""
    net = model.backbone
    x = (x.expand(-1, 3, -1, -1) - model.mean) / model.std
    x = net._swish(net._bn0(net._conv_stem(x))) if hasattr(net, "_swish") else net._bn0(net._conv_stem(x))
    n = len(net._blocks)
    for idx in range(split):
        rate = net._global_params.drop_connect_rate
        x = net._blocks[idx](x, drop_connect_rate=rate * idx / n if rate else None)
    return x


def trunk_tail(model: MammoNet, x: torch.Tensor, split: int) -> torch.Tensor:
    """Input of block `split` -> the trunk's final features (what `MammoNet.features` returns)."""
    net = model.backbone
    n = len(net._blocks)
    for idx in range(split, n):
        rate = net._global_params.drop_connect_rate
        x = net._blocks[idx](x, drop_connect_rate=rate * idx / n if rate else None)
    head = net._bn1(net._conv_head(x))
    return net._swish(head) if hasattr(net, "_swish") else head


def _mid_path(mid_dir: Path, ex: Example, config: ModelConfig, split: int) -> Path:
    return mid_dir / f"{cache_key(ex, config, f'mid{split}')}.pt"


def cache(args: argparse.Namespace) -> int:
    config = ModelConfig()
    model = build_model(config).eval()
    examples = load_examples(args.data)
    mid_dir, feat_dir = Path(args.mid_dir), Path(args.feature_cache)
    mid_dir.mkdir(parents=True, exist_ok=True)
    feat_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    for n, ex in enumerate(examples):
        mid_path = _mid_path(mid_dir, ex, config, args.split)
        feat_path = feat_dir / f"{cache_key(ex, config, 'orig')}.pt"
        if mid_path.exists() and feat_path.exists():
            continue
        prep = preprocess(load_image(ex.image_path), ex.laterality, config)
        x = torch.from_numpy(prep.image).view(1, 1, *prep.image.shape).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            mid = trunk_head(model, x, args.split)
            feat = trunk_tail(model, mid, args.split)
            valid = breast_cells(x, feat.shape[-2:])[0, 0]
        geometry = torch.tensor(geometry_values(prep.geometry))
        torch.save({"mid": mid[0].to(torch.float16).contiguous(), "valid": valid, "geometry": geometry}, mid_path)
        torch.save({"feat": feat[0].to(torch.float16).contiguous(), "valid": valid, "geometry": geometry}, feat_path)
        if n % 50 == 0:
            rate = (time.time() - started) / (n + 1)
            print(f"cache {n + 1}/{len(examples)}  {rate:.2f} s/img", file=sys.stderr, flush=True)
    print(f"cached {len(examples)} images in {time.time() - started:.0f} s", file=sys.stderr)
    return 0


class Tail(torch.nn.Module):
    """Trainable: trunk blocks from `train_from` on, the head conv and the patch head; blocks `split` to
    `train_from` run frozen (no gradient) on the cached activations."""

    def __init__(self, model: MammoNet, split: int, train_from: int | None = None):
        super().__init__()
        self.model = model
        self.split = split
        self.train_from = split if train_from is None else train_from
        self.frozen = torch.nn.ModuleList(model.backbone._blocks[split : self.train_from])
        self.blocks = torch.nn.ModuleList(model.backbone._blocks[self.train_from :])
        self.conv_head, self.bn1 = model.backbone._conv_head, model.backbone._bn1
        self.head = model.head
        # Auxiliary targets (density, recalled-or-biopsied) from the breast's mean feature: they share the trained
        # trunk blocks with the cancer head, which is the only way they can help it.
        self.aux = torch.nn.Linear(self.conv_head.out_channels, len(AUX_TARGETS))

    def trunk(self, mid: torch.Tensor) -> torch.Tensor:
        if self.train_from > self.split:
            with torch.no_grad():
                for block in self.frozen:
                    block.eval()
                    mid = block(mid)
        return trunk_tail(self.model, mid, self.train_from)

    def forward(self, mid: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(mid))


AUX_TARGETS = ("density", "recall")
# Breast composition on one scale: BI-RADS A-D (RSNA) and mini-MIAS's fatty / glandular / dense.
DENSITY_VALUES = {"A": 0.0, "B": 1.0, "C": 2.0, "D": 3.0, "F": 0.0, "G": 1.5}


def aux_values(ex: Example) -> tuple[float, float]:
    """(density 0-3 or NaN, recalled-or-biopsied 1/0 or NaN) of one image; NaN = unknown (not trained on).
    mini-MIAS's 'D' is dense (3); the recall target is known only where the source records it (RSNA)."""
    density = DENSITY_VALUES.get(ex.tissue.strip().upper(), float("nan")) if ex.tissue else float("nan")
    recall = float(ex.hard_negative or ex.label) if ex.source == "rsna" else float("nan")
    return density, recall


def _load_mid(ex: Example, config: ModelConfig, mid_dir: Path, split: int):
    stored = torch.load(_mid_path(mid_dir, ex, config, split), weights_only=True)
    geometry = light_geometry(stored["geometry"].tolist())
    target = torch.from_numpy(patch_targets(ex, geometry, tuple(stored["valid"].shape), config))
    return stored["mid"], stored["valid"], target


def _fold_fit(
    model: MammoNet,
    split: int,
    items,
    train_idx,
    epochs: int,
    lr: float,
    seed: int,
    config,
    train_from=None,
    aux_weight: float = 0.0,
):
    torch.manual_seed(seed)
    tail = Tail(model, split, train_from)
    params = [p for n, p in tail.named_parameters() if not n.startswith("model.")] + list(tail.head.parameters())
    for p in tail.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(
        [
            {"params": [p for m in (tail.blocks, tail.conv_head, tail.bn1) for p in m.parameters()], "lr": lr * 0.1},
            {"params": list(tail.head.parameters()) + list(tail.aux.parameters()), "lr": lr},
        ],
        weight_decay=1e-2,
    )
    labels = np.array([items[i][3] for i in train_idx])
    pos_w = float((labels == 0).sum() / max(1, (labels == 1).sum()))
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        tail.train()
        order = rng.permutation(train_idx)
        for start in range(0, len(order), config.batch_size):
            batch = [items[i] for i in order[start : start + config.batch_size]]
            mid = torch.stack([b[0] for b in batch]).float()
            valid = torch.stack([b[1] for b in batch]).unsqueeze(1)
            target = torch.stack([b[2] for b in batch]).unsqueeze(1)
            y = torch.tensor([b[3] for b in batch], dtype=torch.float32)
            feats = tail.trunk(mid)
            patch = tail.head(feats)
            logit = pool_top_k(patch, valid, config.pool_top_k)
            w = torch.where(y > 0, torch.full_like(y, pos_w), torch.ones_like(y))
            loss = F.binary_cross_entropy_with_logits(logit, y, weight=w)
            known = target >= 0
            if known.any():
                loss = loss + config.patch_loss_weight * F.binary_cross_entropy_with_logits(patch[known], target[known])
            if aux_weight:
                loss = loss + aux_weight * _aux_loss(tail, feats, valid, torch.stack([b[4] for b in batch]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return tail.eval()


def _aux_loss(tail: Tail, feats: torch.Tensor, valid: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """Density (squared error on the 0-3 scale) and recall (cross-entropy) from the mean feature of the breast's
    cells; unknown values (NaN) are left out."""
    mask = valid.float()
    pooled = (feats * mask).sum((2, 3)) / mask.sum((2, 3)).clamp(min=1)
    out = tail.aux(pooled)
    loss = out.new_zeros(())
    density, recall = aux[:, 0], aux[:, 1]
    if (~density.isnan()).any():
        known = ~density.isnan()
        loss = loss + F.mse_loss(out[known, 0], density[known])
    if (~recall.isnan()).any():
        known = ~recall.isnan()
        loss = loss + F.binary_cross_entropy_with_logits(out[known, 1], recall[known])
    return loss


def _score(tail: Tail, items, idx, batch_size: int, k: int) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for start in range(0, len(idx), batch_size):
            batch = [items[i] for i in idx[start : start + batch_size]]
            mid = torch.stack([b[0] for b in batch]).float()
            valid = torch.stack([b[1] for b in batch]).unsqueeze(1)
            out.append(pool_top_k(tail(mid), valid, k).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def finetune(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    config = ModelConfig()
    examples = load_examples(args.data)
    mid_dir = Path(args.mid_dir)
    items = []
    for ex in examples:
        mid, valid, target = _load_mid(ex, config, mid_dir, args.split)
        items.append((mid, valid, target, int(ex.label), torch.tensor(aux_values(ex))))
    base = build_model(config)
    if args.init:
        state = torch.load(args.init, weights_only=False)["state_dict"]
        base.load_state_dict({k: v.float() for k, v in state.items()})
    folds = patient_folds(examples, args.cv, args.seed)
    oof = np.zeros(len(examples))
    for f, val_idx in enumerate(folds):
        train_idx = np.setdiff1d(np.arange(len(examples)), val_idx)
        started = time.time()
        tail = _fold_fit(
            copy.deepcopy(base),
            args.split,
            items,
            train_idx,
            args.epochs,
            args.lr,
            args.seed + f,
            config,
            args.train_from,
            args.aux_weight,
        )
        oof[val_idx] = _score(tail, items, val_idx, 32, config.pool_top_k)
        print(f"fold {f + 1}/{args.cv}: {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    result: dict = {
        "split": args.split,
        "train_from": args.train_from,
        "epochs": args.epochs,
        "lr": args.lr,
        "aux_weight": args.aux_weight,
        "cv": args.cv,
        "sources": {},
    }
    for source in sorted({ex.source for ex in examples}):
        sel = [i for i, ex in enumerate(examples) if ex.source == source]
        labels = np.array([examples[i].label for i in sel])
        groups = [examples[i].patient_id for i in sel]
        auc = metrics.roc_auc(labels, oof[sel])
        lo, hi = metrics.bootstrap_auc_ci(labels, oof[sel], groups=groups)
        result["sources"][source] = {"image_auc": auc, "ci": [lo, hi], "n": len(sel)}
    result["oof"] = {ex.image_id: float(oof[i]) for i, ex in enumerate(examples)}
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result["sources"], indent=1))
    return 0


def _source_aucs(examples: list[Example], scores: np.ndarray) -> dict:
    out = {}
    for source in sorted({ex.source for ex in examples}):
        sel = [i for i, ex in enumerate(examples) if ex.source == source]
        labels = np.array([examples[i].label for i in sel])
        groups = [examples[i].patient_id for i in sel]
        lo, hi = metrics.bootstrap_auc_ci(labels, scores[sel], groups=groups)
        out[source] = {"image_auc": metrics.roc_auc(labels, scores[sel]), "ci": [lo, hi], "n": len(sel)}
    return out


def tta(args: argparse.Namespace) -> int:
    """Out-of-fold image AUCs per source: original view, flipped view, and their mean logit."""
    from ml.cv import cross_validate  # noqa: PLC0415 (only this command needs the training stack)
    from ml.features import extract_features  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    config = ModelConfig.from_dict(json.loads(args.config))
    examples = load_examples(args.data)
    model = build_model(config, seed=args.seed)
    views = ("orig", "vflip") if args.flip else ("orig",)
    both = extract_features(model, examples, config, views=views, cache_dir=args.feature_cache)
    orig = [dataclasses.replace(f, views=f.views[:1], valid=f.valid[:1], targets=f.targets[:1]) for f in both]
    flips = [[dataclasses.replace(f, views=f.views[1:], valid=f.valid[1:], targets=f.targets[1:]) for f in both]]
    flips = flips if args.flip else []
    members = [
        cross_validate(examples, orig, config, args.cv, args.seed, model, flips, args.seed + 1000 * s if s else None)
        for s in range(args.seeds)  # the same folds, other head seeds
    ]
    runs = {"orig": members[0]["oof_logits"]}
    if args.flip:
        runs["vflip"] = members[0]["extra_oof"][0]
        runs["mean"] = (runs["orig"] + runs["vflip"]) / 2
    for s, member in enumerate(members[1:], start=1):
        runs[f"seed{s}"] = member["oof_logits"]  # each member alone: the spread a single seed has
    if args.seeds > 1:
        runs["seeds"] = np.mean([m["oof_logits"] for m in members], axis=0)
    if args.seeds > 1 and args.flip:
        runs["seeds+vflip"] = np.mean([(m["oof_logits"] + m["extra_oof"][0]) / 2 for m in members], axis=0)
    result = {"cv": args.cv, "seed": args.seed, "config": json.loads(args.config)}
    result["sources"] = {name: _source_aucs(examples, scores) for name, scores in runs.items()}
    result["oof"] = {name: scores.tolist() for name, scores in runs.items()}
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result["sources"], indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.ablation", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("cache", "finetune", "tta"):
        p = sub.add_parser(name)
        p.add_argument("--data", action="append", default=[], required=True)
        p.add_argument("--mid-dir", required=name != "tta")
        p.add_argument("--split", type=int, default=DEFAULT_SPLIT)
        p.add_argument("--threads", type=int, default=1)
    sub.choices["cache"].add_argument("--feature-cache", required=True)
    tt = sub.choices["tta"]
    tt.add_argument("--feature-cache", required=True)
    tt.add_argument("--cv", type=int, default=5)
    tt.add_argument("--seed", type=int, default=0)
    tt.add_argument("--config", default="{}", help="ModelConfig fields as JSON")
    tt.add_argument("--seeds", type=int, default=1, help="a seed ensemble of this many heads on the same folds")
    tt.add_argument("--no-flip", dest="flip", action="store_false", help="no flipped view (seeds only)")
    tt.add_argument("--json", required=True)
    ft = sub.choices["finetune"]
    ft.add_argument("--cv", type=int, default=5)
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--epochs", type=int, default=4)
    ft.add_argument("--lr", type=float, default=1e-3)
    ft.add_argument("--init", help="a checkpoint whose patch head starts the fine-tune")
    ft.add_argument("--train-from", type=int, help="first trunk block trained (default: --split); 16 = head conv only")
    ft.add_argument("--aux-weight", type=float, default=0.0, help="weight of the density and recall targets")
    ft.add_argument("--json", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    return {"cache": cache, "finetune": finetune, "tta": tta}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
