"""Normal goes with BI-RADS 1 or 2, abnormal with 0, 3, 4, 5 or 6, in the database too.

Reviews are append-only, so rows written before this rule cannot be corrected in
place: PostgreSQL adds the constraint NOT VALID (enforced for every new row, old
rows left as they were; a correction is a new version). SQLite rebuilds the table
to add a constraint, which drops its triggers: the append-only trigger is put back.
"""

from django.db import migrations, models
from django.db.models import Q

CONSTRAINT = models.CheckConstraint(
    condition=Q(decision="normal", birads__in=[1, 2]) | Q(decision="abnormal", birads__in=[0, 3, 4, 5, 6]),
    name="review_decision_matches_birads",
)


def add(apps, schema_editor):
    Review = apps.get_model("screening", "Review")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "ALTER TABLE screening_review ADD CONSTRAINT review_decision_matches_birads CHECK ("
            "(decision = 'normal' AND birads IN (1, 2)) OR (decision = 'abnormal' AND birads IN (0, 3, 4, 5, 6))"
            ") NOT VALID"
        )
        return
    # SQLite rebuilds the table from the model's constraints: this historical model predates the rule.
    Review._meta.constraints = [*Review._meta.constraints, CONSTRAINT]
    schema_editor.add_constraint(Review, CONSTRAINT)
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(
            "CREATE TRIGGER IF NOT EXISTS screening_review_append_only BEFORE UPDATE ON screening_review "
            "BEGIN SELECT RAISE(ABORT, 'screening_review is append-only'); END;"
        )


def remove(apps, schema_editor):
    Review = apps.get_model("screening", "Review")
    schema_editor.remove_constraint(Review, CONSTRAINT)


class Migration(migrations.Migration):
    dependencies = [("screening", "0008_baseline_champion")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddConstraint(model_name="review", constraint=CONSTRAINT)],
            database_operations=[migrations.RunPython(add, remove)],
        )
    ]
