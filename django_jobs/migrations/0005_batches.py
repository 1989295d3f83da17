# Batches (django_jobs.pro.batch): the batch ledger table, the batch a job belongs to as a generated
# column, and the index of a batch's members.

import django.db.models.fields.json
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_jobs', '0004_chains'),
    ]

    operations = [
        # First: the index of 0001 has the name the new table takes (one namespace in SQLite).
        migrations.RemoveIndex(
            model_name='job',
            name='django_jobs_batch',
        ),
        migrations.CreateModel(
            name='Batch',
            fields=[
                ('id', models.CharField(max_length=64, primary_key=True, serialize=False)),
                ('callback_worker', models.CharField(blank=True, help_text='Dotted path of the worker whose handlers run.', max_length=255)),
                ('callback_queue', models.CharField(blank=True, max_length=128)),
                ('callback_args', models.JSONField(blank=True, default=dict)),
                ('callback_meta', models.JSONField(blank=True, default=dict)),
                ('members', models.IntegerField(default=0)),
                ('attempted', models.IntegerField(default=0, help_text='Members whose first attempt ended.')),
                ('completed', models.IntegerField(default=0)),
                ('cancelled', models.IntegerField(default=0)),
                ('discarded', models.IntegerField(default=0)),
                ('retryable', models.IntegerField(default=0)),
                ('fired', models.PositiveSmallIntegerField(default=0, help_text='One bit per handler whose callback was inserted.')),
                ('callbacks', models.JSONField(blank=True, default=dict, help_text='Handler name -> the id of its callback job.')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                'verbose_name_plural': 'batches',
                'db_table': 'django_jobs_batch',
                'ordering': ['-created_at'],
            },
        ),
        migrations.AddField(
            model_name='job',
            name='batch',
            field=models.GeneratedField(db_persist=True, expression=models.Case(models.When(meta__has_key='batch_callback', then=None), default=django.db.models.fields.json.KeyTextTransform('batch_id', 'meta')), output_field=models.CharField(max_length=64, null=True)),
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(condition=models.Q(('batch__isnull', False)), fields=['batch', 'id'], name='django_jobs_batch_members'),
        ),
        migrations.AddIndex(
            model_name='batch',
            index=models.Index(fields=['updated_at'], name='django_jobs_batch_updated'),
        ),
    ]
