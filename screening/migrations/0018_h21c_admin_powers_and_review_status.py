"""Two corrections of stored state (issue 21).

- The admin role no longer manages accounts or API tokens (superusers do: screening/admin_accounts.py).
  `sync_admin_group_permissions` only adds permissions, so the ones granted before are taken back here.
- Opening a case used to move it to 'in review' for good. A study 'in review' without any read goes back
  to 'predicted' (every image predicted or failed) or 'new'; 'in review' now means a read awaits the final.
"""

from django.db import migrations

TAKEN_BACK = {
    "auth": ["add_user", "change_user", "delete_user"],
    "authtoken": ["view_token", "add_token", "change_token", "delete_token"]
    + ["view_tokenproxy", "add_tokenproxy", "change_tokenproxy", "delete_tokenproxy"],
}


def take_back(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.filter(name="admin").first()
    if group is None:
        return
    for app_label, codenames in TAKEN_BACK.items():
        group.permissions.remove(*Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames))


def unstick_unread_studies(apps, schema_editor):
    Study = apps.get_model("screening", "Study")
    Image = apps.get_model("screening", "Image")
    stuck = Study.objects.filter(status="in_review", reviews__isnull=True)
    pending = Image.objects.exclude(status__in=["predicted", "failed"]).values("study_id")
    stuck.filter(images__isnull=False).exclude(pk__in=pending).update(status="predicted")
    Study.objects.filter(status="in_review", reviews__isnull=True).update(status="new")


class Migration(migrations.Migration):
    dependencies = [
        ("screening", "0017_review_second_read_index"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RunPython(take_back, migrations.RunPython.noop),
        migrations.RunPython(unstick_unread_studies, migrations.RunPython.noop),
    ]
