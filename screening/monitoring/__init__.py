"""Post-market monitoring of each model version: input and output drift, subgroup performance, alerts.

Layers as in the rest of the portal: views/api (faces) -> services (writes) -> selectors (reads)
-> models; drift.py and subgroups.py are plain Python + numpy (no Django), so every figure can be
checked by hand. No torch anywhere here: the web process imports this package.
"""
