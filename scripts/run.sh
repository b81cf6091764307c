#!/usr/bin/env bash
# Install and run the portal on embedded defaults: SQLite and media under ./var,
# tasks in-process, demo accounts printed. PORT (default 8000) and HOST
# (default 127.0.0.1) choose where it listens.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh requirements.txt
python manage.py migrate --noinput
python manage.py setup_demo
python manage.py register_model   # the shipped baseline becomes champion on a fresh database
echo "Portal: http://${HOST:-127.0.0.1}:${PORT:-8000}/  (API docs at /api/docs/)"
exec python manage.py runserver --noreload "${HOST:-127.0.0.1}:${PORT:-8000}"
