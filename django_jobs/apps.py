from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class DjangoJobsConfig(AppConfig):
    name = "django_jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: apps.py is imported before the models are ready.
        from . import checks, conf  # noqa: F401  (registers checks and the settings receiver)
        from .plugins import connect_builtin_plugins
        from .pro import register_builtin_features

        register_builtin_features()
        connect_builtin_plugins()
        # Every app's workers module, so that aliases resolve and the checks see every worker
        # (as the admin does with admin.py).
        autodiscover_modules("workers")
