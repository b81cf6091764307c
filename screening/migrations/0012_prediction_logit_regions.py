from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("screening", "0011_dicom_export"),
    ]

    operations = [
        migrations.AddField(
            model_name="prediction",
            name="logit",
            field=models.FloatField(
                blank=True,
                help_text="The model's uncalibrated image logit: the breast and exam scores are computed from the "
                "logits of a study's images by the same version's exam model (ml.exam), as in its evaluation.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="prediction",
            name="regions",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text="Top suspicious regions: [{x, y, width, height, probability}] in original pixel coordinates.",
            ),
        ),
    ]
