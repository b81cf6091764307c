"""The DICOMweb routes under /dicomweb/ (included by portal/urls.py)."""

from django.urls import path

from screening.exchange.web.qido import InstanceSearchView, SeriesSearchView, StudiesView
from screening.exchange.web.wado import (
    FramesView,
    InstanceView,
    MetadataView,
    RenderedView,
    SeriesView,
    StudyView,
    ThumbnailView,
)

_STUDY = "dicomweb/studies/<str:study>"
_SERIES = _STUDY + "/series/<str:series>"
_INSTANCE = _SERIES + "/instances/<str:sop>"

urlpatterns = [
    path("dicomweb/studies", StudiesView.as_view(), name="dicomweb-studies"),
    path(_STUDY, StudyView.as_view(), name="dicomweb-study"),
    path(_STUDY + "/metadata", MetadataView.as_view(), name="dicomweb-study-metadata"),
    path(_STUDY + "/series", SeriesSearchView.as_view(), name="dicomweb-study-series"),
    path(_STUDY + "/instances", InstanceSearchView.as_view(), name="dicomweb-study-instances"),
    path(_SERIES, SeriesView.as_view(), name="dicomweb-series"),
    path(_SERIES + "/metadata", MetadataView.as_view(), name="dicomweb-series-metadata"),
    path(_SERIES + "/instances", InstanceSearchView.as_view(), name="dicomweb-series-instances"),
    path(_INSTANCE, InstanceView.as_view(), name="dicomweb-instance"),
    path(_INSTANCE + "/metadata", MetadataView.as_view(), name="dicomweb-instance-metadata"),
    path(_INSTANCE + "/frames/<str:frames>", FramesView.as_view(), name="dicomweb-instance-frames"),
    path(_INSTANCE + "/rendered", RenderedView.as_view(), name="dicomweb-instance-rendered"),
    path(_STUDY + "/thumbnail", ThumbnailView.as_view(), name="dicomweb-study-thumbnail"),
    path(_SERIES + "/thumbnail", ThumbnailView.as_view(), name="dicomweb-series-thumbnail"),
    path(_INSTANCE + "/thumbnail", ThumbnailView.as_view(), name="dicomweb-instance-thumbnail"),
]
