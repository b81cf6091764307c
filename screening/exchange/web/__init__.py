"""DICOMweb under /dicomweb/: STOW-RS, QIDO-RS and WADO-RS, enough for OHIF and dicomweb-client.

One module per resource: `stow` (store), `qido` (search), `wado` (retrieve: instances, metadata,
frames, rendered), `summary` (what a study search takes of a study's images, cached), `multipart` (the
streaming multipart/related parser and writer), `common` (DICOM JSON, identity, series UIDs, lookups,
audit) and `urls` (the routes, included from here).

The same roles, visibility and pseudonyms as the REST API (screening.intake.selectors): an API client
sees its own uploads only; another's study is 404. Patient identity (PatientID, PatientName)
only for users who may see it; others get the per-viewer pseudonym, and WADO serves them a copy
of the original with identity replaced (for them it is not byte for byte). Every WADO request
that opens a study's images is audited once ("dicomweb_retrieve").

Series: the portal keeps no SeriesInstanceUID column. A DICOM image's series is the one in its
stored original's header (read once, without pixels, and cached); an image file's series is a
stable UID derived from the study and the image's laterality and view, and its SOP Instance UID
is the one ingest generated.
"""

from screening.exchange.web.common import series_uid
from screening.exchange.web.urls import urlpatterns

__all__ = ["series_uid", "urlpatterns"]
