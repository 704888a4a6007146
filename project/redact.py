"""The one place that hides secrets before anything is stored, shown or logged.

Driver options (a CIFS `o=username=u,password=p`, an NFS or SMB URL with a password in
it), and every text that may repeat them (the engine's "mount error ... data:
username=u,password=p: ...", a helper's output, a traceback) pass through `scrubbed`
or `scrubbed_text` on their way to a job row, a volume or backup page, a manifest, the
audit trail or a log line. The module is pure Python (no Django, no models) so that
every app, the engine adapter and the logging set-up import it without cycles.
"""

from __future__ import annotations

import logging
import re

REDACTED = "***"

# Substrings of an option or parameter name whose value is a secret. Matching on a part
# of the name (db_password, aws_secret_access_key, api_token) errs on masking too much.
SECRET_NAME_PARTS = ("password", "passwd", "pass", "pwd", "secret", "token", "credential", "key")

# name=value (and name: value, as Go prints maps) inside free text or a mount string.
# A value ends at whitespace or a comma; CIFS writes a comma in a password as ",,". A
# trailing colon is left outside ("password=x: no such device" is how mount errors read).
_PAIR = re.compile(
    r"(?P<name>[A-Za-z0-9_.-]*(?:" + "|".join(SECRET_NAME_PARTS) + r")[A-Za-z0-9_.-]*)"
    r"(?P<sep>\s*=\s*|:(?=\S))"
    r"(?P<value>\"[^\"]*\"|'[^']*'|(?:,,|[^\s,])+?)(?=:?(?:\s|,(?!,)|$))",
    re.IGNORECASE,
)
# CIFS also takes the password inside the user name: username=user%password.
_USER_PERCENT = re.compile(r"(?P<name>\buser(?:name)?\s*=\s*)(?P<user>[^\s,%]*)%(?:,,|[^\s,])+", re.IGNORECASE)
# URL user info: smb://user:password@host, //user:password@host/share, //user%password@host.
_USERINFO = re.compile(r"(?P<pre>(?:\b[A-Za-z][A-Za-z0-9+.-]*:)?//)(?P<user>[^/\s:@%]*)(?P<sep>[:%])[^\s/]*@")


def is_secret_name(name) -> bool:
    lowered = str(name).lower()
    return any(part in lowered for part in SECRET_NAME_PARTS)


def scrubbed_text(text) -> str:
    """`text` with every secret-looking value replaced by ***; other text unchanged."""
    if text is None:
        return ""
    text = str(text)
    if not text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['pre']}{m['user']}{m['sep']}{REDACTED}@", text)
    text = _USER_PERCENT.sub(lambda m: f"{m['name']}{m['user']}%{REDACTED}", text)
    return _PAIR.sub(lambda m: f"{m['name']}{m['sep']}{REDACTED}", text)


def scrubbed(value):
    """A copy of `value` (dict, list, string, scalar) with secrets masked.

    A key that names a secret has its whole value replaced; strings elsewhere are
    scrubbed as text (mount strings, URLs, messages).
    """
    if isinstance(value, dict):
        return {k: REDACTED if is_secret_name(k) and v not in (None, "") else scrubbed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrubbed(v) for v in value]
    if isinstance(value, str):
        return scrubbed_text(value)
    return value


def scrubbed_options(options: dict | None) -> tuple[dict, list[str]]:
    """Driver options as strings with secrets masked, and the names of those that were.

    The manifest keeps the list (`options_redacted`): a restore asks for those values
    again instead of creating a volume with *** as a password.
    """
    clean, redacted = {}, []
    for key, value in (options or {}).items():
        text = "" if value is None else str(value)
        masked = REDACTED if is_secret_name(key) and text else scrubbed_text(text)
        clean[key] = masked
        if masked != text:
            redacted.append(key)
    return clean, redacted


# --- logs -----------------------------------------------------------------------------------

_previous_factory = None


def _scrubbing_factory(*args, **kwargs) -> logging.LogRecord:
    record = _previous_factory(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: let the handler report it as usual
        return record
    clean = scrubbed_text(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and isinstance(record.exc_info, tuple) and record.exc_info[0] is not None:
        # Formatters use exc_text when it is set: the traceback (with the engine's
        # chained error) is written scrubbed, by every handler, Celery's included.
        record.exc_text = scrubbed_text(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = scrubbed_text(record.stack_info)
    return record


def install_log_scrubbing() -> None:
    """Scrub every log record of this process when it is made, whoever configures the
    handlers afterwards (Django's LOGGING, Celery's worker). Idempotent."""
    global _previous_factory
    if _previous_factory is not None:
        return
    _previous_factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(_scrubbing_factory)
