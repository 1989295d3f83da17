# Chains (django_jobs.pro.chain): the indexes that find a chain's first waiting job and its
# active job, and a backstop that no two jobs of one chain ever run at once.

import django.db.models.fields.json
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_jobs', '0003_job_permissions'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='job',
            index=models.Index(django.db.models.fields.json.KeyTextTransform('chain_id', 'meta'), models.F('id'), condition=models.Q(('meta__has_key', 'chain_id'), ('state', 'suspended')), name='django_jobs_chain_waiting'),
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(django.db.models.fields.json.KeyTextTransform('chain_id', 'meta'), condition=models.Q(('meta__has_key', 'chain_id'), ('state__in', ['available', 'scheduled', 'executing', 'retryable'])), name='django_jobs_chain_active'),
        ),
        migrations.AddConstraint(
            model_name='job',
            constraint=models.UniqueConstraint(django.db.models.fields.json.KeyTextTransform('chain_id', 'meta'), condition=models.Q(('meta__has_key', 'chain_id'), ('state', 'executing')), name='django_jobs_chain_running'),
        ),
    ]
