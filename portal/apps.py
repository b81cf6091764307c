from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The project package as an app, so its signal receivers connect at start-up."""

    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from portal import login_guard  # noqa: F401  (connects its receiver)
        from portal.logs import install

        install()  # request lines in access logs without query values (QIDO searches by patient name and ID)
