"""Reading pages: the worklist, the case viewer and its data, my reading, arbitration, the reading policy,
assignment, outcomes, performance.

Thin: parse, call a selector or a service, render; a service's PortalError
becomes a message on the page.
"""

from __future__ import annotations

import json
from dataclasses import replace

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from ml.scoring import thresholds_for
from screening.accounts.roles import (
    can_arbitrate_list,
    can_read_cases,
    can_record_outcomes,
    can_see_identity,
    is_admin,
    require,
)
from screening.api.errors import error_body
from screening.api.pagination import CappedPaginator
from screening.audit.services import client_ip
from screening.blinding import AIVisibility, ai_visibility
from screening.errors import PortalError
from screening.exchange import ohif
from screening.intake.selectors import (
    cad_marks_shown,
    current_prediction,
    priors_of,
    studies_visible_to,
    study_by_reference,
)
from screening.models import NoteTemplate, Outcome, Prediction, ReadingPolicy, Study
from screening.reading import lexicon
from screening.reading.assessment import SIDE_NAMES, SIDES
from screening.reading.forms import (
    AssignForm,
    OutcomeForm,
    OutcomeImportForm,
    PerformanceForm,
    PolicyForm,
    WorklistForm,
)
from screening.reading.models import HangingProtocol
from screening.reading.performance import performance
from screening.reading.rules import current_policies, expected_workload, policy_for, policy_of
from screening.reading.selectors import (
    arbitration_worklist,
    hanging_protocol_of,
    next_study_after,
    reading_worklist_for,
    worklist_counts,
    worklist_for,
)
from screening.reading.services import outcomes, preferences, reading
from screening.sites.models import DEFAULT_SITE
from screening.sites.selectors import clean_site, site_names
from screening.svg_plots import interval_plot


def _site(request) -> str:
    """The site a reading page is about (`?site=`, or the form's `site`); an unknown code says so and shows
    the default site."""
    code = request.POST.get("site") or request.GET.get("site") or ""
    try:
        return clean_site(code)
    except PortalError as exc:
        messages.error(request, exc.message)
        return DEFAULT_SITE


@require_safe
@login_required
def my_reading(request):
    """The cases that still need this reader's read, in the order the policy sets."""
    require(can_read_cases(request.user))
    site = _site(request)
    policy = policy_for(site)
    page = CappedPaginator(reading_worklist_for(request.user, policy), 50).get_page(request.GET.get("page"))
    visibility = ai_visibility(request.user)
    for study in page:
        visibility.mask(study)
    return render(
        request,
        "screening/reading.html",
        {
            "page": page,
            "policy": policy,
            "site": site,
            "sites": (names := site_names()),
            "site_name": names.get(site, site),
            "can_arbitrate": can_arbitrate_list(request.user),
        },
    )


@require_safe
@login_required
def arbitration(request):
    """Discordant pairs awaiting the final decision (arbitrators work it, admins watch it)."""
    require(can_arbitrate_list(request.user))
    page = CappedPaginator(arbitration_worklist(request.user), 50).get_page(request.GET.get("page"))
    policies = {policy.site: policy for policy in current_policies()}
    for study in page:
        study.policy = policies.get(study.site) or policy_of(study)
    return render(request, "screening/arbitration.html", {"page": page})


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def policy(request):
    """Set the site's reading policy (a new version; the history stays), with its expected workload."""
    require(is_admin(request.user))
    site = _site(request)
    current = policy_for(site)
    if request.method == "POST":
        form = PolicyForm(request.POST)
        if form.is_valid():
            try:
                reading.set_policy(user=request.user, ip_address=client_ip(request), site=site, **form.cleaned_data)
            except PortalError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                messages.success(request, f"Reading policy of {site_names().get(site, site)} saved.")
                return redirect(f"{reverse('reading-policy')}?{urlencode({'site': site})}")
    else:
        form = PolicyForm(
            initial={
                "mode": current.mode,
                "triage_threshold": current.triage_threshold,
                "resolution": current.resolution,
                "blind_ai": current.blind_ai,
                "order": current.order,
                "lock_minutes": current.lock_minutes,
            }
        )
    thresholds = [0.05, 0.1, 0.2, 0.3, 0.5]
    if current.triage_threshold is not None and current.triage_threshold not in thresholds:
        thresholds = sorted([*thresholds, current.triage_threshold])
    return render(
        request,
        "screening/reading_policy.html",
        {
            "form": form,
            "current": current,
            "site": site,
            "sites": (names := site_names()),
            "site_name": names.get(site, site),
            "history": ReadingPolicy.objects.filter(site=site).select_related("created_by")[:50],
            "workload": [(t, expected_workload(t, site=site)) for t in thresholds],
            "double": expected_workload(None, ReadingPolicy.Mode.DOUBLE, site),
        },
    )


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def assign(request):
    """Assign or reassign studies to a reader (admins); every change is audited. The form is on the reading
    page: a GET (the address the README names, typed in) goes there."""
    require(is_admin(request.user))
    if request.method != "POST":
        return redirect(f"{reverse('reading')}?{urlencode({'site': _site(request)})}#assign")
    form = AssignForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(e for errors in form.errors.values() for e in errors))
        return redirect(f"{reverse('reading')}?{urlencode({'site': _site(request)})}")
    name = form.cleaned_data["reader"].strip()
    reader = get_user_model().objects.filter(username=name, is_active=True).first() if name else None
    if name and reader is None:
        messages.error(request, f"no active user named {name}")
        return redirect(f"{reverse('reading')}?{urlencode({'site': _site(request)})}")
    studies = list(Study.objects.filter(pk__in=form.cleaned_data["studies"]))
    try:
        changed = reading.assign(studies=studies, reader=reader, user=request.user, ip_address=client_ip(request))
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{changed} stud{'y' if changed == 1 else 'ies'} assigned.")
    return redirect(f"{reverse('reading')}?{urlencode({'site': _site(request)})}")


@require_POST
@login_required
def release_lock(request, pk: int):
    """The reader left the case (the page sends this as it unloads): the case is free for others."""
    require(can_read_cases(request.user))
    study = get_object_or_404(Study, pk=pk)
    reading.release_lock(study=study, user=request.user, reason="leave", ip_address=client_ip(request))
    return HttpResponse(status=204)


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def outcome_list(request):
    """Record outcomes one by one or import a CSV; the latest outcomes below."""
    require(can_record_outcomes(request.user))
    form, upload = OutcomeForm(), OutcomeImportForm()
    if request.method == "POST":
        try:
            if "file" in request.FILES:
                upload = OutcomeImportForm(request.POST, request.FILES)
                if upload.is_valid():
                    data = upload.cleaned_data["file"].read(outcomes.CSV_MAX_BYTES + 1)
                    n = outcomes.import_csv(data=data, user=request.user, ip_address=client_ip(request))
                    messages.success(request, f"{n} outcomes imported.")
                    return redirect("outcomes")
            else:
                form = OutcomeForm(request.POST)
                if form.is_valid():
                    data = form.cleaned_data
                    study = study_by_reference(request.user, data["study"], data["study_date"])
                    outcomes.record_outcome(
                        item=outcomes.OutcomeInput(
                            study=study,
                            laterality=data["laterality"],
                            result=data["result"],
                            cancer_type=data["cancer_type"] or "",
                            diagnosed_on=data["diagnosed_on"],
                        ),
                        user=request.user,
                        ip_address=client_ip(request),
                    )
                    messages.success(request, "Outcome recorded.")
                    return redirect("outcomes")
        except PortalError as exc:
            target = upload if "file" in request.FILES else form
            target.add_error(exc.field if exc.field in target.fields else None, exc.message)
    # Only the outcomes of studies this user may see: an API client its own uploads' (as the outcomes API).
    visible = studies_visible_to(request.user).values("pk")
    recent = (
        Outcome.objects.filter(study__in=visible).select_related("study__patient", "recorded_by").order_by("-id")[:100]
    )
    return render(
        request,
        "screening/outcomes.html",
        {"form": form, "upload": upload, "recent": recent, "show_identity": can_see_identity(request.user)},
    )


@require_safe
@login_required
def performance_page(request):
    """Readers, model versions and the programme, with intervals, plotted on the server."""
    require(is_admin(request.user))
    form = PerformanceForm(request.GET or None)
    figures = performance(form.filters())
    rows = [("Programme", figures["programme"])]
    rows += [(r["reader"], r) for r in figures["readers"]]
    rows += [(f"AI {m['model']}", m) for m in figures["models"]]

    def percent(title: str, key: str, axis: str):
        return interval_plot(title, [(label, f[key]) for label, f in rows], axis=axis, upper=1.0, scale=100, unit="%")

    plots = [
        percent("Recall rate", "recall_rate", "screened exams recalled"),
        interval_plot(
            "Cancer detection rate",
            [(label, f["cancer_detection_per_1000"]) for label, f in rows],
            axis="cancers detected per 1,000 screened exams",
        ),
        percent("Sensitivity", "sensitivity", "cancers recalled, of exams with a cancer outcome"),
        percent("Specificity", "specificity", "exams not recalled, of exams with a no-cancer outcome"),
    ]
    breast_rows = [(label, f["breasts"]) for label, f in rows if "breasts" in f]  # the AI's flag is per exam
    return render(
        request,
        "screening/performance.html",
        {"form": form, "figures": figures, "rows": rows, "breast_rows": breast_rows, "plots": plots},
    )


@require_safe
@login_required
def worklist(request):
    """Unread studies first, ordered by AI exam score; filters and orderings from the query string."""
    require(can_read_cases(request.user))
    form = WorklistForm(request.GET or None)
    visibility = ai_visibility(request.user)
    if visibility.hides_any:
        form.fields["ordering"].initial = "date"
    filters = form.filters()
    try:
        studies = worklist_for(request.user, filters)
    except PortalError as exc:  # a filter or an order by the AI, for a reader blinded to it
        messages.error(request, exc.message)
        studies = worklist_for(request.user, replace(filters, flag="", ordering=""))
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
            "counts": worklist_counts(request.user),
            "query": query.urlencode(),
        },
    )


@require_safe
@login_required
def study_viewer(request, pk: int):
    """The case: four views, the AI result and the decision form. Opening it is audited and locks the
    case to a reader with a read to make; the page data come blinded from the API (study_detail)."""
    require(can_read_cases(request.user))
    study = get_object_or_404(Study.objects.select_related("patient"), pk=pk)
    if request.method == "HEAD":
        # A HEAD (a link checker, curl -I) says the page is there; it must not lock the case or audit an opening.
        return HttpResponse(content_type="text/html; charset=utf-8")
    case_reading = reading.open_case(study=study, user=request.user, ip_address=client_ip(request))
    following = next_study_after(request.user, study)
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
            # The case's images for the page's early script (static/viewer/src/early.js): it lays out and paints
            # their previews and asks for their pixel data while the viewer bundle boots
            "first_paint": [_first_paint(image) for image in study.images.select_related("study").order_by("pk")],
            # The same study in OHIF, for readers who prefer it (when installed): DICOMweb blinds what it serves.
            "ohif_url": ohif.study_url(study),
            # SRs sent back to the PACS, newest first; only final decisions are sent, and none to a blinded reader
            "exports": list(study.exports.all()[:20]) if case_reading.show_reads else [],
            # and the final decisions sent to a RIS as HL7 results (screening.exchange.services.hl7_export)
            "hl7_exports": list(study.hl7_exports.all()[:20]) if case_reading.show_reads else [],
            "reading": case_reading,  # slot, lock, blinding: templates/screening/_reading_status.html
            "breast_sides": [(side, SIDE_NAMES[side].capitalize()) for side in SIDES],  # the decision form's rows
            "lexicon": lexicon.as_data(),  # the findings' terms for the form (static/viewer/src/findings.js)
            "note_templates": list(NoteTemplate.objects.filter(active=True)),
            "hanging_protocol": hanging_protocol_of(request.user),  # chosen in any browser (reading-preferences)
        },
    )


def _first_paint(image) -> dict:
    """What the page's first paint needs of an image: where it hangs, its size, its pixel data, and its preview
    (a small JPEG of the display rendition, once the render worker has made that)."""
    return {
        "id": image.pk,
        "laterality": image.laterality,
        "view": image.view,
        "columns": image.columns,
        "rows": image.rows,
        "url": _pixel_source(image)["url"],
        "preview": reverse("api-image-preview", args=[image.pk]) if image.rendition else None,
        # the stored values' range (render worker), which the first paint windows with when the header has none
        "stored_range": [image.stored_min, image.stored_max] if image.stored_min is not None else None,
    }


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


_NEWEST_FIRST = Prefetch("predictions", queryset=Prediction.objects.order_by("-model_version_id", "-id"))


def _shown_regions(image) -> dict:
    """{"regions": [...]}: the AI's top regions of a finished prediction at or above its model's region
    threshold (the viewer's AI marks); {} without one. Only for a study whose AI the reader may see."""
    prediction = current_prediction(image)
    if prediction is None or prediction.status != "done":
        return {}
    version = prediction.model_version
    floor = thresholds_for(version.metrics, version.threshold, prediction.source_kind)["region"]
    return {"regions": [r for r in prediction.regions or [] if r.get("probability", 0.0) >= floor]}


def viewer_data(study: Study, *, visibility: AIVisibility | None = None, show_reads: bool = True) -> dict:
    """What the viewer needs beyond the study API: pixel sources, the AI's top regions, the vendor's CAD marks
    (`cad`, from the study's Mammography CAD SRs), and the
    woman's earlier studies with their decision, AI score and AI regions (a layer on the prior's images).
    A blinded reader gets no AI or decision keys: no regions and no score of a study whose AI the reading
    policy hides from them (screening.blinding, study by study), and no decision when show_reads is False."""
    visibility = visibility or ai_visibility(None)
    show_ai = visibility.shows(study)
    cad = cad_marks_shown(study, visibility)  # the vendor's CAD marks: AI, under the same blinding
    images = {}
    for image in study.images.prefetch_related(_NEWEST_FIRST):  # as current_prediction expects
        entry = {"source": _pixel_source(image)}
        if show_ai:
            entry.update(_shown_regions(image))
        if image.sop_uid in cad:
            entry["cad"] = cad[image.sop_uid]
        images[str(image.pk)] = entry
    priors = []
    earlier = priors_of(study)  # never a study held for reconciliation
    for prior in visibility.annotate(earlier.select_related("patient")).order_by("-study_date", "-created")[:3]:
        entry = {
            "id": prior.pk,
            "study_date": prior.study_date.isoformat() if prior.study_date else None,
            "age": _age_at(prior),
            "images": [],
        }
        prior_ai = visibility.shows(prior)  # a prior the reader has not read, at a blinded site, says nothing of the AI
        for i in prior.images.prefetch_related(_NEWEST_FIRST):
            facts = {"id": i.pk, "laterality": i.laterality, "view": i.view, "manufacturer": i.manufacturer}
            facts.update(
                source=_pixel_source(i),
                rendition=reverse("api-image-rendition", args=[i.pk]),
                preview=reverse("api-image-preview", args=[i.pk]),  # the thumbnail strip's picture
            )
            entry["images"].append({**facts, **(_shown_regions(i) if prior_ai else {})})
        if prior_ai:
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
    require(can_read_cases(request.user))
    study = get_object_or_404(Study.objects.select_related("patient"), pk=pk)
    data = viewer_data(study, visibility=ai_visibility(request.user))
    if can_see_identity(request.user):  # the same rule as the API's patient and study serializers
        patient = study.patient
        birth = patient.birth_date.isoformat() if patient.birth_date else None
        data["identity"] = {"name": patient.name.replace("^", " ").strip(), "birth_date": birth, "age": _age_at(study)}
    # The case "Submit and next" opens, with its pixel sources: the viewer prefetches them once this one has painted.
    following = next_study_after(request.user, study)
    data["next"] = (
        {"id": following.pk, "sources": [_pixel_source(image) for image in following.images.select_related("study")]}
        if following
        else None
    )
    return JsonResponse(data)


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def reader_preferences(request):
    """The reader's reading-station preferences as JSON, under their session (a POST needs the CSRF token):
    GET answers them, POST {"hanging_protocol": id} changes them. Bad input: 400 with the JSON error shape."""
    require(can_read_cases(request.user))
    if request.method == "POST":
        try:
            body = json.loads(request.body or b"null")
        except (ValueError, UnicodeDecodeError):
            return JsonResponse(error_body("invalid", "the body is not JSON"), status=400)
        if not isinstance(body, dict) or "hanging_protocol" not in body:
            message = 'expected a JSON object such as {"hanging_protocol": "four-up"}'
            return JsonResponse(error_body("invalid", message, {"hanging_protocol": [message]}), status=400)
        try:
            preferences.set_hanging_protocol(user=request.user, protocol=body["hanging_protocol"])
        except PortalError as exc:
            return JsonResponse(error_body(exc.code, exc.message, {exc.field: [exc.message]}), status=400)
    return JsonResponse(
        {"hanging_protocol": hanging_protocol_of(request.user), "hanging_protocols": HangingProtocol.values}
    )
