"""What the stand-in models of the tests share: the worker's streaming entry point over their `predict`."""

from __future__ import annotations


class OneByOne:
    """`stream_batches` as ml.inference.Predictor offers it, made of the subclass's `predict` image by image."""

    def stream_batches(self, loaders, batch_size=8, heatmap_max_side=None, more=None):
        """The worker's entry point: each loader's image, or its exception, in order (a batch per call of
        `more`)."""
        while loaders:
            out = []
            for load in loaders:
                try:
                    out.append(self.predict([load()])[0])
                except Exception as exc:
                    out.append(exc)
            yield out
            loaders = more() if more is not None else []
