"""Every study, unread first, by score or newest first (the study list, the worklist's "all" view): two
expression indexes matching `selectors.worklist_for`'s ORDER BY, so PostgreSQL reads a page from the index
instead of sorting every study. PostgreSQL only: SQLite's index expressions take no NULLS LAST, and the
embedded database is small. The expressions are those of `models.unread_rank()` and WORKLIST_ORDERINGS."""

from django.db import migrations

UNREAD_RANK = "(CASE WHEN status IN ('new', 'predicted', 'in_review') THEN 0 ELSE 1 END)"
INDEXES = {
    "all_by_score": f"{UNREAD_RANK}, (COALESCE(exam_score, -1.0)) DESC, id DESC",
    "all_by_date": f"{UNREAD_RANK}, study_date DESC NULLS LAST, id DESC",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name, columns in INDEXES.items():
            schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON screening_study ({columns})")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name in INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("screening", "0015_sites")]

    operations = [migrations.RunPython(create, drop)]
