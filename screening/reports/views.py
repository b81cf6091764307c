"""The report page of an exam."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_safe

from screening.accounts.roles import can_read_cases
from screening.models import Study
from screening.reports.pdf import report_pdf
from screening.reports.selectors import report_of


@require_safe
@login_required
def study_report(request, pk: int):
    """The exam's structured report: each breast's assessment, density, findings, note, the reader."""
    if not can_read_cases(request.user):
        raise PermissionDenied
    study = get_object_or_404(Study.objects.select_related("patient"), pk=pk)
    return render(request, "screening/report.html", {"report": report_of(study, request.user)})


@require_safe
@login_required
def study_report_pdf(request, pk: int):
    """The same report as a PDF made on the server (A4, with the images and the reader's marks)."""
    if not can_read_cases(request.user):
        raise PermissionDenied
    study = get_object_or_404(Study.objects.select_related("patient"), pk=pk)
    response = HttpResponse(report_pdf(report_of(study, request.user)), content_type="application/pdf")
    # The study's number only: no patient data in a file name that mail clients and downloads folders keep.
    response["Content-Disposition"] = f'inline; filename="report-study-{study.pk}.pdf"'
    response["Cache-Control"] = "no-store"
    return response
