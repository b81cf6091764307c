from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ml import evaluate as evaluate_module
from ml.checkpoint import load_checkpoint
from ml.data import load_folder
from ml.inference import PredictionResult, Predictor, load_image
from tests.ml.phantoms import phantom


def test_a_checkpoint_round_trips_with_everything_needed_to_serve_it(tiny_checkpoint: Path) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    for key in (
        "config",
        "preprocess_version",
        "state_dict",
        "calibration",
        "threshold",
        "operating_point",
        "metrics",
        "training_data",
        "training",
    ):
        assert key in checkpoint
    assert checkpoint["config"]["input_height"] == 128
    assert 0.0 <= checkpoint["threshold"] <= 1.0
    first = Predictor.load(tiny_checkpoint, device="cpu")
    again = Predictor.from_checkpoint(torch.load(tiny_checkpoint, weights_only=True), device="cpu")
    image = phantom(lesion=(60, 150, 20))
    a, b = first.predict([(image, "L")])[0], again.predict([(image, "L")])[0]
    assert a.probability == pytest.approx(b.probability, abs=1e-6)
    assert first.version.startswith("tiny-") and len(first.version) > 10


def test_predict_gives_calibrated_probabilities_and_heatmaps_shaped_like_each_input(tiny_checkpoint: Path) -> None:
    predictor = Predictor.load(tiny_checkpoint, device="cpu")
    items = [(phantom(), "L"), (phantom(rows=400, cols=300, chest_left=False, seed=4), "R")]
    results = predictor.predict(items, batch_size=2)
    assert len(results) == 2
    for (image, _), result in zip(items, results, strict=True):
        assert isinstance(result, PredictionResult)
        assert 0.0 <= result.probability <= 1.0
        assert result.heatmap.shape == image.shape and result.heatmap.dtype == np.float32
        assert 0.0 <= result.heatmap.min() and result.heatmap.max() <= 1.0
        assert result.heatmap[:, -40:].max() == 0.0 or image is items[1][0]  # nothing on the label side
        assert result.preprocess_ms > 0 and result.inference_ms > 0


def test_load_image_reads_png_files(phantom_folder) -> None:
    images, _, _ = phantom_folder
    image = load_image(next(images.glob("*.png")))
    assert image.dtype == np.float32 and image.ndim == 2 and image.max() <= 1.0


def test_evaluate_function_gives_the_contract_keys(tiny_checkpoint: Path, phantom_folder) -> None:
    examples = load_folder(*phantom_folder)
    result = evaluate_module.evaluate(tiny_checkpoint, examples)
    assert set(evaluate_module.KEYS) <= set(result)
    assert result["n"] == len(examples) and result["n_abnormal"] == sum(ex.label for ex in examples)


def test_the_evaluation_cli_writes_the_json_keys_and_plots(
    tmp_path: Path, tiny_checkpoint: Path, phantom_folder
) -> None:
    images, labels, _ = phantom_folder
    out = tmp_path / "metrics.json"
    code = evaluate_module.main(
        [
            "--images",
            str(images),
            "--labels",
            str(labels),
            "--model",
            str(tiny_checkpoint),
            "--json",
            str(out),
            "--plots",
            str(tmp_path / "plots"),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert set(evaluate_module.KEYS) <= set(data)
    assert len(data["images"]) == data["n"] and {"image", "breast", "exam", "exam_both_breasts"} == set(data["levels"])
    assert 0.0 <= data["auc"] <= 1.0 and data["seconds"] > 0
    assert (tmp_path / "plots" / "roc.png").stat().st_size > 0
    assert (tmp_path / "plots" / "reliability.png").stat().st_size > 0


def test_the_checkpoint_scores_breasts_and_exams_with_its_own_exam_model(tiny_checkpoint: Path) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    assert set(checkpoint["exam_model"]) == {"breast_weights", "exam_weights"}
    predictor = Predictor.load(tiny_checkpoint, device="cpu")
    left, right = phantom(lesion=(60, 150, 20), seed=1), phantom(chest_left=False, seed=2)
    results = predictor.predict([(left, "L"), (right, "R")])
    scores = predictor.score_exam([("L", results[0].logit), ("R", results[1].logit)])
    assert set(scores.breasts) == {"L", "R"} and 0.0 <= scores.exam <= 1.0
    # The other breast is part of a breast's score: the left breast alone scores differently.
    alone = predictor.score_exam([("L", results[0].logit)])
    assert alone.breasts["L"] != pytest.approx(scores.breasts["L"], abs=1e-9)


def test_every_result_carries_its_top_regions_in_original_pixels(tiny_checkpoint: Path) -> None:
    predictor = Predictor.load(tiny_checkpoint, device="cpu")
    image = phantom(lesion=(60, 150, 20), seed=1)
    [result] = predictor.predict([(image, "L")])
    assert 1 <= len(result.regions) <= 3
    rows, cols = image.shape
    for region in result.regions:
        assert 0 <= region["x"] and region["x"] + region["width"] <= cols + 1
        assert 0 <= region["y"] and region["y"] + region["height"] <= rows + 1
        assert 0.0 <= region["probability"] <= 1.0
    probabilities = [r["probability"] for r in result.regions]
    assert probabilities == sorted(probabilities, reverse=True)


def test_evaluation_reports_every_level_per_image_and_the_pointing_game(tiny_checkpoint: Path, phantom_folder) -> None:
    examples = load_folder(*phantom_folder, source="phantom")
    result = evaluate_module.evaluate(tiny_checkpoint, examples)
    assert set(result["levels"]) == {"image", "breast", "exam", "exam_both_breasts"}
    assert result["levels"]["breast"]["all"]["n"] == len(examples)  # one image per breast here
    assert result["levels"]["exam"]["all"]["n"] == len({ex.patient_id for ex in examples})
    assert result["pointing_game"]["n"] == sum(1 for ex in examples if ex.label and ex.findings)
    first = result["images"][0]
    assert {"image_id", "patient_id", "laterality", "view", "probability"} <= set(first)
    assert first["image_id"] == examples[0].image_id and first["view"] == "MLO"


def test_retraining_can_start_from_the_champion_checkpoint(tiny_checkpoint: Path, phantom_folder) -> None:
    from ml.data import patient_split
    from ml.train import fit

    train, val = patient_split(load_folder(*phantom_folder), 0.5, seed=1)
    seen: list[dict] = []
    candidate = fit(train, val, None, init_checkpoint=tiny_checkpoint, progress=seen.append, seed=1)
    assert candidate["config"] == load_checkpoint(tiny_checkpoint)["config"]
    assert any(r.get("stage") == "train" and "val_auc" in r for r in seen)
    assert Predictor.from_checkpoint(candidate, device="cpu").predict([(phantom(), "L")])[0].probability >= 0


def test_the_streaming_path_gives_the_same_results_and_isolates_a_bad_image(tiny_checkpoint: Path) -> None:
    predictor = Predictor.load(tiny_checkpoint, device="cpu")
    images = [phantom(seed=s) for s in (1, 2, 3)]

    def broken():
        raise ValueError("cannot decode this one")

    loaders = [lambda im=images[0]: (im, "L"), broken, lambda im=images[2]: (im, "R")]
    streamed = predictor.predict_stream(loaders, batch_size=2)
    assert isinstance(streamed[1], ValueError) and "cannot decode" in str(streamed[1])
    direct = predictor.predict([(images[0], "L"), (images[2], "R")])
    for got, want in zip([streamed[0], streamed[2]], direct, strict=True):
        assert got.logit == pytest.approx(want.logit, abs=1e-5)
        assert got.regions == want.regions
        assert np.allclose(got.heatmap, want.heatmap, atol=1e-5)


def test_on_the_cpu_the_loader_never_runs_during_a_forward_pass(tiny_checkpoint: Path, monkeypatch) -> None:
    """A CPU forward pass keeps every core busy with threads that wait for each other at every layer; a loader
    decoding beside it slowed it by more than its own time. The next batch is loaded after the forward pass,
    while this batch's heatmaps are made and stored: batches come one at a time, in order."""
    predictor = Predictor.load(tiny_checkpoint, device="cpu")
    events: list[str] = []
    forward = predictor.forward

    def timed_forward(batch):
        events.append("forward starts")
        out = forward(batch)
        events.append("forward ends")
        return out

    monkeypatch.setattr(predictor, "forward", timed_forward)

    def loader(seed):
        def load():
            events.append(f"load {seed}")
            return phantom(seed=seed), "L"

        return load

    batches = predictor.stream_batches([loader(s) for s in range(5)], batch_size=2)
    sizes = []
    for batch in batches:
        sizes.append(len(batch))
        events.append("stored")
    assert sizes == [2, 2, 1]
    busy = False
    for event in events:
        busy = {"forward starts": True, "forward ends": False}.get(event, busy)
        assert not (busy and event.startswith("load")), events
    assert events.count("forward starts") == 3 and events.index("load 2") > events.index("forward ends")


def test_on_a_gpu_the_loader_prepares_the_next_batch_during_the_forward_pass(
    tiny_checkpoint: Path, monkeypatch
) -> None:
    """The GPU path's overlap, checked on the CPU: with the predictor's device a CUDA one, the first forward pass
    waits (up to 10 s) for the next batch's loader to start; without the overlap it would time out."""
    import threading

    predictor = Predictor.load(tiny_checkpoint, device="cpu")
    forward = predictor.forward
    next_loaded = threading.Event()
    overlapped = []

    def waiting_forward(batch):
        if not overlapped:  # the first batch's forward pass: the second batch is being loaded meanwhile
            overlapped.append(next_loaded.wait(timeout=10))
        predictor.device = torch.device("cpu")  # the schedule was chosen when the stream started
        return forward(batch)

    monkeypatch.setattr(predictor, "forward", waiting_forward)
    predictor.device = torch.device("cuda")  # what the stream schedules by; the model itself stays on the CPU

    def loader(seed):
        def load():
            if seed >= 2:
                next_loaded.set()
            return phantom(seed=seed), "L"

        return load

    results = predictor.predict_stream([loader(s) for s in range(4)], batch_size=2)
    assert len(results) == 4 and all(r.probability >= 0 for r in results)
    assert overlapped == [True]  # batch 2 was loading while batch 1 ran
