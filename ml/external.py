"""Models from elsewhere: an ONNX or TorchScript file with a small manifest, served like our own.

A site may have a stronger model than ours. It comes as a folder (or two files side by side):

    model.onnx            (or model.pt, a TorchScript archive)
    model.json            the manifest:
    {
      "format": "onnx",                     # or "torchscript"
      "file": "model.onnx",                 # relative to the manifest
      "input": {"height": 1024, "width": 640, "preprocess": "mammo-pre-1"},
      "outputs": {"patch_logits": 0},       # output index of a (B, 1, h, w) grid of cell logits, and/or
                                            # "image_logit": index of a (B,) or (B, 1) image score
      "output_scale": "logit",              # or "probability" (turned into logits)
      "pool_top_k": 4,                      # without an image output: the mean of the k highest cells
      "sources": ["digital", "film"],       # the source kinds it is meant for
      "threshold": 0.5,                     # its breast-level operating point until the portal moves it
      "calibration": {"a": 1.0, "b": 0.0}   # optional: probability = sigmoid(a * logit + b)
    }

The input is what `ml.preprocess` makes (breast cropped, chest wall on the left, resized with the
aspect kept and padded to height x width, one channel, values in [0, 1]), shaped (B, 1, H, W).
`ExternalPredictor` is a `Predictor`: the same calibration, breast and exam scores, flags, heatmaps
and regions; only the forward pass differs. `validate` refuses, with a reason, a manifest that is not
one, a file that is not a model, outputs of the wrong shape, non-finite outputs and a model too slow
for the inference budget. `export_onnx` writes one of our checkpoints in this form.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from ml.checkpoint import load_checkpoint
from ml.config import ModelConfig
from ml.exam import ExamModel
from ml.inference import Predictor, pick_device
from ml.manifest import DEFAULT_BUDGET_MS, PREPROCESS_OPTIONS, ExternalModelError, read_manifest
from ml.model import breast_cells, build_model


def _logits(values: np.ndarray, scale: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if scale == "probability":
        values = np.clip(values, 1e-7, 1 - 1e-7)
        return np.log(values / (1 - values))
    return values


class ExternalPredictor(Predictor):
    """A Predictor whose forward pass is an ONNX (onnxruntime) or TorchScript model."""

    def __init__(self, manifest_path: str | Path, device: str | None = None):
        self.manifest_path = Path(manifest_path)
        manifest = read_manifest(self.manifest_path)
        self.manifest = manifest
        file = self.manifest_path.parent / manifest["file"]
        self.device = pick_device(device)
        self.format = manifest["format"]
        try:
            if self.format == "onnx":
                import onnxruntime as ort

                providers = ["CPUExecutionProvider"]
                if self.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
                    providers.insert(0, "CUDAExecutionProvider")
                self.session = ort.InferenceSession(str(file), providers=providers)
                self.input_name = self.session.get_inputs()[0].name
            else:
                self.module = torch.jit.load(str(file), map_location=self.device).eval()
        except Exception as exc:
            raise ExternalModelError(f"the file is not a loadable {self.format} model: {str(exc)[:300]}") from None
        size = manifest["input"]
        options = {k: v for k, v in (size.get("options") or {}).items() if k in PREPROCESS_OPTIONS}
        self.config = ModelConfig(
            input_height=size["height"],
            input_width=size["width"],
            pool_top_k=int(manifest.get("pool_top_k", 4)),
            freeze_backbone=False,  # no cached trunk features apply: every score runs the whole model
            **options,
        )
        self.version = hashlib.sha256(file.read_bytes()).hexdigest()[:12]
        self.threshold = float(manifest.get("threshold", 0.5))
        calibration = manifest.get("calibration") or {}
        self.calibration = (float(calibration.get("a", 1.0)), float(calibration.get("b", 0.0)))
        self.exam_model = ExamModel.from_dict(manifest.get("exam_model"))
        self.sources = dict(manifest.get("sources_fitted") or {})
        self.info = {"manifest": manifest, "threshold": self.threshold, "format": self.format}

    def _run_model(self, x: np.ndarray) -> list[np.ndarray]:
        if self.format == "onnx":
            return [np.asarray(o) for o in self.session.run(None, {self.input_name: x})]
        with torch.inference_mode():
            out = self.module(torch.from_numpy(x).to(self.device))
        out = out if isinstance(out, list | tuple) else [out]
        return [o.float().cpu().numpy() for o in out]

    def forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(batch, dtype=np.float32)[:, None]
        outputs = self._run_model(x)
        spec, scale = self.manifest["outputs"], self.manifest.get("output_scale", "logit")
        n = x.shape[0]
        patch = None
        if "patch_logits" in spec:
            patch = _logits(outputs[spec["patch_logits"]], scale).astype(np.float32)
            patch = patch.reshape(n, *patch.shape[-2:])
        valid_grid = patch.shape[-2:] if patch is not None else (x.shape[-2] // 32, x.shape[-1] // 32)
        valid = breast_cells(torch.from_numpy(x), valid_grid).numpy()[:, 0]
        if "image_logit" in spec:
            image = _logits(outputs[spec["image_logit"]], scale).reshape(n).astype(np.float32)
        else:
            k = self.config.pool_top_k
            flat = np.where(valid.any(axis=(1, 2))[:, None, None], valid, True)
            masked = np.where(flat, patch, -np.inf).reshape(n, -1)
            image = np.sort(masked, axis=1)[:, ::-1][:, :k].mean(axis=1).astype(np.float32)
        if patch is None:  # no cell scores: a flat map at the image's own score
            patch = np.broadcast_to(image[:, None, None], (n, *valid_grid)).astype(np.float32)
        return image, patch, valid


def phantom_batch(height: int, width: int, n: int = 1, seed: int = 0) -> np.ndarray:
    """Breast-like synthetic inputs (a bright half-ellipse against the chest wall on the left) for checks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    breast = ((xx / (0.8 * width)) ** 2 + ((yy - height / 2) / (0.45 * height)) ** 2) <= 1
    out = np.zeros((n, height, width), np.float32)
    for i in range(n):
        out[i] = breast * (0.4 + 0.3 * rng.random((height, width))).astype(np.float32)
    return out


def validate(manifest_path: str | Path, budget_ms: float = DEFAULT_BUDGET_MS, device: str | None = None):
    """(predictor, report) for a model the portal can serve; ExternalModelError with the reason otherwise."""
    predictor = ExternalPredictor(manifest_path, device=device)
    h, w = predictor.config.input_height, predictor.config.input_width
    batch = phantom_batch(h, w, n=2)
    try:
        raw = predictor._run_model(batch[:, None])
    except Exception as exc:
        raise ExternalModelError(f"the model failed on a (2, 1, {h}, {w}) input in [0, 1]: {str(exc)[:300]}") from None
    spec = predictor.manifest["outputs"]
    if max(spec.values()) >= len(raw):
        raise ExternalModelError(
            f"the model gives {len(raw)} output(s); the manifest names output {max(spec.values())}"
        )
    if "image_logit" in spec and raw[spec["image_logit"]].size != 2:
        shape = tuple(raw[spec["image_logit"]].shape)
        raise ExternalModelError(f"image_logit must hold one value per image: shape {shape} for a batch of 2")
    if "patch_logits" in spec:
        patch = raw[spec["patch_logits"]]
        if patch.ndim not in (3, 4) or patch.shape[0] != 2 or (patch.ndim == 4 and patch.shape[1] != 1):
            raise ExternalModelError(f"patch_logits must be shaped (B, 1, h, w): got {tuple(patch.shape)}")
    if any(not np.all(np.isfinite(o)) for o in raw):
        raise ExternalModelError("the model gave NaN or infinite outputs on a synthetic breast")
    timings = []
    for _ in range(3):
        t0 = time.perf_counter()
        predictor.predict([(batch[0], "L")], heatmap_max_side=256)
        timings.append((time.perf_counter() - t0) * 1000.0)
    ms = float(np.median(timings))
    if ms > budget_ms:
        raise ExternalModelError(
            f"the model takes {ms:.0f} ms an image here, over the budget of {budget_ms:.0f} ms "
            "(a four-view exam within 2 s)"
        )
    return predictor, {"ms_per_image": ms, "format": predictor.format, "input": [h, w]}


class _PatchOnly(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.head(self.model.features(x))


def export_onnx(checkpoint_path: str | Path, out_dir: str | Path, name: str = "model") -> Path:
    """One of our checkpoints as an ONNX model (cell logits) and its manifest; returns the manifest's path."""
    checkpoint = load_checkpoint(checkpoint_path)
    config = ModelConfig.from_dict(checkpoint["config"])
    model = build_model(config, checkpoint["state_dict"]).eval()
    wrapper = _PatchOnly(model).eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x = torch.zeros(1, 1, config.input_height, config.input_width)
    torch.onnx.export(
        wrapper,
        (x,),
        str(out_dir / f"{name}.onnx"),
        input_names=["image"],
        output_names=["patch_logits"],
        dynamic_axes={"image": {0: "batch"}, "patch_logits": {0: "batch"}},
        dynamo=False,
        opset_version=17,
    )
    manifest = {
        "format": "onnx",
        "file": f"{name}.onnx",
        "input": {
            "height": config.input_height,
            "width": config.input_width,
            "preprocess": config.preprocess_version,
            "options": {k: getattr(config, k) for k in PREPROCESS_OPTIONS},
        },
        "outputs": {"patch_logits": 0},
        "output_scale": "logit",
        "pool_top_k": config.pool_top_k,
        "sources": sorted(checkpoint.get("sources") or {}) or ["digital"],
        "threshold": float(checkpoint["threshold"]),
        "calibration": {"a": checkpoint["calibration"]["a"], "b": checkpoint["calibration"]["b"]},
        "exam_model": checkpoint.get("exam_model"),
        "sources_fitted": checkpoint.get("sources") or {},
    }
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(manifest, indent=1))
    return path
