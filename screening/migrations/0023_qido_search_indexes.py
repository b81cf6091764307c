"""Indexes for QIDO-RS study search at scale (issue 23; bench/api.py, 100,000 studies).

QIDO matches PatientID, PatientName and AccessionNumber with wildcards and, with fuzzymatching, case-insensitively
(screening/dicom/web/qido.py: `~` / `~*` regular expressions). A B-tree cannot serve those: each such search read
every patient (250 ms at 100k). Trigram GIN indexes (pg_trgm, a trusted extension a database owner may create)
serve regular expressions; a B-tree serves the exact AccessionNumber.

PostgreSQL only: embedded SQLite (one site, small) has neither GIN nor pg_trgm, and searches its few rows as
before. Where pg_trgm cannot be created (a server without the contrib package), the migration says so and the
searches work without the trigram indexes, slower.
"""

from django.db import migrations, transaction

TRIGRAM = [
    ("screening_patient_name_trgm", "screening_patient", "name"),
    ("screening_patient_patient_id_trgm", "screening_patient", "patient_id"),
    ("screening_study_accession_trgm", "screening_study", "accession_number"),
]
BTREE = [("screening_study_accession_number", "screening_study", "accession_number")]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name, table, column in BTREE:
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({column})")
        try:
            with transaction.atomic(using=schema_editor.connection.alias):
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except Exception as exc:  # noqa: BLE001 - no contrib package or no right to create it: searches still work
            print(f"\n  pg_trgm is not available ({type(exc).__name__}): QIDO wildcard searches scan their table")
            return
        for name, table, column in TRIGRAM:
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin ({column} gin_trgm_ops)")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name, _table, _column in TRIGRAM + BTREE:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("screening", "0022_merge_20261206_1740")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
