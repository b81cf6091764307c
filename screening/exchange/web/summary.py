"""What a QIDO-RS study answer takes from a study's images, without reading its images for every search.

A study's row in a study search needs, of its images: the first DICOM original's header facts (StudyTime,
StudyID, StudyDescription, ReferringPhysicianName, PatientName as stored), the images' series and
modalities, and how many there are. `Summary` holds those; `summaries` gives it for a page of studies from
the cache, keyed by a fingerprint the database computes with the page (`with_fingerprint`): the images'
ids, content hashes, formats, sides and views, in the order QIDO lists them. Whatever changes what the
summary says changes the fingerprint (an image arrives, is deleted, refiled to another study, side or
view), so a cached summary is never stale, only unused. A miss reads that study's images once (one query
for all the page's misses) and their header facts (themselves cached by content hash).

No viewer-dependent data is cached: identity, blinding and the SRs are applied per request, as before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.contrib.postgres.aggregates import StringAgg
from django.core.cache import cache
from django.db.models import CharField, F, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import MD5, Cast, Concat

from screening.exchange.web.common import header_facts, modality
from screening.models import Image

# The header facts a study answer shows (the first DICOM image's): the rest of HEADER_KEYWORDS is per image.
STUDY_HEADER = ("StudyTime", "StudyID", "StudyDescription", "ReferringPhysicianName", "PatientName")
IMAGE_ORDER = ("laterality", "view", "id")  # the order QIDO lists a study's images in (common.study_images)
_CACHE_PREFIX = "dicomweb:study-summary:v1:"


@dataclass(frozen=True)
class Summary:
    header: dict[str, str]  # STUDY_HEADER of the first DICOM image in IMAGE_ORDER; {} without one
    series: frozenset[str]  # the images' SeriesInstanceUIDs
    modalities: frozenset[str]  # the images' modalities (MG, OT)
    images: int


EMPTY = Summary({}, frozenset(), frozenset(), 0)


def summarise(images: list[Image], facts: dict[int, dict[str, str]]) -> Summary:
    """The summary of a study's images (in IMAGE_ORDER) with their header_facts."""
    first = next((facts[i.pk] for i in images if i.file_format == Image.Format.DICOM), {})
    return Summary(
        header={k: first[k] for k in STUDY_HEADER} if first else {},
        series=frozenset(facts[i.pk]["SeriesInstanceUID"] for i in images),
        modalities=frozenset(modality(i) for i in images),
        images=len(images),
    )


def fingerprint(images: list[Image]) -> str:
    """What `with_fingerprint` computes in the database, of images loaded in IMAGE_ORDER."""
    text = ",".join(f"{i.pk}:{i.sha256}:{i.file_format}:{i.laterality}:{i.view}" for i in images)
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def with_fingerprint(studies: QuerySet) -> QuerySet:
    """Studies annotated `images_fingerprint`: a hash of what their summary is made of (None: no image).
    A correlated subquery over the image index (study, laterality, view), evaluated for the page's rows."""
    text = [Cast("id", CharField())]
    for field in ("sha256", "file_format", "laterality", "view"):
        text += [Value(":"), F(field)]
    fingerprints = (
        Image.objects.filter(study=OuterRef("pk"))
        .order_by()
        .values("study")
        .annotate(key=MD5(StringAgg(Concat(*text), delimiter=",", order_by=[F(f) for f in IMAGE_ORDER])))
        .values("key")
    )
    return studies.annotate(images_fingerprint=Subquery(fingerprints))


def _key(study_uid: str, images_fingerprint: str) -> str:
    # The study's UID too: an image file's series UID derives from it.
    return f"{_CACHE_PREFIX}{study_uid}:{images_fingerprint}"


def summaries(studies: list) -> dict[int, Summary]:
    """Each study's Summary, by study id; the studies come from `with_fingerprint`."""
    keys = {s.pk: _key(s.study_uid, s.images_fingerprint) for s in studies if s.images_fingerprint}
    cached = cache.get_many(list(keys.values())) if keys else {}
    found = {pk: cached[key] for pk, key in keys.items() if key in cached}
    missing = [pk for pk in keys if pk not in found]
    if missing:
        images: dict[int, list[Image]] = {pk: [] for pk in missing}
        rows = Image.objects.filter(study_id__in=missing).select_related("study").order_by(*IMAGE_ORDER)
        for image in rows:
            images[image.study_id].append(image)
        facts = header_facts([image for members in images.values() for image in members])
        fresh = {pk: summarise(members, facts) for pk, members in images.items()}
        # Cached under the fingerprint of the rows it was built from (an image may have changed since the page's
        # query): a key always describes what it holds.
        cache.set_many(
            {
                _key(members[0].study.study_uid, fingerprint(members)): fresh[pk]
                for pk, members in images.items()
                if members
            },
            None,
        )
        found.update(fresh)
    return {study.pk: found.get(study.pk, EMPTY) for study in studies}
