"""Real DICOM peers for the tests and the bench: dcmtk's clients and an Orthanc started on a temporary configuration."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

# dcmtk's clients, not pynetdicom's same-named scripts that the virtualenv puts first on PATH.
STORESCU = shutil.which("storescu", path="/usr/bin:/usr/local/bin")
ECHOSCU = shutil.which("echoscu", path="/usr/bin:/usr/local/bin")
ORTHANC = shutil.which("Orthanc", path="/usr/sbin:/usr/bin:/usr/local/bin")
# Orthanc's DICOMweb plugin (Debian orthanc-dicomweb): a DICOMweb client and server inside Orthanc.
DICOMWEB_PLUGIN = next(
    (p for p in ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",) if Path(p).exists()),
    None,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Orthanc:
    """A running Orthanc: `url` for its REST API, `dicom_port` for its C-STORE SCP, `process` for its PID."""

    def __init__(self, process: subprocess.Popen, url: str, dicom_port: int):
        self.process, self.url, self.dicom_port = process, url, dicom_port

    def get(self, path: str):
        response = requests.get(self.url + path, timeout=60)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, data: bytes | str):
        response = requests.post(self.url + path, data=data, timeout=300)
        response.raise_for_status()
        return response.json()


@contextmanager
def orthanc(
    folder: Path, modalities: dict[str, tuple[str, str, int]] | None = None, extra: dict | None = None
) -> Iterator[Orthanc]:
    """Orthanc with an empty store in `folder`, on free ports, HTTP on localhost only, stopped at the end;
    `extra`: more configuration (plugins and theirs, e.g. DICOMweb_PLUGIN with a "DicomWeb" section)."""
    if ORTHANC is None:
        raise RuntimeError("Orthanc is not installed (Debian package orthanc)")
    http_port, dicom_port = free_port(), free_port()
    storage = folder / "orthanc-db"
    config = {
        "Name": "test-pacs",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "Plugins": [],
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "DicomModalities": {name: list(peer) for name, peer in (modalities or {}).items()},
        **(extra or {}),
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    url = f"http://127.0.0.1:{http_port}"
    with open(folder / "orthanc.log", "ab") as log:
        process = subprocess.Popen([ORTHANC, str(folder / "orthanc.json")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:  # poll until its REST API answers
            if process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {process.returncode}: {(folder / 'orthanc.log').read_text()}")
            try:
                if requests.get(url + "/system", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("Orthanc did not answer within 60 s")
            time.sleep(0.05)
        yield Orthanc(process, url, dicom_port)
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
