"""Settings for a render worker that is slow to encode PNGs, so a test can kill it mid-render."""

import time

from PIL import Image, PngImagePlugin

from portal.settings import *  # noqa: F403

_save = PngImagePlugin._save


def _slow_save(*args, **kwargs):
    time.sleep(60)
    return _save(*args, **kwargs)


Image.SAVE["PNG"] = _slow_save
