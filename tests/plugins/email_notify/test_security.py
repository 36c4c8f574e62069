"""Encrypted connections and login: STARTTLS and TLS against a self-signed certificate,
AUTH LOGIN and PLAIN, and what a refused login or an untrusted server does to the plugin."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from hub.notify import RetryLater, Undeliverable
from hub.plugins import PluginAuthFailed, PluginConfigError, PluginNotReady
from tests.conftest import make_hub, make_settings, wait_for
from tests.plugins.email_notify.conftest import (
    PASSWORD,
    SENDER,
    USER,
    accept_one_user,
    notification,
    notifier,
)


async def test_starttls_with_a_self_signed_certificate_given_as_ca_file(
    smtp_server, mailbox, server_tls, certificate
):
    server = smtp_server(tls_context=server_tls, require_starttls=True)
    email = notifier(server.port, security="starttls", ca_file=str(certificate[0]))

    await email.hub_startup()
    await email.send(notification())

    [received] = mailbox.received
    assert received.starttls
    assert received.message["Subject"] == "Сделка «Поставка труб» проиграна"


async def test_tls_from_the_first_byte(smtp_server, mailbox, server_tls, certificate):
    server = smtp_server(ssl_context=server_tls)
    email = notifier(server.port, security="tls", ca_file=str(certificate[0]))

    await email.hub_startup()
    await email.send(notification())

    assert len(mailbox.received) == 1


async def test_an_untrusted_certificate_is_not_sent_to(smtp_server, mailbox, server_tls):
    server = smtp_server(tls_context=server_tls, require_starttls=True)
    email = notifier(server.port, security="starttls")

    with pytest.raises(PluginNotReady) as not_ready:
        await email.hub_startup()
    with pytest.raises(RetryLater) as deferred:
        await email.send(notification())

    for reason in (str(not_ready.value), deferred.value.reason):
        assert "certificate is not trusted" in reason
        assert "ca_file" in reason
    assert mailbox.received == []


async def test_validate_certs_false_accepts_a_self_signed_certificate(
    smtp_server, mailbox, server_tls
):
    server = smtp_server(tls_context=server_tls, require_starttls=True)
    email = notifier(server.port, security="starttls", validate_certs=False)

    await email.hub_startup()
    await email.send(notification())

    assert mailbox.received[0].starttls


async def test_a_server_without_starttls_is_a_configuration_error_not_a_plain_send(
    smtp_server, mailbox
):
    server = smtp_server()  # offers no STARTTLS
    email = notifier(server.port, security="starttls")

    with pytest.raises(PluginConfigError) as refused:
        await email.hub_startup()
    with pytest.raises(RetryLater):
        await email.send(notification())

    assert "does not offer STARTTLS" in str(refused.value)
    assert mailbox.received == []


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
async def test_the_configured_user_logs_in_before_sending(
    smtp_server, mailbox, server_tls, certificate, mechanism
):
    other = "PLAIN" if mechanism == "LOGIN" else "LOGIN"
    server = smtp_server(
        tls_context=server_tls,
        require_starttls=True,
        authenticator=accept_one_user,
        auth_required=True,
        auth_exclude_mechanism=[other],
    )
    email = notifier(
        server.port,
        security="starttls",
        ca_file=str(certificate[0]),
        user=USER,
        password=PASSWORD,
    )

    await email.hub_startup()
    await email.send(notification())

    [received] = mailbox.received
    assert received.authenticated and received.starttls


def login_server(smtp_server, server_tls):
    return smtp_server(
        tls_context=server_tls,
        require_starttls=True,
        authenticator=accept_one_user,
        auth_required=True,
    )


async def test_wrong_credentials_stop_the_plugin_at_start(
    smtp_server, mailbox, server_tls, certificate, sqlite_url
):
    server = login_server(smtp_server, server_tls)
    section = {
        "host": "127.0.0.1",
        "port": server.port,
        "sender": SENDER,
        "ca_file": str(certificate[0]),
        "user": USER,
        "password": "not-the-password",
    }
    from plugins.email_notify import EmailNotifier

    hub = make_hub(
        make_settings(sqlite_url, plugins={"email_notify": section}),
        extra={"email_notify": EmailNotifier},
    )
    with capture_logs() as logs:
        await hub.start()
        try:
            record = hub.plugins.records["email_notify"]

            async def settled() -> bool:
                return record.state not in ("configured", "starting")

            await wait_for(settled)
            await asyncio.sleep(0.3)  # several of the host's backoff periods: not tried again
        finally:
            await hub.stop()

    assert record.state == "auth_failed"
    assert record.failures == 1
    assert "login refused for crm@example.ru" in record.error
    assert "535" in record.error
    assert "not-the-password" not in repr(logs)


async def test_wrong_credentials_at_a_send_make_it_undeliverable(
    smtp_server, mailbox, server_tls, certificate
):
    server = login_server(smtp_server, server_tls)
    email = notifier(
        server.port,
        security="starttls",
        ca_file=str(certificate[0]),
        user=USER,
        password="not-the-password",
    )

    with pytest.raises(PluginAuthFailed):
        await email.hub_startup()
    with capture_logs() as logs, pytest.raises(Undeliverable) as refused:
        await email.send(notification())

    assert refused.value.reason.startswith("login refused: 535")
    assert "not-the-password" not in repr(logs)
    assert mailbox.received == []


async def test_a_server_that_is_not_there_leaves_the_plugin_not_ready(free_port, silent_server):
    with pytest.raises(PluginNotReady) as refused:
        await notifier(free_port).hub_startup()
    with pytest.raises(PluginNotReady) as silent:
        await notifier(silent_server, timeout="0.3s").hub_startup()

    assert str(refused.value).startswith(f"127.0.0.1:{free_port}: ")
    assert str(silent.value) == f"127.0.0.1:{silent_server}: no answer in 0.3s"


async def test_a_server_that_offers_no_login_refuses_the_configured_user(smtp_server, mailbox):
    server = smtp_server()  # no AUTH offered
    email = notifier(server.port, user=USER, password=PASSWORD)

    with pytest.raises(PluginAuthFailed) as refused:
        await email.hub_startup()

    assert "AUTH" in str(refused.value)


async def test_a_ca_file_that_is_not_a_certificate_is_a_configuration_error(tmp_path, free_port):
    broken = tmp_path / "ca.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    email = notifier(free_port, security="starttls", ca_file=str(broken))

    with pytest.raises(PluginConfigError) as refused:
        await email.hub_startup()

    assert str(refused.value).startswith(f"ca_file {broken}: ")
