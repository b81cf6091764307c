"""The OHIF viewer (issue 23): the prebuilt @ohif/app served at /ohif/, same origin, behind the portal's login.

scripts/build_ohif.sh installs it into vendor/ohif (PORTAL_OHIF_DIR) from the npm registry's tarball,
pinned by its sha512. Its files are served to readers only: the app is public code, but a login in front
of it keeps the portal's surface one shape (every page and endpoint needs a login). OHIF then reads the
portal's DICOMweb with the session cookie, so the server applies the same roles, pseudonyms and blinding
as to any DICOMweb client (a blinded reader's QIDO lists no AI SR, its WADO answers 404 for one).

The stock index.html holds two inline scripts (the public URL, a dynamic-import helper) and a
service-worker loader; the page served here drops them and sets both in app-config.js, which the portal
writes for its own DICOMweb root. Chunks are loaded from /ohif/ (build_ohif.sh points webpack there).
"""

from __future__ import annotations

import mimetypes
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlencode

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils._os import safe_join
from django.views.decorators.http import require_safe

from screening.accounts.roles import can_read_cases

BASE = "/ohif/"
_INLINE_SCRIPT = re.compile(r"<script>.*?</script>", re.S)
_SERVICE_WORKER = re.compile(r'<script[^>]*init-service-worker\.js"[^>]*></script>')
_ROOT_URL = re.compile(r'(href|src)="/(?!/)')
# What the stock build needs beyond the portal's policy: emotion and the toolbars insert <style> elements;
# the image loaders decode in blob: workers.
OHIF_CSP = {"style-src": [UNSAFE_INLINE], "worker-src": [SELF, "blob:"]}


def ohif_dir() -> Path:
    return Path(settings.PORTAL_OHIF_DIR)


def study_url(study) -> str | None:
    """Where OHIF opens one study, or None when OHIF is not installed here."""
    if not (ohif_dir() / "index.html").is_file():
        return None
    return f"{BASE}viewer?{urlencode({'StudyInstanceUIDs': study.study_uid})}"


@lru_cache(maxsize=4)
def _index_html(source: Path, mtime: float) -> str:
    """The stock index.html for /ohif/: inline scripts and the service worker out, root URLs under /ohif/."""
    html = source.read_text(encoding="utf-8")
    html = _SERVICE_WORKER.sub("", _INLINE_SCRIPT.sub("", html))
    return _ROOT_URL.sub(rf'\1="{BASE}', html)


def _index(request) -> HttpResponse:
    source = ohif_dir() / "index.html"
    if not source.is_file():
        raise Http404("The OHIF viewer is not installed on this server (scripts/build_ohif.sh)")
    response = HttpResponse(_index_html(source, source.stat().st_mtime), content_type="text/html; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    return response


def _app_config(request) -> HttpResponse:
    dicomweb = request.build_absolute_uri(reverse("dicomweb-studies")).removesuffix("/studies")
    response = render(
        request,
        "screening/ohif_app_config.js",
        {"base": BASE, "dicomweb": dicomweb},
        content_type="text/javascript; charset=utf-8",
    )
    response["Cache-Control"] = "no-cache"
    return response


def _file(request, target: Path) -> FileResponse:
    """One of OHIF's files; its gzip copy (build_ohif.sh makes them) to a browser that takes gzip: the app's
    bundle is 17 MB, 3.4 MB gzipped."""
    content_type = "application/wasm" if target.suffix == ".wasm" else mimetypes.guess_type(target.name)[0]
    packed = target.with_name(target.name + ".gz")
    gzip = "gzip" in request.headers.get("Accept-Encoding", "") and packed.is_file()
    response = FileResponse((packed if gzip else target).open("rb"), content_type=content_type or "text/plain")
    if gzip:
        response["Content-Encoding"] = "gzip"
    response["Vary"] = "Accept-Encoding"
    # Content-hashed bundles never change under their name; the rest is revalidated.
    hashed = re.search(r"\.[0-9a-f]{16}\.(js|wasm)$|^[0-9a-f]{16}\.", target.name)
    response["Cache-Control"] = "private, max-age=31536000, immutable" if hashed else "private, no-cache"
    return response


@require_safe
@login_required
@csp_update(OHIF_CSP)
def ohif(request, path: str = ""):
    """OHIF's page, its app-config.js and its static files, to readers. A route of the app (the study list,
    /ohif/viewer?StudyInstanceUIDs=...) answers the page, as OHIF's own server does."""
    if not can_read_cases(request.user):
        raise PermissionDenied
    if path == "app-config.js":
        return _app_config(request)
    if path in ("", "index.html"):
        return _index(request)
    try:
        target = Path(safe_join(ohif_dir(), path))
    except Exception:  # noqa: BLE001 - SuspiciousFileOperation: a path leaving the folder
        raise Http404("No such file") from None
    if target.is_file():
        return _file(request, target)
    if "." in path.rsplit("/", 1)[-1]:
        raise Http404("No such file")
    return _index(request)
