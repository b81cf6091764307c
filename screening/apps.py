from django.apps import AppConfig


class ScreeningConfig(AppConfig):
    name = "screening"
    verbose_name = "Breast screening"
    default_auto_field = "django.db.models.BigAutoField"
