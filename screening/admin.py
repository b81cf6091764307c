"""The Django admin: a window onto the records, not a second way to change them.

Case records (patients, studies, images, predictions, reviews with findings, audit events)
are read-only here for everyone, superusers included: they change only through the services,
which version what they change and audit it. Each sub-domain registers its own model admins
(`screening/<domain>/admin.py`); Django's autodiscovery imports this module, which imports them.
"""

from screening.accounts import admin as accounts_admin  # noqa: F401 - accounts and API tokens: superusers only
from screening.ai import admin as ai_admin  # noqa: F401
from screening.audit import admin as audit_admin  # noqa: F401
from screening.exchange import admin as exchange_admin  # noqa: F401
from screening.intake import admin as intake_admin  # noqa: F401
from screening.reading import admin as reading_admin  # noqa: F401
from screening.sites import admin as sites_admin  # noqa: F401
