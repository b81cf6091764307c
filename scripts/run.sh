#!/usr/bin/env bash
# Install and run the portal on embedded defaults: SQLite and media under ./var,
# tasks in-process, demo accounts printed, synthetic demonstration cases on a fresh
# install, DEBUG off. PORT (default 8000) and HOST (default 127.0.0.1) choose where it
# listens; DICOM_PORT (default 11112) the DICOM receiver's port. README "Two commands"
# lists every variable it reads.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
# The address printed below must be one Django answers (DEBUG is off, so hosts are checked).
export DJANGO_ALLOWED_HOSTS=${DJANGO_ALLOWED_HOSTS:-localhost,127.0.0.1,[::1],$HOST}
# glibc malloc tuned for PyTorch on the CPU, as docker-compose.yml does for the workers: embedded mode predicts
# in the web process, and without it every layer's large buffers are fresh mmaps (511 vs 242 ms an image).
export MALLOC_MMAP_MAX_=${MALLOC_MMAP_MAX_:-0}
export MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-100000000000}
source scripts/venv.sh requirements.txt
scripts/build_viewer.sh   # the case viewer's bundle (npm ci + Vite) when missing or stale
scripts/build_ohif.sh     # the prebuilt OHIF viewer (@ohif/app, pinned) served at /ohif/, when missing
echo "==> Preparing the database (./var/portal.sqlite3)"
python manage.py migrate --noinput
echo "==> Collecting static files into ./var/static"
python manage.py collectstatic --noinput
echo "==> Registering the shipped model"
python manage.py register_model   # prints the champion (migrate registered the shipped baseline on a fresh database)
echo "==> Demo accounts and, on a fresh install, synthetic demonstration cases"
python manage.py setup_demo   # new passwords each start; 4 synthetic cases only while the portal holds no study
# The DICOM receiver in the background, for storescu/echoscu from this machine (their default AE titles).
DICOM_PORT=${DICOM_PORT:-11112}
export PORTAL_DICOM_ALLOWED_AES=${PORTAL_DICOM_ALLOWED_AES:-STORESCU@127.0.0.1,ECHOSCU@127.0.0.1}
python manage.py dicom_receiver --host 127.0.0.1 --port "$DICOM_PORT" --ae-title SCREENING &
DICOM_PID=$!
echo "DICOM: AE title SCREENING, port ${DICOM_PORT} (storescu -aec SCREENING 127.0.0.1 ${DICOM_PORT} file.dcm)"
# No beat in embedded mode: this sweeper recovers the predictions a killed server left running (before the web
# server starts, so none of its own), then re-queues stuck work and releases expired case locks every minute.
python manage.py sweep --recover --every 60 &
SWEEP_PID=$!
echo "Portal: http://${HOST}:${PORT}/  (API docs at /api/docs/)"
python manage.py runserver --noreload "${HOST}:${PORT}" &
WEB_PID=$!
# Ctrl-C, a kill of this script or the web server ending stops the receiver and the sweeper too.
trap 'kill "$DICOM_PID" "$SWEEP_PID" "$WEB_PID" 2>/dev/null || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
wait "$WEB_PID"
