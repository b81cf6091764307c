"""Pages. Thin: parse the request, call a selector or service, render."""

from __future__ import annotations

from dataclasses import replace

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView, LogoutView
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_safe

from ml.scoring import thresholds_for
from screening.accounts.roles import can_read_cases, can_upload, is_admin
from screening.audit.services import client_ip
from screening.blinding import AIVisibility, ai_visibility
from screening.errors import PortalError
from screening.forms import WorklistForm
from screening.intake import selectors
from screening.models import Prediction, Study
from screening.reading.services import reading
from screening.sites.services import site_names


def _require(allowed: bool) -> None:
    if not allowed:
        raise PermissionDenied


@require_safe
@login_required
def worklist(request):
    """Unread studies first, ordered by AI exam score; filters and orderings from the query string."""
    _require(can_read_cases(request.user))
    form = WorklistForm(request.GET or None)
    visibility = ai_visibility(request.user)
    if visibility.hides_any:
        form.fields["ordering"].initial = "date"
    filters = form.filters()
    try:
        studies = selectors.worklist_for(request.user, filters)
    except PortalError as exc:  # a filter or an order by the AI, for a reader blinded to it
        messages.error(request, exc.message)
        studies = selectors.worklist_for(request.user, replace(filters, flag="", ordering=""))
    page = Paginator(studies, 50).get_page(request.GET.get("page"))
    for study in page:
        visibility.mask(study)
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "screening/worklist.html",
        {
            "page": page,
            "form": form,
            "counts": selectors.worklist_counts(request.user),
            "query": query.urlencode(),
        },
    )


@require_safe
@login_required
def study_viewer(request, pk: int):
    """The case: four views, the AI result and the decision form. Opening it is audited and locks the
    case to a reader with a read to make; the page data come blinded from the API (study_detail)."""
    _require(can_read_cases(request.user))
    study = get_object_or_404(Study.objects.select_related("patient"), pk=pk)
    if request.method == "HEAD":
        # A HEAD (a link checker, curl -I) says the page is there; it must not lock the case or audit an opening.
        return HttpResponse(content_type="text/html; charset=utf-8")
    case_reading = reading.open_case(study=study, user=request.user, ip_address=client_ip(request))
    following = selectors.next_study_after(request.user, study)
    return render(
        request,
        "screening/viewer.html",
        {
            "study": study,
            "study_json_url": reverse("api-study-detail", args=[study.pk]),
            "reviews_url": reverse("api-study-reviews", args=[study.pk]),
            "worklist_url": reverse("worklist"),
            "next_url": reverse("study-viewer", args=[following.pk]) if following else None,
            "viewer_data_url": reverse("study-viewer-data", args=[study.pk]),
            # SRs sent back to the PACS, newest first; only final decisions are sent, and none to a blinded reader
            "exports": list(study.exports.all()[:20]) if case_reading.show_reads else [],
            "reading": case_reading,  # slot, lock, blinding: templates/screening/_reading_status.html
        },
    )


def _pixel_source(image) -> dict:
    """Where the viewer reads an image's stored pixels: the DICOM instance over WADO-RS (full bit
    depth, with its header), or an uploaded picture's stored values wrapped as DICOM (api `pixels`)."""
    from screening.exchange.web.common import series_uid

    if image.file_format == image.Format.DICOM:
        url = reverse("dicomweb-instance", args=[image.study.study_uid, series_uid(image), image.sop_uid])
        return {"kind": "dicom", "url": url}
    return {"kind": "picture", "url": reverse("api-image-pixels", args=[image.pk])}


def _age_at(study: Study) -> int | None:
    birth, date = study.patient.birth_date, study.study_date
    if birth is None or date is None:
        return None
    return date.year - birth.year - ((date.month, date.day) < (birth.month, birth.day))


def viewer_data(study: Study, *, visibility: AIVisibility | None = None, show_reads: bool = True) -> dict:
    """What the viewer needs beyond the study API: pixel sources, the AI's top regions, and the
    woman's earlier studies with their decision and AI score. A blinded reader gets no AI or
    decision keys: no regions of a study, no score of a prior, whose AI the reading policy hides from
    them (screening.blinding, study by study), and no decision when show_reads is False."""
    visibility = visibility or ai_visibility(None)
    show_ai = visibility.shows(study)
    images = {}
    newest_first = Prefetch("predictions", queryset=Prediction.objects.order_by("-model_version_id", "-id"))
    for image in study.images.prefetch_related(newest_first):  # as selectors.current_prediction expects
        entry = {"source": _pixel_source(image)}
        prediction = selectors.current_prediction(image)
        if show_ai and prediction is not None and prediction.status == "done":
            version = prediction.model_version
            floor = thresholds_for(version.metrics, version.threshold, prediction.source_kind)["region"]
            entry["regions"] = [r for r in prediction.regions or [] if r.get("probability", 0.0) >= floor]
        images[str(image.pk)] = entry
    priors = []
    earlier = selectors.priors_of(study)  # never a study held for reconciliation
    for prior in visibility.annotate(earlier.select_related("patient")).order_by("-study_date", "-created")[:3]:
        entry = {
            "id": prior.pk,
            "study_date": prior.study_date.isoformat() if prior.study_date else None,
            "age": _age_at(prior),
            "images": [
                {
                    "id": i.pk,
                    "laterality": i.laterality,
                    "view": i.view,
                    "manufacturer": i.manufacturer,
                    "source": _pixel_source(i),
                }
                for i in prior.images.all()
            ],
        }
        if visibility.shows(prior):  # a prior the reader has not read, at a blinded site, says nothing of the AI
            entry["exam_score"] = prior.exam_score
            entry["exam_flag"] = prior.exam_flag
        if show_reads:
            # The prior's final decision (double reading: never one reader's read of a discordant pair).
            latest = prior.reviews.filter(is_final=True).order_by("-version").first()
            entry["decision"] = (
                {"decision": latest.decision, "birads": latest.birads, "version": latest.version} if latest else None
            )
        priors.append(entry)
    return {
        "study": {"study_date": study.study_date.isoformat() if study.study_date else None, "age": _age_at(study)},
        "images": images,
        "priors": priors,
    }


@require_safe
@login_required
def study_viewer_data(request, pk: int):
    """The viewer's JSON (see viewer_data); same access as the viewer page."""
    _require(can_read_cases(request.user))
    study = get_object_or_404(Study.objects.select_related("patient"), pk=pk)
    data = viewer_data(study, visibility=ai_visibility(request.user))
    # The case "Submit and next" opens, with its pixel sources: the viewer prefetches them once this one has painted.
    following = selectors.next_study_after(request.user, study)
    data["next"] = (
        {"id": following.pk, "sources": [_pixel_source(image) for image in following.images.select_related("study")]}
        if following
        else None
    )
    return JsonResponse(data)


@require_safe
@login_required
def study_audit(request, pk: int):
    """The audit trail of one case (admins). It outlives the study: a deleted one shows why it went."""
    _require(is_admin(request.user))
    study = Study.objects.filter(pk=pk).first()
    events = list(selectors.audit_trail(pk)[:500])
    if study is None and not events:
        raise Http404("No such study")
    deletion = next((e for e in events if e.action == "study_delete"), None) if study is None else None
    return render(
        request, "screening/audit.html", {"study_id": pk, "study": study, "deletion": deletion, "events": events}
    )


@require_safe
@login_required
def upload(request):
    _require(can_upload(request.user))
    return render(request, "screening/upload.html", {"sites": site_names()})


@require_safe
def healthz(request):
    """Liveness for load balancers and compose: the database answers. No data, so no login."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def landing_url(user) -> str:
    """The first page a role may open: readers the worklist, other roles (API clients) the upload page."""
    if can_read_cases(user) or not can_upload(user):
        return reverse("worklist")
    return reverse("upload")


class PortalLoginView(LoginView):
    """The login page. Failed logins are counted by django-axes like every way in (portal.login_guard).

    After logging in, a role that may not read cases lands on a page it may open instead of the worklist.
    """

    http_method_names = ["get", "post", "head", "options"]

    def get_success_url(self) -> str:
        url = super().get_success_url()
        if url == reverse("worklist"):
            return landing_url(self.request.user)
        return url


class PortalLogoutView(LogoutView):
    """Logging out also clears what the portal kept in this browser: the next-case prefetch holds a case's
    DICOM instances in Cache Storage, which must not outlive the session (`Clear-Site-Data`)."""

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        response["Clear-Site-Data"] = '"cache", "storage"'
        return response
