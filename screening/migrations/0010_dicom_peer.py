"""DICOM peers: the calling AEs the DICOM receiver accepts, editable by admins (issue 12)."""

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("screening", "0009_review_decision_matches_birads"),
    ]

    operations = [
        migrations.CreateModel(
            name="DicomPeer",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "ae_title",
                    models.CharField(
                        max_length=16,
                        validators=[
                            django.core.validators.RegexValidator(
                                "^[!-\\[\\]-~]([ -\\[\\]-~]{0,14}[!-\\[\\]-~])?$",
                                "1 to 16 printable ASCII characters, no backslash, no leading or trailing space",
                            )
                        ],
                        verbose_name="AE title",
                    ),
                ),
                (
                    "host",
                    models.GenericIPAddressField(
                        help_text="The address the peer connects from.", verbose_name="IP address"
                    ),
                ),
                ("enabled", models.BooleanField(default=True)),
            ],
            options={
                "verbose_name": "DICOM peer",
                "ordering": ["ae_title", "host"],
                "constraints": [models.UniqueConstraint(fields=("ae_title", "host"), name="dicom_peer_unique")],
            },
        ),
    ]
