"""Access logs without patient data: query strings keep their parameter names, never their values.

QIDO-RS searches by patient name, ID and birth date in the query string (`/dicomweb/studies?PatientName=...`),
and the development server (embedded mode) and gunicorn's access log (when an operator turns it on) write
the request line as it came. Attached to both loggers at start-up (portal.apps), so every request line is
redacted before any handler sees it, whatever the handlers are.
"""

from __future__ import annotations

import logging
import re

ACCESS_LOGGERS = ("django.server", "gunicorn.access")
REDACTED = "[redacted]"
_QUERY = re.compile(r"\?([^ \"]*)")


def redact_query(text: str) -> str:
    """'GET /a?PatientName=X&limit=5 HTTP/1.1' -> 'GET /a?PatientName=[redacted]&limit=[redacted] HTTP/1.1'."""

    def names_only(match: re.Match) -> str:
        names = [part.split("=", 1)[0] for part in match.group(1).split("&") if part]
        return "?" + "&".join(f"{name}={REDACTED}" for name in names)

    return _QUERY.sub(names_only, text)


class RedactQueryStrings(logging.Filter):
    """Rewrites the request line of an access-log record: Django's development server passes it as the first
    argument; gunicorn passes its atoms as one mapping (r: request line, q: query string, f: referer...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, dict):
            for key, value in list(args.items()):
                if isinstance(value, str) and value:
                    args[key] = redact_query("?" + value)[1:] if key == "q" else redact_query(value)
        elif isinstance(args, tuple):
            record.args = tuple(redact_query(a) if isinstance(a, str) else a for a in args)
        return True


def install() -> None:
    for name in ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQueryStrings) for f in logger.filters):
            logger.addFilter(RedactQueryStrings())
