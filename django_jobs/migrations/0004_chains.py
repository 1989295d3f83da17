# Chains (django_jobs.pro.chain): the chain id as a generated column, the indexes that find a
# chain's first waiting job, its active job and the job before another, and a backstop that no
# two jobs of one chain ever run at once.

import django.db.models.fields.json
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_jobs', '0003_job_permissions'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='job',
            name='django_jobs_chain',
        ),
        migrations.AddField(
            model_name='job',
            name='chain',
            field=models.GeneratedField(db_persist=True, expression=django.db.models.fields.json.KeyTextTransform('chain_id', 'meta'), output_field=models.CharField(max_length=64, null=True)),
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(condition=models.Q(('chain__isnull', False)), fields=['chain', 'id'], name='django_jobs_chain'),
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(condition=models.Q(('chain__isnull', False), ('state', 'suspended')), fields=['chain', 'id'], name='django_jobs_chain_waiting'),
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(condition=models.Q(('chain__isnull', False), ('state__in', ['available', 'scheduled', 'executing', 'retryable'])), fields=['chain'], name='django_jobs_chain_active'),
        ),
        migrations.AddConstraint(
            model_name='job',
            constraint=models.UniqueConstraint(condition=models.Q(('chain__isnull', False), ('state', 'executing')), fields=('chain',), name='django_jobs_chain_running'),
        ),
    ]
