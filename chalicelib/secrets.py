"""Read a secret from Secrets Manager without its value reaching any log.

botocore logs every response body at DEBUG (``botocore.parsers``), which for
``GetSecretValue`` is the secret itself. While a secret is read, a filter on botocore's
wire loggers drops their records for this thread only; every other call logs as usual.
"""

from __future__ import annotations

import contextvars
import logging

from chalicelib import aws

_WIRE_LOGGERS = ("botocore.parsers", "botocore.endpoint", "botocore.retryhandler", "urllib3.connectionpool")
_reading = contextvars.ContextVar("reading_secret", default=False)


class _QuietWhileReading(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _reading.get()


_QUIET = _QuietWhileReading()
for _name in _WIRE_LOGGERS:
    logging.getLogger(_name).addFilter(_QUIET)


def read_secret(secret_id: str) -> str:
    """The ``SecretString`` of ``secret_id``."""
    token = _reading.set(True)
    try:
        return str(aws.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"])
    finally:
        _reading.reset(token)
