"""The WSGI application (gunicorn `portal.wsgi:application`).

After start-up the objects Django, DRF and the portal's modules made are frozen out of the garbage
collector's generations, and full collections run less often: each API list request allocates tens of
thousands of objects (DRF builds fields per nested serializer), and a full collection walking the
whole start-up heap cost 100-250 ms every few requests (the p95 of the image list at 100k studies;
bench/api.py). Frozen objects are never collected, which is what they are: modules, classes, settings.
"""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()


def _settle_garbage_collector() -> None:
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - import every view module now, not on the first request
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


if os.environ.get("PORTAL_GC_FREEZE", "1") != "0":
    _settle_garbage_collector()
