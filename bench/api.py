"""API latency at scale: seed PostgreSQL with 100k studies / 400k images / predictions / reviews, then time
every list endpoint (and the study detail) and the QIDO-RS study searches (PatientID, PatientName wildcard,
StudyDate range, limit/offset) under 1 and 8 concurrent clients on loopback. The image and
prediction lists are keyset (cursor) paginated: besides their first page, a page reached through `next`
cursors is timed (what a client walking the list gets), and the deepest page of the former page-number
answer (`?page=`, still accepted for the newest 10,000 rows).

    python -m bench.api [--studies 100000] [--requests 200] [--database-url postgres://postgres@localhost:5432/bench_api]

Seeding uses PostgreSQL COPY (a minute or two). Queries per request are counted in-process
with Django's test client on the same database. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._server import demo_token, manage, scratch_env, start_gunicorn  # noqa: E402

ENDPOINTS = {
    "worklist": "/api/v1/worklist/",
    "study list": "/api/v1/studies/",
    "study detail": "/api/v1/studies/{study}/",
    "image list": "/api/v1/images/",
    "image list, laterality=L": "/api/v1/images/?laterality=L",
    "image list, status=predicted": "/api/v1/images/?status=predicted",
    "image list, 20th cursor page": "cursor:/api/v1/images/",
    "image list, ?page=200 (former page numbers, deepest)": "/api/v1/images/?page=200",
    "prediction list": "/api/v1/predictions/",
    "prediction list, status=done": "/api/v1/predictions/?status=done",
    "prediction list, 20th cursor page": "cursor:/api/v1/predictions/",
    "patient list": "/api/v1/patients/",
    "model list": "/api/v1/models/",
    "training-run list": "/api/v1/training-runs/",
    "reading worklist": "/api/v1/reading/worklist/",
    "arbitration worklist": "/api/v1/reading/arbitration/",
    "outcome list": "/api/v1/outcomes/",
    "performance (figures, not a list)": "/api/v1/performance/",
    # QIDO-RS study search (issue 23), as OHIF's study list and a PACS ask it.
    "QIDO studies, first page (OHIF's list: limit 101)": "/dicomweb/studies?limit=101&offset=0&includefield=all",
    "QIDO PatientID": "/dicomweb/studies?PatientID=BENCH0050001",
    "QIDO PatientID wildcard": "/dicomweb/studies?PatientID=BENCH005000*",
    "QIDO PatientName wildcard": "/dicomweb/studies?PatientName=Family0012*",
    "QIDO PatientName fuzzy": "/dicomweb/studies?PatientName=family00123&fuzzymatching=true",
    "QIDO AccessionNumber": "/dicomweb/studies?AccessionNumber=ACC0050001",
    "QIDO StudyDate range": "/dicomweb/studies?StudyDate=20250101-20250131&limit=25",
    "QIDO StudyDate range, offset 500": "/dicomweb/studies?StudyDate=20250101-20250131&limit=25&offset=500",
    "QIDO limit 25, offset 5000": "/dicomweb/studies?limit=25&offset=5000",
}
CURSOR_PAGES = 20
ADMIN_ONLY = {
    "model list",
    "training-run list",
    "arbitration worklist",
    "outcome list",
    "performance (figures, not a list)",
}  # asked as the admin; everything else as the radiologist


# What a NOT NULL column without a database default gets when the seed does not name it: columns added by
# later migrations keep the seed working (a bench that breaks on every new field measures nothing).
TYPE_DEFAULTS = {
    "text": "",
    "character varying": "",
    "boolean": False,
    "integer": 0,
    "bigint": 0,
    "smallint": 0,
    "double precision": 0.0,
    "real": 0.0,
    "jsonb": "{}",
    "json": "{}",
}


class Copier:
    """COPY rows into `screening_<table>` naming `columns`; other NOT NULL columns get TYPE_DEFAULTS."""

    def __init__(self, cur, table: str, columns: str):
        cur.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s"
            " AND is_nullable = 'NO' AND column_default IS NULL AND is_identity = 'NO'",
            (f"screening_{table}",),
        )
        named = {c.strip() for c in columns.split(",")}
        extra = [(name, kind) for name, kind in cur.fetchall() if name not in named]
        unknown = [f"{name} ({kind})" for name, kind in extra if kind not in TYPE_DEFAULTS]
        if unknown:
            raise SystemExit(f"bench/api.py: screening_{table} has NOT NULL columns the seed cannot fill: {unknown}")
        self.extra = tuple(TYPE_DEFAULTS[kind] for _, kind in extra)
        names = ", ".join([columns, *(name for name, _ in extra)])
        self.context = cur.copy(f"COPY screening_{table} ({names}) FROM STDIN")

    def __enter__(self):
        self.copy = self.context.__enter__()
        return self

    def write_row(self, row) -> None:
        self.copy.write_row((*row, *self.extra))

    def __exit__(self, *exc):
        return self.context.__exit__(*exc)


def seed(database_url: str, studies: int) -> None:
    """Bulk rows with COPY: patients (one per study), 4 images, 4 predictions each, a review on every 4th study,
    a discordant double read awaiting arbitration on every 100th and an outcome on every 40th."""
    import psycopg

    rng = np.random.default_rng(0)
    today = date(2026, 11, 1)
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM auth_user WHERE username = 'radiologist'")
        radiologist = cur.fetchone()[0]
        cur.execute("SELECT id FROM auth_user WHERE username = 'admin'")
        admin = cur.fetchone()[0]
        # migrate registered the shipped baseline as champion: the bench's version takes over.
        cur.execute("UPDATE screening_modelversion SET status = 'retired' WHERE status = 'champion'")
        cur.execute(
            "INSERT INTO screening_modelversion"
            " (name, checkpoint, status, threshold, metrics, note, servable, load_error, created)"
            " VALUES ('bench', 'ml/weights/baseline.pt', 'champion', 0.5, '{}', '', true, '', now()) RETURNING id"
        )
        model = cur.fetchone()[0]
        scores = rng.random((studies, 4))
        now = "2026-11-01 00:00:00+00"
        with Copier(cur, "patient", "id, patient_id, name, sex, split, created") as copy:
            for i in range(1, studies + 1):
                # Names as stored (components joined by spaces): 5 women per family name, for PN searches.
                copy.write_row((i, f"BENCH{i:07d}", f"Family{i % 20000:05d} Given{i % 97}", "F", "", now))
        with Copier(
            cur,
            "study",
            "id, study_uid, uid_generated, accession_number, study_date, patient_id, status, exam_score, "
            "exam_flag, score_left, score_right, exam_model_id, site, source_kind, created, updated",
        ) as copy:
            for i in range(1, studies + 1):
                left, right = scores[i - 1, :2].mean(), scores[i - 1, 2:].mean()
                exam = max(left, right)
                status = "reported" if i % 4 == 0 else "predicted"
                copy.write_row(
                    (
                        i,
                        f"2.25.{i}",
                        True,
                        f"ACC{i:07d}",
                        today - timedelta(days=int(i % 700)),
                        i,
                        status,
                        exam,
                        exam >= 0.5,
                        left,
                        right,
                        model,
                        "default",
                        "",
                        now,
                        now,
                    )
                )
        with Copier(
            cur,
            "image",
            "id, sop_uid, study_id, laterality, view, file_format, original, rendition, rows, columns, "
            "bits_stored, photometric, manufacturer, presentation_intent, sha256, size_bytes, status, "
            "error, render_attempts, created",
        ) as copy:
            for i in range(1, studies + 1):
                for k, (side, view) in enumerate((("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))):
                    n = (i - 1) * 4 + k + 1
                    copy.write_row(
                        (
                            n,
                            f"2.25.{i}.{k}",
                            i,
                            side,
                            view,
                            "dicom",
                            f"originals/{n}.dcm",
                            f"renditions/{n}.png",
                            4096,
                            3328,
                            12,
                            "MONOCHROME2",
                            "Bench",
                            "FOR PRESENTATION",
                            f"{n:064x}",
                            27_000_000,
                            "predicted",
                            "",
                            1,
                            now,
                        )
                    )
        with Copier(
            cur,
            "prediction",
            "id, image_id, model_version_id, status, probability, heatmap, error, attempts, preprocess_ms, "
            "inference_ms, regions, source_kind, created, updated",
        ) as copy:
            for n in range(1, studies * 4 + 1):
                copy.write_row(
                    (
                        n,
                        n,
                        model,
                        "done",
                        float(scores.flat[n - 1]),
                        f"heatmaps/{n}.png",
                        "",
                        1,
                        50.0,
                        200.0,
                        "[]",
                        "",
                        now,
                        now,
                    )
                )
        with Copier(
            cur,
            "review",
            "id, study_id, version, radiologist_id, decision, birads, density, note, agrees_with_ai, "
            "is_final, slot, created",
        ) as copy:
            r = 0
            for r, i in enumerate(range(4, studies + 1, 4), start=1):
                copy.write_row((r, i, 1, radiologist, "normal", 1, "B", "", True, True, "single", now))
            for i in range(2, studies + 1, 100):  # first and second read disagree: arbitration
                copy.write_row((r + 1, i, 1, radiologist, "normal", 1, "B", "", None, False, "first", now))
                copy.write_row((r + 2, i, 2, admin, "abnormal", 4, "B", "", None, False, "second", now))
                r += 2
        with Copier(
            cur, "outcome", "study_id, laterality, result, cancer_type, diagnosed_on, source, recorded_by_id, created"
        ) as copy:
            for k, i in enumerate(range(4, studies + 1, 40)):
                malignant = k % 5 == 0
                copy.write_row(
                    (
                        i,
                        "L",
                        "malignant" if malignant else "no_cancer",
                        "invasive" if malignant else "",
                        None,
                        "csv",
                        admin,
                        now,
                    )
                )
        # The read audit's table as a busy site has it: ten read events per study (one insert per request).
        with Copier(cur, "auditevent", "user_id, username, action, study_id, detail, at") as copy:
            for i in range(1, studies * AUDIT_READS_PER_STUDY + 1):
                study = (i - 1) % studies + 1
                detail = json.dumps({"route": "api:study-detail", "args": {"pk": str(study)}})
                copy.write_row((radiologist, "radiologist", "read", study, detail, now))
        for table in ("patient", "study", "image", "prediction", "review", "outcome", "auditevent"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('screening_{table}', 'id'),"
                f" (SELECT max(id) FROM screening_{table}))"
            )
        cur.execute("ANALYZE")


def follow_cursor(port: int, token: str, path: str, pages: int) -> str:
    """The path of the page reached by following `next` from `path` pages - 1 times."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(pages - 1):
        conn.request("GET", path, headers={"Authorization": f"Token {token}"})
        path = json.loads(conn.getresponse().read())["next"].split("127.0.0.1", 1)[-1].split("localhost", 1)[-1]
        path = path[path.index("/api/") :]
    return path


def run_clients(port: int, token: str, path: str, clients: int, requests: int) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def client(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        for _ in range(count):
            t0 = time.perf_counter()
            conn.request("GET", path, headers={"Authorization": f"Token {token}"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"{path}: HTTP {response.status}")
            mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(max(1, requests // clients),)) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


AUDIT_READS_PER_STUDY = 10

# The read audit's own cost: the one insert each audited GET adds, timed in-process on the seeded table.
AUDIT_COST = """
import json, time
from django.contrib.auth import get_user_model
from django.test import RequestFactory
from screening.audit.services import record_read
user = get_user_model().objects.get(username="radiologist")
times = []
for n in range(300):
    request = RequestFactory().get("/api/v1/studies/", {"ordering": "-study_date"})
    request.user = user
    t0 = time.perf_counter()
    record_read(request=request, route="api:study-detail", arguments={"pk": str(n + 1)})
    times.append((time.perf_counter() - t0) * 1000)
times.sort()
print(json.dumps({"p50": times[len(times) // 2], "p95": times[int(len(times) * 0.95)]}))
"""

QUERY_COUNT = """
import json
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
out = {}
clients = {
    who: Client(HTTP_AUTHORIZATION="Token " + Token.objects.get(user__username=who).key, HTTP_HOST="localhost")
    for who in ("radiologist", "admin")
}
for name, path in json.loads(PATHS).items():
    client = clients["admin" if name in ADMIN else "radiologist"]
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(path).status_code == 200, (name, client.get(path).content[:200])
    out[name] = len(ctx)
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="requests per endpoint and concurrency level")
    parser.add_argument("--database-url", default="postgres://postgres@localhost:5432/bench_api")
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--reuse", action="store_true", help="time a database seeded by an earlier run")
    parser.add_argument("--only", default="", help="time only the endpoints whose name contains this text")
    args = parser.parse_args()

    base, db_name = args.database_url.rsplit("/", 1)
    seeded = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        env = scratch_env(Path(tmp), DATABASE_URL=args.database_url)
        env.pop("REDIS_URL", None)
        if not args.reuse:
            subprocess.run(["psql", f"{base}/postgres", "-qc", f"DROP DATABASE IF EXISTS {db_name}"], check=True)
            subprocess.run(["psql", f"{base}/postgres", "-qc", f"CREATE DATABASE {db_name}"], check=True)
            manage(env, "migrate", "--noinput")
            demo_token(env)
            t0 = time.perf_counter()
            seed(args.database_url, args.studies)
            seeded = time.perf_counter() - t0
        tokens = json.loads(  # the last line: anything before it is log output
            manage(
                env,
                "shell",
                "-c",
                "import json;from rest_framework.authtoken.models import Token;"
                "print(json.dumps({t.user.username: t.key for t in Token.objects.select_related('user')}))",
            )
            .strip()
            .splitlines()[-1]
        )
        paths = {name: p.format(study=args.studies // 2 + 1) for name, p in ENDPOINTS.items() if args.only in name}
        counted = {name: p.removeprefix("cursor:") for name, p in paths.items()}
        queries = json.loads(
            manage(
                env,
                "shell",
                "-c",
                f"PATHS={json.dumps(json.dumps(counted))}\nADMIN={sorted(ADMIN_ONLY)!r}\n" + QUERY_COUNT,
            )
            .strip()
            .splitlines()[-1]
        )
        audit = json.loads(manage(env, "shell", "-c", AUDIT_COST).strip().splitlines()[-1])
        server = start_gunicorn(env, args.port, workers=args.workers)
        rows = []
        try:
            for name, path in paths.items():
                token = tokens["admin" if name in ADMIN_ONLY else "radiologist"]
                if path.startswith("cursor:"):
                    path = follow_cursor(args.port, token, path.removeprefix("cursor:"), CURSOR_PAGES)
                run_clients(args.port, token, path, 1, 10)  # warm-up
                for clients in (1, 8):
                    lat = run_clients(args.port, token, path, clients, args.requests)
                    rows.append((name, clients, statistics.median(lat), float(np.percentile(lat, 95)), queries[name]))
        finally:
            server.terminate()
            server.wait()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.split("load average:")[-1].strip()
    seeding = f"in {seeded:.0f} s" if seeded else "(seeded by an earlier run)"
    print(
        f"{args.studies} studies, {args.studies * 4} images and predictions, {args.studies // 4} reviews "
        f"{seeding}; gunicorn {args.workers} workers; load average after: {load}"
    )
    print("| endpoint | concurrent clients | p50 ms | p95 ms | queries per request |")
    print("|---|---|---|---|---|")
    for name, clients, p50, p95, q in rows:
        print(f"| {name} | {clients} | {p50:.0f} | {p95:.0f} | {q} |")
    print(
        f"| read audit: the insert each audited GET adds ({args.studies * AUDIT_READS_PER_STUDY} events stored)"
        f" | 1 | {audit['p50']:.1f} | {audit['p95']:.1f} | 1 |"
    )


if __name__ == "__main__":
    main()
