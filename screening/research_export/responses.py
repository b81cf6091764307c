"""What both faces (page and API) hand out for an export: its JSON, and the archive streamed once."""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponse

from screening.audit.services import client_ip
from screening.models import ResearchExport
from screening.research_export import services


def export_json(export: ResearchExport) -> dict:
    return {
        "id": export.pk,
        "project": export.project.name,
        "status": export.status,
        "progress": export.progress,
        "summary": export.summary,
        "filters": export.filters,
        "options": export.options,
        "reason": export.reason,
        "error": export.error,
        "created": export.created.isoformat(),
        "finished": export.finished.isoformat() if export.finished else None,
        "downloaded": export.downloaded.isoformat() if export.downloaded else None,
    }


def peek(export: ResearchExport, request) -> HttpResponse:
    """HEAD of the download: what a GET would answer, without handing the archive over."""
    services.check_download(export=export, user=request.user)
    return HttpResponse(content_type="application/zip")


def stream_once(export: ResearchExport, request) -> FileResponse:
    """Hand the archive over once and delete it when the response is closed."""
    name = services.take_download(export=export, user=request.user, ip_address=client_ip(request))
    try:
        handle = default_storage.open(name, "rb")
    except FileNotFoundError:
        raise Http404("the archive is gone") from None
    response = FileResponse(handle, as_attachment=True, filename=f"research-export-{export.pk}.zip")
    response._resource_closers.append(lambda: default_storage.delete(name))
    return response
