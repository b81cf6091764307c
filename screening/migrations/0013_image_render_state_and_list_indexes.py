from django.db import migrations, models


class Migration(migrations.Migration):
    """Renditions are made by a worker after ingest (issue 14): an image may have none yet, or have
    failed with its reason; and the keyset-paginated image and prediction lists read from indexes."""

    dependencies = [
        ("screening", "0012_prediction_logit_regions"),
    ]

    operations = [
        migrations.AddField(
            model_name="image",
            name="error",
            field=models.TextField(
                blank=True, help_text="Why the image failed: pixel data the render worker found it cannot decode."
            ),
        ),
        migrations.AddField(
            model_name="image",
            name="render_attempts",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="image",
            name="render_started",
            field=models.DateTimeField(
                blank=True,
                help_text="When a render worker last took the image (the sweeper resends stale ones).",
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="image",
            name="rendition",
            field=models.FileField(
                blank=True,
                help_text="8-bit PNG for the browser, presentation LUTs applied; made by the render worker after "
                "ingest (empty until then).",
                max_length=255,
                upload_to="",
            ),
        ),
        migrations.AddIndex(
            model_name="image",
            index=models.Index(fields=["status", "-id"], name="image_list_by_status"),
        ),
        migrations.AddIndex(
            model_name="image",
            index=models.Index(
                condition=models.Q(("error", ""), ("rendition", "")), fields=["created"], name="image_unrendered"
            ),
        ),
        migrations.AddIndex(
            model_name="prediction",
            index=models.Index(fields=["status", "-id"], name="prediction_list_by_status"),
        ),
        migrations.AddIndex(
            model_name="prediction",
            index=models.Index(fields=["model_version", "-id"], name="prediction_list_by_version"),
        ),
    ]
