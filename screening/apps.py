import logging
import warnings

from django.apps import AppConfig


class ScreeningConfig(AppConfig):
    name = "screening"
    verbose_name = "Breast screening"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from screening.accounts.roles import sync_admin_group_permissions

        quiet_file_parsers()
        # Every app's post_migrate: the permissions of apps migrated after this one exist by then.
        post_migrate.connect(sync_admin_group_permissions, dispatch_uid="screening-admin-group-permissions")


def quiet_file_parsers() -> None:
    """Keep what uploaded files contain out of the logs.

    pydicom's warnings and log records quote the values they complain about, and in a
    damaged header those values are raw bytes that can hold a patient's name, ID, birth
    date or accession number (a corrupt file meta length once printed the whole header,
    twice: once as a log record, once as a warning). The portal reports every problem
    with a file in its own words (PortalError), so pydicom is told not to validate values
    on reading and says nothing at all. Pillow's debug records list TIFF tags and their
    values; its decompression-bomb warning is redundant with ingest's own pixel check.
    """
    import pydicom
    from PIL import Image

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    logging.getLogger("pydicom").setLevel(logging.CRITICAL + 1)
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    logging.getLogger("PIL").setLevel(logging.INFO)
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
