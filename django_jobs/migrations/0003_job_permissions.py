# The admin's permissions for job actions and queue control (Job.Meta.permissions).

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("django_jobs", "0002_cron_entries"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="job",
            options={
                "ordering": ["-id"],
                "permissions": [
                    ("retry_job", "Can retry jobs"),
                    ("cancel_job", "Can cancel jobs"),
                    ("run_job", "Can run scheduled jobs now"),
                    ("control_queues", "Can pause, resume and scale queues"),
                ],
            },
        ),
    ]
