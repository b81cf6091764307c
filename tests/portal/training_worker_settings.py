"""Settings for the training worker that tests start: the portal's, with a run small enough for seconds."""

from portal.settings import *  # noqa: F403

PORTAL_VALIDATION_FRACTION = 0.34
PORTAL_TRAINING_OVERRIDES = {"epochs": 6, "patience": 6, "augment_views": ["orig"]}
