from django.db import migrations, models


class Migration(migrations.Migration):
    """Use cases that existed keep the suggestion pre-picked, as their reviewers know them;
    new use cases start without it."""

    dependencies = [
        ("deployments", "0005_four_eyes_change_requests"),
    ]

    operations = [
        migrations.AddField(
            model_name="usecase",
            name="suggestion_preselected",
            field=models.BooleanField(default=True),
        ),
        migrations.AlterField(
            model_name="usecase",
            name="suggestion_preselected",
            field=models.BooleanField(default=False),
        ),
    ]
