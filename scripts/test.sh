#!/usr/bin/env bash
# Install everything and run the whole test suite. Uses PostgreSQL and Redis on
# localhost when they run (starting them if installed but down), SQLite and
# in-process tasks otherwise; DATABASE_URL / REDIS_URL override. Extra
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian tools the tests drive: dicom3tools (dciodvfy: every DICOM object the portal
# makes is checked against its IOD), dcmtk (reference JPEG / JPEG-LS encoders for the
# DICOM corpus; storescu, echoscu), Orthanc (the PACS peer, started by the tests
# on a temporary configuration, never as the system service; orthanc-dicomweb, its DICOMweb plugin, as
# a DICOMweb client of the portal), Chromium and ChromeDriver (browser tests); dicom3tools (dciodvfy
# checks every research export file). Never a browser download.
missing=()
command -v dcmcjpls >/dev/null || missing+=(dcmtk)
command -v dciodvfy >/dev/null || missing+=(dicom3tools)   # dciodvfy: IOD check of the objects the portal makes
command -v Orthanc >/dev/null || [ -x /usr/sbin/Orthanc ] || missing+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing+=(orthanc-dicomweb)
command -v chromium >/dev/null || missing+=(chromium chromium-driver)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
fi

source scripts/venv.sh requirements-dev.txt
scripts/build_viewer.sh   # the case viewer's bundle (npm ci + Vite) when missing or stale
scripts/build_ohif.sh     # the prebuilt OHIF viewer (@ohif/app, pinned) served at /ohif/, when missing

if [ -z "${DATABASE_URL:-}" ] && command -v pg_isready >/dev/null; then
  if ! pg_isready -q -h localhost -p 5432 && command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
  fi
  pg_isready -q -h localhost -p 5432 && export DATABASE_URL="postgres://postgres@localhost:5432/portal"
fi
if [ -z "${REDIS_URL:-}" ] && command -v redis-cli >/dev/null; then
  if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && command -v redis-server >/dev/null; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    sleep 1
  fi
  redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && export REDIS_URL="redis://127.0.0.1:6379/15"
fi
echo "database: ${DATABASE_URL:-embedded SQLite}; broker: ${REDIS_URL:-none (tasks in-process)}"
exec python -m pytest "$@"
