"""The periodic tasks in django-celery-beat's tables, so admins can edit them in the admin.

nightly-retrain: screening.tasks.retrain at 02:00 local time (settings.TIME_ZONE);
it starts a run only when there are labels no successful run has trained on.
sweep-stuck-predictions: every 60 s, re-queues what a dead inference worker left.
Existing rows (edited by an admin) are left as they are.
"""

import json

from django.conf import settings
from django.db import migrations


def create_schedule(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    if not PeriodicTask.objects.filter(name="nightly-retrain").exists():
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute="0",
            hour="2",
            day_of_week="*",
            day_of_month="*",
            month_of_year="*",
            timezone=settings.TIME_ZONE,
        )
        PeriodicTask.objects.create(
            name="nightly-retrain",
            task="screening.tasks.retrain",
            crontab=crontab,
            kwargs=json.dumps({"trigger": "schedule"}),
            description="Train a candidate on confirmed labels and promote it if it is not worse (issue 7).",
        )
    if not PeriodicTask.objects.filter(name="sweep-stuck-predictions").exists():
        every_minute, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
        PeriodicTask.objects.create(
            name="sweep-stuck-predictions",
            task="screening.tasks.sweep_stuck_predictions",
            interval=every_minute,
            description="Re-queue predictions a dead worker or a down broker left behind.",
        )


def remove_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=["nightly-retrain", "sweep-stuck-predictions"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("screening", "0004_patient_split"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
