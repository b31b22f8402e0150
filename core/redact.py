"""Secrets never reach a log: a logging filter that masks every secret value the settings hold.

Defence in depth behind "don't log secrets": it catches a DSN or a key that ends up in an exception
message, a library's debug line or a careless f-string. Installed on the root handlers by every
worker (argus.cli._logging), so records from every logger pass through it.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from core.settings import Settings

MASK = "***"
_DSN_PASSWORD = re.compile(r"password\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S+))")


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value in ``settings`` (longest first, so overlapping values mask completely)."""
    found: list[str] = [settings.s3.secret_key, *settings.api_keys]
    dsn = settings.postgres.dsn or ""
    for m in _DSN_PASSWORD.finditer(dsn):
        found.append(m.group(1) or m.group(2))
    if "://" in dsn:
        pw = urlsplit(dsn).password
        if pw:
            found.append(pw)
    # very short values would mask ordinary words; real secrets are longer than this
    return sorted({s for s in found if s and len(s) >= 6}, key=len, reverse=True)


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def _mask(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string: leave it to logging's own handling
            return True
        masked = self._mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._mask(record.exc_text)
        return True


def install_redaction(settings: Settings, logger: logging.Logger | None = None) -> RedactingFilter:
    """Attach the filter to every handler of ``logger`` (root by default)."""
    target = logger or logging.getLogger()
    flt = RedactingFilter(secrets_of(settings))
    for h in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in h.filters):
            h.addFilter(flt)
    return flt
