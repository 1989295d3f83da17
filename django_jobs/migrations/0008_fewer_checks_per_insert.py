"""A plain job pays nothing for what it does not use (issue 21): ``attempt``,
``max_attempts``, ``priority`` and ``unique_states`` become plain smallints. The table's named
check constraints already bound the first three; each positive-integer field added a second
check of its own that every insert evaluated (bench/README.md, "Where an enqueue's time
goes"). ``unique_states`` is a bit mask only django_jobs writes.

On PostgreSQL this drops four CHECK constraints (no rewrite: the type stays smallint); SQLite
rebuilds the table, as it does for any altered column.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_jobs', '0007_queue_commands'),
    ]

    operations = [
        migrations.AlterField(
            model_name='job',
            name='attempt',
            field=models.SmallIntegerField(default=0),
        ),
        migrations.AlterField(
            model_name='job',
            name='max_attempts',
            field=models.SmallIntegerField(default=20),
        ),
        migrations.AlterField(
            model_name='job',
            name='priority',
            field=models.SmallIntegerField(default=0, help_text='0 is the highest.'),
        ),
        migrations.AlterField(
            model_name='job',
            name='unique_states',
            field=models.SmallIntegerField(default=0, editable=False),
        ),
    ]
