"""The exam is the unit: breast and exam probabilities from the image logits of one model version.

A radiologist reads a breast from both of its views and against the other breast:
a lesion shows in CC and MLO, and an abnormality is usually one-sided, so what
both breasts share (density, exposure, film) is not suspicious. The exam model
turns the image logits of one exam into:

- a breast logit: a logistic model on [mean of the breast's view logits, their
  maximum, asymmetry = that mean minus the other breast's mean (0 when the other
  breast was not imaged)];
- an exam logit: a logistic model on the highest breast logit.

Neither level may learn *how many* images or breasts an exam has. In the RSNA
development set 307 of the 324 women with a cancer have only the cancer breast
imaged, while every woman without one has both: "the other breast is missing"
predicts cancer almost perfectly there (breast AUC 0.97 from that alone) and
means nothing in a screening unit, where both breasts are always imaged. So there
is no "other breast present" input, the asymmetry is antisymmetric within a pair
(its mean over imaged pairs is zero, so it cannot stand in for presence), and the
exam level sees only its worst breast, never the spread between breasts.

Each level's logistic model is fitted on out-of-fold logits, so its output is that
level's calibrated probability (a Platt scaling with more inputs). The image level
keeps its own Platt calibration (ml.metrics). `ExamModel.score` is what the portal
calls when a study's predictions are done, and what ml.evaluate and ml.train use,
so served scores are computed the way they were evaluated. Pure NumPy, no torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.metrics import sigmoid

SIDES = ("L", "R")


@dataclass(frozen=True)
class ExamScores:
    breasts: dict[str, float]  # laterality -> calibrated probability ('U' for images of unknown side)
    exam: float | None  # calibrated probability that the exam is abnormal (None: nothing scored)
    breast_logits: dict[str, float]
    exam_logit: float | None


def breast_features(logits_by_side: dict[str, list[float]]) -> dict[str, np.ndarray]:
    """Per breast: [mean of its view logits, their maximum, mean minus the other breast's mean (0 if none)]."""
    means = {side: float(np.mean(v)) for side, v in logits_by_side.items() if v}
    out: dict[str, np.ndarray] = {}
    for side, values in logits_by_side.items():
        if not values:
            continue
        other = {"L": "R", "R": "L"}.get(side)
        asymmetry = means[side] - means[other] if other in means else 0.0
        out[side] = np.array([means[side], float(np.max(values)), asymmetry])
    return out


def exam_features(breast_logits: Iterable[float]) -> np.ndarray:
    """The exam's input: its worst breast (never how many breasts or how far apart they are)."""
    return np.array([max(breast_logits)])


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iterations: int = 100) -> np.ndarray:
    """Weights (last one the bias) of an L2-penalised logistic regression, by Newton's method."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    design = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2 * len(x))
    penalty[-1] = 0.0  # the bias is not shrunk
    for _ in range(iterations):
        p = sigmoid(design @ w)
        grad = design.T @ (p - y) + penalty * w
        hess = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def _logit(w: np.ndarray, x: np.ndarray) -> float:
    return float(np.dot(w[:-1], x) + w[-1])


@dataclass(frozen=True)
class ExamModel:
    breast_weights: tuple[float, ...]
    exam_weights: tuple[float, ...]

    @classmethod
    def default(cls) -> ExamModel:
        """Before any fit: a breast is the mean of its views, the exam its worst breast (weights 1, no shift)."""
        return cls(breast_weights=(1.0, 0.0, 0.0, 0.0), exam_weights=(1.0, 0.0))

    def to_dict(self) -> dict[str, Any]:
        return {"breast_weights": list(self.breast_weights), "exam_weights": list(self.exam_weights)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ExamModel:
        if not data:
            return cls.default()
        return cls(tuple(float(v) for v in data["breast_weights"]), tuple(float(v) for v in data["exam_weights"]))

    def score(self, images: Sequence[tuple[str, float]]) -> ExamScores:
        """Scores of one exam from (laterality, image logit) pairs; unknown sides form breast 'U'."""
        by_side: dict[str, list[float]] = {}
        for laterality, logit in images:
            side = (laterality or "").strip().upper()[:1]
            by_side.setdefault(side if side in SIDES else "U", []).append(float(logit))
        features = breast_features(by_side)
        bw = np.asarray(self.breast_weights)
        breast_logits = {side: _logit(bw, f) for side, f in features.items()}
        if not breast_logits:
            return ExamScores({}, None, {}, None)
        exam_logit = _logit(np.asarray(self.exam_weights), exam_features(breast_logits.values()))
        return ExamScores(
            breasts={side: float(sigmoid(z)) for side, z in breast_logits.items()},
            exam=float(sigmoid(exam_logit)),
            breast_logits=breast_logits,
            exam_logit=exam_logit,
        )


def group_breasts(exam_ids: Sequence[str], lateralities: Sequence[str]) -> dict[tuple[str, str], list[int]]:
    """(exam, side) -> indices of its images."""
    out: dict[tuple[str, str], list[int]] = {}
    for i, (exam, lat) in enumerate(zip(exam_ids, lateralities, strict=True)):
        side = (lat or "").strip().upper()[:1]
        out.setdefault((exam, side if side in SIDES else "U"), []).append(i)
    return out


def breast_and_exam_rows(
    logits: np.ndarray, exam_ids: Sequence[str], lateralities: Sequence[str], labels: Sequence[int]
) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Breast keys, breast features, breast labels (any abnormal image), exam ids and exam labels."""
    groups = group_breasts(exam_ids, lateralities)
    by_exam: dict[str, dict[str, list[float]]] = {}
    for (exam, side), idx in groups.items():
        by_exam.setdefault(exam, {})[side] = [float(logits[i]) for i in idx]
    keys, feats, ys = [], [], []
    for (exam, side), idx in groups.items():
        keys.append((exam, side))
        feats.append(breast_features(by_exam[exam])[side])
        ys.append(int(max(labels[i] for i in idx)))
    exams = sorted(by_exam)
    exam_y = np.array([max(int(ys[k]) for k, key in enumerate(keys) if key[0] == e) for e in exams])
    return keys, np.array(feats), np.array(ys), exams, exam_y


def fit_exam_model(
    logits: np.ndarray, exam_ids: Sequence[str], lateralities: Sequence[str], labels: Sequence[int]
) -> ExamModel:
    """Fit both levels on (out-of-fold) image logits; a level whose labels are all one class keeps the default.

    The breast level is fitted on every breast, the exam level on exams with both breasts imaged."""
    keys, feats, ys, exams, exam_y = breast_and_exam_rows(logits, exam_ids, lateralities, labels)
    default = ExamModel.default()
    bw = np.asarray(default.breast_weights)
    if len(set(ys.tolist())) == 2:
        bw = fit_logistic(feats, ys)
    breast_logit = {key: _logit(bw, f) for key, f in zip(keys, feats, strict=True)}
    # The exam level is fitted on exams with both breasts imaged: the maximum over two breasts runs higher
    # than over one, so exams of one breast would teach it the count of breasts (see the module docstring).
    bilateral = [e for e in exams if {"L", "R"} <= {k[1] for k in keys if k[0] == e}]
    ex_feats = np.array([exam_features([z for k, z in breast_logit.items() if k[0] == e]) for e in bilateral])
    ex_y = np.array([y for e, y in zip(exams, exam_y, strict=True) if e in set(bilateral)])
    ew = np.asarray(default.exam_weights)
    if len(set(ex_y.tolist())) == 2:
        fitted = fit_logistic(ex_feats, ex_y)
        if fitted[0] > 0:  # a worse breast must never lower the exam's score
            ew = fitted
    return ExamModel(tuple(float(v) for v in bw), tuple(float(v) for v in ew))


def level_predictions(
    model: ExamModel, logits: np.ndarray, exam_ids: Sequence[str], lateralities: Sequence[str], labels: Sequence[int]
) -> dict[str, dict[str, Any]]:
    """Breast- and exam-level labels, probabilities and ids, scored by `model` exactly as served."""
    keys, _, ys, exams, exam_y = breast_and_exam_rows(logits, exam_ids, lateralities, labels)
    idx_by_exam: dict[str, list[int]] = {}
    for i, e in enumerate(exam_ids):
        idx_by_exam.setdefault(e, []).append(i)
    scored = {e: model.score([(lateralities[i], float(logits[i])) for i in idx]) for e, idx in idx_by_exam.items()}
    return {
        "breast": {
            "keys": keys,
            "labels": ys,
            "probabilities": np.array([scored[e].breasts[s] for e, s in keys]),
        },
        "exam": {"keys": exams, "labels": exam_y, "probabilities": np.array([scored[e].exam for e in exams])},
    }
