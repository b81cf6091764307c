"""One configuration for the model, shared by training and inference.

A checkpoint stores this dataclass as a dict, so a served model always preprocesses
exactly as it was trained. Change a preprocessing default only together with
`PREPROCESS_VERSION`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Bumped whenever ml.preprocess would turn the same image into a different tensor;
# checkpoints record it and inference refuses a mismatch.
PREPROCESS_VERSION = "mammo-pre-1"


@dataclass
class ModelConfig:
    # --- preprocessing (ml.preprocess) ---
    # Model input height x width in pixels. A cropped MLO breast is about twice as
    # tall as wide; 1024 rows keeps mini-MIAS at its native 200 micron and
    # calcification clusters visible (they vanish at 512).
    input_height: int = 1024
    input_width: int = 640
    # The breast mask is found on a grid this many times coarser than the image
    # (largest side at most `mask_max_side`), which is fast and ignores film grain.
    mask_max_side: int = 256
    # Foreground threshold = background level + this fraction of the
    # background-to-tissue range: low enough to keep the faint skin line.
    mask_threshold_fraction: float = 0.12
    # Grow the breast mask by this many grid cells so the skin line is not cut.
    mask_dilate_cells: int = 2
    # The side with this much more breast area (relative) is taken as the chest
    # wall; below it the image is ambiguous and the DICOM/CSV laterality decides.
    orientation_margin: float = 0.05
    preprocess_version: str = PREPROCESS_VERSION

    # --- network (ml.model) ---
    # ImageNet-pretrained backbone shipped inside a pip package (no download).
    backbone: str = "efficientnet-lite0"
    # Which backbone output feeds the patch head: "head" = 1280 channels at
    # stride 32 (a 32x20 grid of patch scores for a 1024x640 input).
    feature_layer: str = "head"
    # Hidden channels of the 1x1-convolution patch head (0 = linear head). Linear
    # won in 5-fold patient CV on mini-MIAS (AUC 0.70 vs 0.66 with 64 hidden).
    head_hidden: int = 0
    # Dropout on backbone features inside the head while training.
    head_dropout: float = 0.3
    # Image logit = mean of the k highest patch logits inside the breast: a
    # lesion is local, so a whole-breast mean would dilute it; k > 1 is more
    # stable than the max.
    pool_top_k: int = 4
    # Grayscale is replicated to RGB and normalised with the ImageNet statistics
    # the backbone was trained with.
    norm_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    norm_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # AdaBN: re-estimate the trunk's BatchNorm statistics over the training images
    # (forward passes, labels unused) before the features are extracted.
    adabn: bool = False
    # Train the backbone too (slow on CPU, overfits 216 images) or only the head.
    freeze_backbone: bool = True
    # With a frozen backbone the head trains on this many principal components of
    # the breast cells' features (0 = all 1280 channels), then is folded back into
    # a head on every channel: ten times less data per epoch, the same served model.
    feature_projection: int = 128

    # --- training (ml.train) ---
    epochs: int = 60  # upper bound; early stopping on validation AUC usually ends sooner
    patience: int = 15  # epochs without a better validation AUC before stopping
    batch_size: int = 16
    lr: float = 1e-3  # AdamW learning rate for the head
    weight_decay: float = 1e-2  # AdamW weight decay: strong, the data is small
    # Weight of the patch loss (cells inside annotated findings positive, cells of
    # normal breasts negative) against the image-level loss.
    patch_loss_weight: float = 1.0
    # A patch cell is positive when its centre lies within radius * this factor
    # (at least half a cell) of a finding's centre.
    finding_radius_factor: float = 1.0
    # Precomputed feature views per image ("orig", "vflip", "gamma0.7", "aspect1.25"
    # = width stretched by 1.25 before preprocessing, ...); the
    # head sees one at random per epoch. Flip/gamma views gave no gain in CV
    # (0.704 vs 0.697 linear) and cost a backbone pass each, so only the original.
    augment_views: tuple[str, ...] = ("orig",)
    # Abnormal images are about a third of mini-MIAS: weight them up so the loss
    # is balanced (class weighting, as the original project did).
    balance_classes: bool = True
    # Training on several sources (mini-MIAS film, RSNA digital): each source weighs
    # the same in the loss, whatever its size, so 216 film images are not drowned
    # by 2,268 digital ones; classes are balanced within each source.
    balance_sources: bool = True
    # Loss weight of hard negatives (normal images of women recalled or biopsied and found benign, from RSNA's
    # birads/biopsy columns) relative to other normals: 1 = no different (ablation in ml/MODEL_CARD.md).
    hard_negative_weight: float = 1.0
    val_fraction: float = 0.2  # share of patients held out when fit() must split itself

    # --- calibration and operating point ---
    # Threshold chosen on validation to reach this sensitivity; admins can move it.
    target_sensitivity: float = 0.90
    calibration: str = "platt"  # "platt" (scale and bias) or "temperature" (scale only)
    ece_bins: int = 10  # equal-width bins for the expected calibration error

    # --- heatmap ---
    # Heatmaps are sigmoid(patch logit), bilinearly upsampled to the input and
    # mapped back through the crop/flip onto the original image.
    heatmap_smooth: bool = True

    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes, e.g. experiment tags

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("norm_mean", "norm_std", "augment_views"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)
