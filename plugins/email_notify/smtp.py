"""One SMTP session per send, and what each way of failing means for the notification.

A session connects, secures the connection as configured (STARTTLS or TLS from the
first byte), logs in when a user is set, sends, and quits. A reply in the 4xx range is
the server saying "not now" (greylisting, a full queue): try again. A 5xx reply to the
recipient or the message is the server refusing it for good. A connection that cannot
be made or a server that does not answer in time: try again.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import aiosmtplib
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPConnectResponseError,
    SMTPException,
    SMTPHeloError,
    SMTPNotSupported,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from hub.notify import RetryLater, Undeliverable
from hub.plugins import PluginAuthFailed, PluginConfigError, PluginNotReady, PluginStartupError
from plugins.email_notify.config import EmailNotifyConfig


class LoginRefused(Exception):
    """The server did not accept the configured user and password (or offers no login)."""


class NoStartTLS(Exception):
    """security = "starttls", and the server does not offer STARTTLS."""


def tls_context(config: EmailNotifyConfig) -> ssl.SSLContext:
    """Blocking (it reads the CA bundles): build once, off the event loop."""
    context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    if not config.validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def connect(
    config: EmailNotifyConfig, context: ssl.SSLContext | None, local_hostname: str | None
) -> aiosmtplib.SMTP:
    """A connected client, secured and logged in as configured."""
    client = aiosmtplib.SMTP(
        hostname=config.host,
        port=config.smtp_port,
        use_tls=config.security == "tls",
        start_tls=False,  # below, so that a server without STARTTLS is told apart
        tls_context=context if config.security != "none" else None,
        timeout=config.timeout.total_seconds(),
        local_hostname=local_hostname,
    )
    await client.connect()
    try:
        if config.security == "starttls":
            await client.ehlo()
            if not client.supports_extension("starttls"):
                raise NoStartTLS(f"{config.server} does not offer STARTTLS")
            await client.starttls()
        if config.user and config.password:
            await _login(client, config.user, config.password.get_secret_value())
    except BaseException:
        client.close()
        raise
    return client


@asynccontextmanager
async def session(
    config: EmailNotifyConfig, context: ssl.SSLContext | None, local_hostname: str | None
) -> AsyncIterator[aiosmtplib.SMTP]:
    """A connected client, logged in when a user is configured; closed on the way out."""
    client = await connect(config, context, local_hostname)
    try:
        yield client
    except BaseException:
        client.close()
        raise
    # The message is sent by now; how the goodbye goes changes nothing.
    with suppress(Exception):
        await client.quit(timeout=min(5.0, config.timeout.total_seconds()))
    client.close()


async def _login(client: aiosmtplib.SMTP, user: str, password: str) -> None:
    try:
        await client.login(user, password)
    except SMTPAuthenticationError as error:
        if _temporary(error.code):
            raise  # "454 temporary authentication failure": try again
        raise LoginRefused(_reply(error)) from None
    except (SMTPServerDisconnected, SMTPTimeoutError, SMTPResponseException):
        raise
    except SMTPException as error:  # no AUTH offered, no mechanism in common
        raise LoginRefused(error.message) from None


def _temporary(code: int) -> bool:
    return 400 <= code < 500


def _reply(error: SMTPResponseException) -> str:
    return f"{error.code} {' '.join(error.message.split())}"


def _tls_failure(error: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _tls_reason(error: ssl.SSLError, config: EmailNotifyConfig) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"{config.server}: the server's certificate is not trusted "
            f"({error.verify_message}); give its CA as ca_file, or set validate_certs = false"
        )
    hint = ""
    if "WRONG_VERSION_NUMBER" in str(error) or "record layer failure" in str(error):
        hint = " (does the port speak TLS from the first byte? use security = 'starttls')"
    return f"{config.server}: TLS failed: {error.reason or error}{hint}"


def send_failure(error: BaseException, config: EmailNotifyConfig) -> RetryLater | Undeliverable:
    """What a failed send means for the notification."""
    if isinstance(error, LoginRefused):
        return Undeliverable(f"login refused: {error}")
    if isinstance(error, SMTPRecipientsRefused):
        refused = error.recipients[0]
        reply = _reply(refused)
        return RetryLater(reply) if _temporary(refused.code) else Undeliverable(reply)
    if isinstance(error, SMTPConnectResponseError | SMTPHeloError):
        # The server does not talk to us now; nothing about this message.
        return RetryLater(f"{config.server}: {_reply(error)}")
    if isinstance(error, SMTPResponseException):
        reply = _reply(error)
        if error.code >= 500:
            return Undeliverable(reply)  # "554 message refused", "552 too big"
        return RetryLater(reply)
    tls = _tls_failure(error)
    if tls is not None:
        return RetryLater(_tls_reason(tls, config))
    if isinstance(error, NoStartTLS):
        return RetryLater(str(error))  # never sent in the clear; maybe the server is fixed
    if isinstance(error, ValueError | SMTPNotSupported):  # an address SMTP cannot carry
        return Undeliverable(str(error))
    if isinstance(error, SMTPTimeoutError | TimeoutError):
        return RetryLater(f"{config.server}: no answer in {config.timeout.total_seconds():g}s")
    if isinstance(error, SMTPException | OSError):
        return RetryLater(f"{config.server}: {error}")
    return RetryLater(f"{type(error).__name__}: {error}")


def startup_failure(error: BaseException, config: EmailNotifyConfig) -> PluginStartupError:
    """Why the plugin cannot start: credentials refused, settings that cannot work, or a
    server that is not there yet."""
    if isinstance(error, LoginRefused):
        return PluginAuthFailed(f"{config.server}: login refused for {config.user}: {error}")
    if isinstance(error, NoStartTLS):
        return PluginConfigError(
            f"{error}; use security = 'tls' (port 465) if it speaks TLS from the first byte"
        )
    tls = _tls_failure(error)
    if tls is not None:
        return PluginNotReady(_tls_reason(tls, config))
    if isinstance(error, SMTPResponseException):
        return PluginNotReady(f"{config.server}: {_reply(error)}")
    if isinstance(error, SMTPTimeoutError | TimeoutError):
        return PluginNotReady(f"{config.server}: no answer in {config.timeout.total_seconds():g}s")
    return PluginNotReady(f"{config.server}: {error}")
