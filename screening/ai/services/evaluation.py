"""Scoring versions on the locked validation women and the promotion rule, in the training worker.

A training run's candidate and the champion are scored on the same locked
examples; the candidate becomes champion only if it is not worse (`decide`), and
`apply_decision` records the outcome. Scoring runs the model (torch): only the training
worker reaches this module. Admins' registry actions (promote, roll back, operating point) are `promotion`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from ml import metrics as ml_metrics
from screening.ai.labels import feature_cache_dir
from screening.ai.services.promotion import repredict_unread
from screening.ai.services.registry import champion, checkpoint_path, promote_version
from screening.audit import actions
from screening.audit.services import record_event
from screening.errors import Conflict
from screening.models import ModelVersion


# --- scoring on the locked validation set and the promotion rule -----------------------------------
def _scores(version: ModelVersion, examples) -> np.ndarray:
    from ml.evaluate import predict_examples
    from ml.inference import Predictor

    predictor = Predictor.load(checkpoint_path(version), device=settings.PORTAL_TRAINING_DEVICE or "cpu")
    return predictor.calibrated(predict_examples(predictor, examples, cache_dir=feature_cache_dir()))


def _store_plots(version: ModelVersion, labels: np.ndarray, probs: np.ndarray, threshold: float, n_bins: int) -> dict:
    from ml.evaluate import write_plots

    names = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in write_plots(labels, probs, threshold, Path(tmp), n_bins):
            stamp = timezone.now().strftime("%Y%m%d%H%M%S")
            names[path.stem] = default_storage.save(
                f"models/{version.pk}/{path.stem}-{stamp}.png", ContentFile(path.read_bytes())
            )
    return names


def locked_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    groups: list[str],
    threshold: float,
    n_bins: int = 10,
    image_ids: list[str] | None = None,
) -> dict[str, Any]:
    """AUC with its patient-bootstrap CI, sensitivity/specificity and confusion at the threshold, ECE."""
    from ml.evaluate import summarize_predictions

    result = summarize_predictions(labels, probs, groups, threshold, 0.0, n_bins)
    result.pop("seconds", None)
    result["confusion"] = ml_metrics.confusion(labels, probs, threshold)
    # Every image's probability, so the registry can show the trade-off of any operating point.
    # [label, probability, image id] per image.
    ids = image_ids or [""] * len(labels)
    result["scores"] = [[int(y), round(float(p), 6), i] for y, p, i in zip(labels, probs, ids, strict=True)]
    return result


def score_version(version: ModelVersion, examples, *, snapshot_hash: str = "", run_id: int | None = None) -> dict:
    """Score a version on the locked validation examples at its current operating point; store plots."""
    started = time.perf_counter()
    labels = np.array([ex.label for ex in examples], dtype=np.int64)
    probs = _scores(version, examples)
    result = locked_metrics(
        labels, probs, [ex.patient_id for ex in examples], version.threshold, image_ids=[ex.image_id for ex in examples]
    )
    result["plots"] = _store_plots(version, labels, probs, version.threshold, 10)
    result.update(
        {
            "snapshot_hash": snapshot_hash,
            "run": run_id,
            "evaluated_at": timezone.now().isoformat(),
            "seconds": round(time.perf_counter() - started, 2),
        }
    )
    return result


def decide(candidate: dict[str, Any], incumbent: dict[str, Any] | None) -> dict[str, Any]:
    """The promotion rule: AUC not lower than the champion's by more than the margin, sensitivity not lower."""
    margin = float(getattr(settings, "PORTAL_PROMOTION_AUC_MARGIN", 0.02))
    if incumbent is None:
        return {"outcome": "promoted", "reasons": ["there was no champion"], "auc_margin": margin}
    reasons = []
    if not candidate["auc"] >= incumbent["auc"] - margin:
        reasons.append(
            f"validation AUC {candidate['auc']:.3f} is lower than the champion's {incumbent['auc']:.3f} "
            f"by more than the margin {margin:.3f}"
        )
    if not candidate["sensitivity"] >= incumbent["sensitivity"] - 1e-9:
        reasons.append(
            f"sensitivity at the operating point {candidate['sensitivity']:.3f} is lower than "
            f"the champion's {incumbent['sensitivity']:.3f}"
        )
    if reasons:
        return {"outcome": "rejected", "reasons": reasons, "auc_margin": margin}
    return {
        "outcome": "promoted",
        "reasons": [
            f"validation AUC {candidate['auc']:.3f} vs the champion's {incumbent['auc']:.3f} (margin {margin:.3f}); "
            f"sensitivity {candidate['sensitivity']:.3f} vs {incumbent['sensitivity']:.3f}"
        ],
        "auc_margin": margin,
    }


def challenge(
    candidate: ModelVersion, *, examples, snapshot_hash: str = "", run_id: int | None = None, progress=None
) -> dict[str, Any]:
    """Score the candidate and the champion on the same locked examples and apply the promotion rule.

    Stores each version's locked-set metrics; returns the decision (not yet applied).
    """
    incumbent = champion()
    if incumbent is not None and incumbent.pk == candidate.pk:
        raise Conflict("this version is already the champion")
    candidate_metrics = score_version(candidate, examples, snapshot_hash=snapshot_hash, run_id=run_id)
    if progress:
        progress({"stage": "evaluating", "candidate_auc": candidate_metrics["auc"]})
    incumbent_metrics = None
    if incumbent is not None:
        incumbent_metrics = score_version(incumbent, examples, snapshot_hash=snapshot_hash, run_id=run_id)
        ModelVersion.objects.filter(pk=incumbent.pk).update(
            metrics={**incumbent.metrics, "locked_validation": incumbent_metrics}
        )
    decision = decide(candidate_metrics, incumbent_metrics)
    decision["champion"] = incumbent.name if incumbent else None
    decision["champion_metrics"] = (
        {k: incumbent_metrics[k] for k in ("auc", "auc_ci_low", "auc_ci_high", "sensitivity", "specificity")}
        if incumbent_metrics
        else None
    )
    candidate.metrics = {**candidate.metrics, "locked_validation": candidate_metrics, "decision": decision}
    candidate.save(update_fields=["metrics"])
    return decision


def apply_decision(candidate: ModelVersion, decision: dict[str, Any], *, run_id: int | None = None) -> ModelVersion:
    """Promote or reject the candidate as decided; promotion may re-predict unread studies."""
    text = "; ".join(decision["reasons"])
    if decision["outcome"] == "promoted":
        promote_version(candidate)
        ModelVersion.objects.filter(pk=candidate.pk).update(note=f"Promoted by run #{run_id}: {text}"[:2000])
        record_event(action=actions.MODEL_PROMOTE, obj=candidate, detail={"run": run_id, "automatic": True, **decision})
        if getattr(settings, "PORTAL_REPREDICT_ON_PROMOTION", False):
            transaction.on_commit(lambda: repredict_unread(candidate))
    else:
        ModelVersion.objects.filter(pk=candidate.pk).update(
            status=ModelVersion.Status.REJECTED, note=f"Rejected by run #{run_id}: {text}"[:2000]
        )
        record_event(action=actions.MODEL_REJECT, obj=candidate, detail={"run": run_id, **decision})
    candidate.refresh_from_db()
    return candidate
