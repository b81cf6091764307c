"""The DICOM receiver's answers, seen by dcmtk's storescu: C-STORE answered as soon as the instance is
stored also in embedded mode (render and prediction after the answer), and an Error Comment with every
failure status."""

from __future__ import annotations

import re
import threading

import pytest

from screening import dispatch
from screening.exchange import receiver
from screening.models import Image
from tests.dicom_factory import mg_dataset
from tests.eager import tasks_in_process
from tests.portal.test_dicom_receiver import STORESCU, damaged, statuses, storescu, write

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not STORESCU, reason="dcmtk (storescu) is not installed"),
]


@pytest.fixture
def port(settings):
    settings.PORTAL_DICOM_ALLOWED_AES = [("MODALITY1", "127.0.0.1")]
    server = receiver.start(port=0, ae_title="SCREENING", host="127.0.0.1", block=False)
    yield server.server_address[1]
    server.shutdown()


def answers(log: str) -> list[tuple[str, str]]:
    """(DIMSE status, Error Comment) of each C-STORE response in storescu's debug log ("" without one)."""
    found = []
    for response in log.split("Message Type                  : C-STORE RSP")[1:]:
        response = response.split("Releasing Association")[0].split("Sending Store Request")[0]
        status = re.search(r"DIMSE Status\s*:\s*(0x[0-9a-f]{4})", response).group(1)
        comment = re.search(r"\(0000,0902\) LO \[([^\]]*)\]", response)
        found.append((status, comment.group(1) if comment else ""))
    return found


def test_embedded_mode_answers_c_store_before_the_image_is_rendered(port, tmp_path, monkeypatch):
    from screening.intake.services import renditions

    release = threading.Event()
    released_before_render: list[bool] = []
    real_render = renditions.render_image

    def held_render(image_id):
        # Under the old code the render ran inside the C-STORE handler, before the answer: never released.
        released_before_render.append(release.wait(60))
        return real_render(image_id)

    monkeypatch.setattr(renditions, "render_image", held_render)
    with tasks_in_process("screening.tasks.render_image") as runs:
        log = storescu(port, write(tmp_path, "a.dcm", mg_dataset()))
        assert statuses(log) == ["Success"], log
        image = Image.objects.get()
        release.set()  # the answer is in: now the render may go on
        dispatch.wait_for_background_tasks()
    assert released_before_render == [True] and runs[image.pk] == 1
    image.refresh_from_db()
    assert image.rendition


def test_every_failure_status_carries_an_error_comment(port, tmp_path, media_root):
    ct_in_mg = mg_dataset(modality="CT")  # an MG SOP class whose dataset says CT
    log = storescu(port, damaged(tmp_path), write(tmp_path, "ct.dcm", ct_in_mg), options=["-d"])
    found = answers(log)
    assert [status for status, _ in found] == ["0xc000", "0xa900"], log
    assert found[0][1].startswith("the pixel data is truncated")
    assert found[1][1] == "CT is not a mammography modality (expected MG)"
    assert "PAT-0001" not in "".join(comment for _, comment in found)  # no patient data in an answer


def test_a_long_reason_is_cut_to_the_64_characters_an_error_comment_holds():
    status = receiver.answer(0xC000, "x" * 100)
    assert status.Status == 0xC000 and len(status.ErrorComment) == 64 and status.ErrorComment.endswith("...")
