from screening.accounts.roles import is_admin
from screening.monitoring.selectors import open_alerts


def alerts(request):
    """Admins see a banner while monitoring alerts wait for acknowledgement (one count query per page)."""
    user = getattr(request, "user", None)
    if not is_admin(user):
        return {}
    return {"monitoring_open_alerts": open_alerts().count()}
