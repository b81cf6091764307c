"""The fit loop: the patch head trained on cached features (image loss + patch loss), early stopping.

With a frozen trunk the head trains on a PCA projection of the breast cells' features (`Projection`), then
is folded back into a head on every channel, so the served model is the same 1x1 convolution.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ml import metrics
from ml.config import ModelConfig
from ml.features import Features, Progress
from ml.model import MammoNet, PatchHead, pool_top_k


def example_weights(items: Sequence[Features], config: ModelConfig) -> torch.Tensor:
    """Loss weight per example: sources weigh the same (balance_sources), classes balanced within each source
    (balance_classes), hard negatives times config.hard_negative_weight; the mean weight is 1."""
    sources = sorted({it.source for it in items})
    weights = torch.ones(len(items))
    for source in sources:
        idx = [i for i, it in enumerate(items) if it.source == source]
        share = (len(items) / (len(sources) * len(idx))) if config.balance_sources else 1.0
        n_pos = sum(items[i].label for i in idx)
        n_neg = len(idx) - n_pos
        for i in idx:
            w = share
            if config.balance_classes and n_pos and n_neg:
                w *= len(idx) / (2 * (n_pos if items[i].label else n_neg))
            if items[i].hard_negative:
                w *= config.hard_negative_weight
            weights[i] = w
    return weights * (len(items) / float(weights.sum()))


def _batch(items: Sequence[Features], view_idx: Sequence[int]) -> tuple[torch.Tensor, ...]:
    feats = torch.stack([it.views[v] for it, v in zip(items, view_idx, strict=True)]).float()
    valid = torch.stack([it.valid[v] for it, v in zip(items, view_idx, strict=True)]).unsqueeze(1)
    target = torch.stack([it.targets[v] for it, v in zip(items, view_idx, strict=True)]).unsqueeze(1)
    labels = torch.tensor([it.label for it in items], dtype=torch.float32)
    return feats, valid, target, labels


def head_logits(model: MammoNet, items: Sequence[Features], batch_size: int = 32) -> np.ndarray:
    """Image logits from cached features of the original view."""
    model.head.eval()
    logits = []
    with torch.inference_mode():
        for s in range(0, len(items), batch_size):
            feats, valid, _, _ = _batch(items[s : s + batch_size], [0] * len(items[s : s + batch_size]))
            logits.append(pool_top_k(model.head(feats), valid, model.config.pool_top_k))
    return torch.cat(logits).numpy() if logits else np.zeros(0)


def mean_source_auc(items: Sequence[Features], logits: np.ndarray) -> float:
    """Mean over sources of the image-level AUC (a source with one class only is skipped)."""
    aucs = []
    for source in sorted({it.source for it in items}):
        idx = [i for i, it in enumerate(items) if it.source == source]
        y = [items[i].label for i in idx]
        if 0 < sum(y) < len(y):
            aucs.append(metrics.roc_auc(y, logits[idx]))
    return float(np.mean(aucs)) if aucs else float("nan")


def _loss(model: MammoNet, feats, valid, target, labels, config: ModelConfig, weights: torch.Tensor) -> torch.Tensor:
    patch = model.head(feats)
    logit = pool_top_k(patch, valid, config.pool_top_k)
    loss = F.binary_cross_entropy_with_logits(logit, labels, weight=weights)
    if config.patch_loss_weight > 0:
        known = (target >= 0) & valid
        pos, neg = known & (target > 0), known & (target == 0)
        terms = []
        # Positive and negative cells weigh equally: lesion cells are a few in thousands.
        if pos.any():
            terms.append(F.binary_cross_entropy_with_logits(patch[pos], target[pos]))
        if neg.any():
            terms.append(F.binary_cross_entropy_with_logits(patch[neg], target[neg]))
        if terms:
            loss = loss + config.patch_loss_weight * sum(terms) / len(terms)
    return loss


@dataclass
class Projection:
    """PCA of the backbone's channels over breast cells: the head trains on `k` components, then is folded
    back into a head on every channel (the head's first layer is linear, so nothing is lost in serving)."""

    mean: torch.Tensor  # (C,)
    components: torch.Tensor  # (k, C), orthonormal rows


def fit_projection(items: Sequence[Features], k: int, max_cells: int = 20000, seed: int = 0) -> Projection | None:
    """Principal components of breast-cell features (unsupervised: no label is used). None when k is 0 or
    not smaller than the channel count."""
    if not items or k <= 0 or k >= items[0].views[0].shape[0]:
        return None
    generator = torch.Generator().manual_seed(seed)
    per_item = max(1, max_cells // len(items))
    cells = []
    for it in items:
        feat = it.views[0].flatten(1)[:, it.valid[0].flatten()].T  # (cells inside the breast, C)
        if feat.shape[0] == 0:
            continue
        pick = torch.randperm(feat.shape[0], generator=generator)[:per_item]
        cells.append(feat[pick].float())
    data = torch.cat(cells)
    mean = data.mean(dim=0)
    _, _, v = torch.linalg.svd(data - mean, full_matrices=False)
    return Projection(mean=mean, components=v[:k].contiguous())


def project(items: Sequence[Features], projection: Projection | None) -> list[Features]:
    """The items with every view's channels projected (fp16, like the cache); unchanged without a projection."""
    if projection is None:
        return list(items)
    weight = projection.components  # (k, C)
    shift = weight @ projection.mean  # (k,)
    out = []
    for it in items:
        views = [
            (torch.einsum("kc,chw->khw", weight, v.float()) - shift[:, None, None]).to(torch.float16) for v in it.views
        ]
        out.append(dataclasses.replace(it, views=views))
    return out


def head_for(config: ModelConfig, channels: int) -> SimpleNamespace:
    """A stand-in 'model' whose head trains on `channels` (projected) features: train_head, head_logits and
    pointing_hit only use `.head` and `.config`."""
    return SimpleNamespace(head=PatchHead(channels, config.head_hidden, config.head_dropout), config=config)


def unfold_head(small, projection: Projection | None, model: MammoNet) -> None:
    """Start a head on projected features from the model's head (fine-tuning a champion): its first layer
    restricted to the components, with the mean feature moved into the bias."""
    state = copy.deepcopy(model.head.state_dict())
    if projection is not None:
        first = next(k for k in state if k.endswith(".weight"))
        bias = first[: -len("weight")] + "bias"
        w = state[first][:, :, 0, 0]  # (out, C)
        state[bias] = state[bias] + w @ projection.mean
        state[first] = (w @ projection.components.T)[:, :, None, None]
    small.head.load_state_dict(state)


def fold_head(small, projection: Projection | None, model: MammoNet) -> None:
    """Copy a head trained on projected features into the model's head on every channel."""
    state = copy.deepcopy(small.head.state_dict())
    if projection is not None:
        first = next(k for k in state if k.endswith(".weight"))  # the first 1x1 convolution
        bias = first[: -len("weight")] + "bias"
        w = state[first][:, :, 0, 0]  # (out, k)
        state[bias] = state[bias] - w @ (projection.components @ projection.mean)
        state[first] = (w @ projection.components)[:, :, None, None]
    model.head.load_state_dict(state)


def train_head(
    model: MammoNet,
    train: Sequence[Features],
    val: Sequence[Features] | None,
    config: ModelConfig,
    seed: int = 0,
    epochs: int | None = None,
    progress: Progress | None = None,
    desc: str = "train",
) -> dict[str, Any]:
    """Train the head in place; with `val`, keep the epoch with the best validation AUC."""
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    epochs = epochs or config.epochs
    weights = example_weights(train, config)
    params = [p for p in model.head.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    best = {"auc": -1.0, "epoch": 0, "state": copy.deepcopy(model.head.state_dict())}
    history = []
    bar = tqdm(range(1, epochs + 1), desc=desc, unit="epoch", file=sys.stderr, leave=False)
    for epoch in bar:
        model.head.train()
        order = torch.randperm(len(train), generator=generator).tolist()
        total = 0.0
        for s in range(0, len(order), config.batch_size):
            chosen = order[s : s + config.batch_size]
            items = [train[i] for i in chosen]
            views = [int(rng.integers(0, len(it.views))) for it in items]  # items may have different views
            feats, valid, target, labels = _batch(items, views)
            loss = _loss(model, feats, valid, target, labels, config, weights[chosen])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(items)
        record = {"stage": "train", "epoch": epoch, "epochs": epochs, "loss": total / len(train)}
        if val:
            record["val_auc"] = mean_source_auc(val, head_logits(model, val))
            if record["val_auc"] > best["auc"]:
                best = {"auc": record["val_auc"], "epoch": epoch, "state": copy.deepcopy(model.head.state_dict())}
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", val_auc=f"{record.get('val_auc', float('nan')):.3f}")
        if progress:
            progress(record)
        if val and epoch - best["epoch"] >= config.patience:
            break
    if val:
        model.head.load_state_dict(best["state"])
    else:
        best = {"auc": float("nan"), "epoch": epochs}
    return {"best_epoch": best["epoch"], "best_val_auc": best["auc"], "history": history}


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
