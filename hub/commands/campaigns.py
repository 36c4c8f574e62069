"""`hub segments` and `hub campaigns`: who a segment is, and messages sent to it."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from hub.commands.common import (
    _local,
    _settings,
    _table,
    acting_as,
    as_option,
    change_or_exit,
    offline_hub,
)

SKIP_WORDS = {
    "opted_out": "отписались",
    "no_consent": "нет согласия на рекламу",
    "no_address": "нет телефона / email",
    "bouncing": "адрес не принимает почту",
    "same_address": "тот же адрес у другого контакта",
    "cancelled": "кампания отменена",
}


def _desk_call(settings: Any, work: Any) -> Any:
    from hub.campaigns.desk import CampaignError

    async def go() -> Any:
        async with offline_hub(settings) as hub:
            return await work(hub)

    try:
        return change_or_exit(go())
    except CampaignError as error:
        click.echo(str(error), err=True)
        sys.exit(1)


def _ref(value: str) -> int | str:
    return int(value) if value.isdigit() else value


@click.group()
def segments() -> None:
    """Segments: saved filters over contacts (`[segments.NAME]` in the config)."""


@segments.command("list")
@click.pass_context
def segments_list(ctx: click.Context) -> None:
    """The segments the config defines, with their filters."""
    settings = _settings(ctx)
    for name, audience in sorted(settings.segments.items()):
        filters = ", ".join(f"{k}={v}" for k, v in audience.filters().items() if k != "title")
        click.echo(f"{name}: {audience.title or ''} [{filters}]")


@segments.command("preview")
@click.argument("name")
@click.option("--sample", type=int, default=10, show_default=True)
@click.pass_context
def segments_preview(ctx: click.Context, name: str, sample: int) -> None:
    """How many contacts segment NAME has (and with consent per channel), and a sample."""
    settings = _settings(ctx)

    async def work(hub: Any) -> dict[str, Any]:
        return await hub.campaigns.preview(hub.campaigns.audience(name), sample=sample)

    found = _desk_call(settings, work)
    click.echo(f"{name}: {found['count']} контактов")
    click.echo(
        f"с согласием на SMS: {found['with_consent']['sms']}, "
        f"на email: {found['with_consent']['email']}"
    )
    _table(
        ["id", "name", "city", "segment"],
        [[p["id"], p["name"] or "", p["city"] or "", p["segment"] or ""] for p in found["sample"]],
    )


@click.group()
def campaigns() -> None:
    """SMS and email campaigns to segments: create, preview, start, pause, resume, report."""


@campaigns.command("create")
@click.argument("name")
@click.option("--segment", required=True, help="A segment of the config.")
@click.option("--channel", type=click.Choice(["sms", "email"]), required=True)
@click.option("--text", "text", default=None, help="The template (Jinja2) of the message.")
@click.option("--text-file", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--subject", default=None, help="Email: the subject (a template too).")
@click.option("--html-file", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--gateway", default=None, help="Which gateway (default: the channel's first).")
@click.option("--service", is_flag=True, help="A service message: no advertising consent needed.")
@click.option(
    "--rate", type=float, default=None, help="Messages per second (default: the gateway's)."
)
@click.option(
    "--quiet-hours",
    default=None,
    help='e.g. "21:00-09:00" in the recipient\'s time; "off" for none. Default: [campaigns].',
)
@click.option("--start-at", type=click.DateTime(), default=None, help="Not before (local time).")
@click.option("--dry-run", is_flag=True, help="Show what it would send right after creating it.")
@as_option
@click.pass_context
def campaigns_create(
    ctx: click.Context,
    name: str,
    segment: str,
    channel: str,
    text: str | None,
    text_file: Path | None,
    subject: str | None,
    html_file: Path | None,
    gateway: str | None,
    service: bool,
    rate: float | None,
    quiet_hours: str | None,
    start_at: datetime | None,
    dry_run: bool,
    as_user: str | None,
) -> None:
    """Create campaign NAME as a draft (nothing is sent until `hub campaigns start`)."""
    from zoneinfo import ZoneInfo

    settings = _settings(ctx)
    if text_file is not None:
        text = text_file.read_text(encoding="utf-8")
    if not text:
        raise click.UsageError("give the message as --text or --text-file")
    html = html_file.read_text(encoding="utf-8") if html_file else None
    if quiet_hours is not None:
        quiet_hours = "" if quiet_hours.lower() in ("off", "none", "") else quiet_hours
    when = start_at.replace(tzinfo=ZoneInfo(settings.hub.timezone)) if start_at else None

    async def work(hub: Any) -> Any:
        campaign_id = await hub.campaigns.create(
            name=name,
            segment=segment,
            channel=channel,
            text=text,
            subject=subject,
            html=html,
            gateway=gateway,
            service=service,
            rate=rate,
            quiet_hours=quiet_hours,
            start_at=when,
            actor=await acting_as(hub, as_user),
        )
        return campaign_id, (await hub.campaigns.dry_run(campaign_id) if dry_run else None)

    campaign_id, found = _desk_call(settings, work)
    click.echo(f"campaign {campaign_id} «{name}» created (draft)")
    if found is not None:
        _show_dry_run(found)


def _show_dry_run(found: Any) -> None:
    click.echo(f"в сегменте: {found.segment_size}; будет отправлено: {found.would_send}")
    for reason, count in sorted(found.skipped.items()):
        click.echo(f"  пропущено ({SKIP_WORDS.get(reason, reason)}): {count}")
    if found.sms_parts:
        parts = ", ".join(f"{n} SMS: {count}" for n, count in found.sms_parts.items())
        encodings = ", ".join(f"{e}: {count}" for e, count in found.encodings.items())
        click.echo(f"  частей на сообщение: {parts} ({encodings})")
    for sample in found.samples:
        click.echo(f"--- {sample['address']} (контакт {sample['contact_id']})")
        if sample["subject"]:
            click.echo(f"Тема: {sample['subject']}")
        click.echo(sample["text"])


@campaigns.command("preview")
@click.argument("campaign")
@click.option("--sample", type=int, default=3, show_default=True)
@click.pass_context
def campaigns_preview(ctx: click.Context, campaign: str, sample: int) -> None:
    """A dry run: every message rendered, who would be skipped and why; nothing sent."""
    settings = _settings(ctx)

    async def work(hub: Any) -> Any:
        return await hub.campaigns.dry_run(_ref(campaign), sample=sample)

    _show_dry_run(_desk_call(settings, work))


@campaigns.command("start")
@click.argument("campaign")
@as_option
@click.pass_context
def campaigns_start(ctx: click.Context, campaign: str, as_user: str | None) -> None:
    """Write the campaign's outbox; the running daemon sends it at the campaign's pace."""
    settings = _settings(ctx)

    async def work(hub: Any) -> Any:
        return await hub.campaigns.start(_ref(campaign), await acting_as(hub, as_user))

    found = _desk_call(settings, work)
    click.echo(f"queued: {found['queued']}")
    for reason, count in sorted(found["skipped"].items()):
        click.echo(f"skipped ({SKIP_WORDS.get(reason, reason)}): {count}")


def _state_command(name: str, state: str, help_text: str) -> None:
    @campaigns.command(name, help=help_text)
    @click.argument("campaign")
    @as_option
    @click.pass_context
    def command(ctx: click.Context, campaign: str, as_user: str | None) -> None:
        settings = _settings(ctx)

        async def work(hub: Any) -> None:
            await hub.campaigns.set_state(_ref(campaign), state, await acting_as(hub, as_user))

        _desk_call(settings, work)
        click.echo(f"campaign {campaign}: {state}")


_state_command("pause", "paused", "Stop sending; what is queued waits.")
_state_command("resume", "running", "Go on sending a paused campaign.")
_state_command("cancel", "cancelled", "Stop for good: what is still queued is not sent.")


@campaigns.command("list")
@click.pass_context
def campaigns_list(ctx: click.Context) -> None:
    """Every campaign with its state."""
    settings = _settings(ctx)
    show = _local(settings)

    async def work(hub: Any) -> Any:
        return await hub.campaigns.list()

    _table(
        ["id", "name", "channel", "segment", "state", "created", "started"],
        [
            [
                c["id"],
                c["name"],
                c["channel"],
                c["segment"],
                c["state"],
                show(c["created_at"]),
                show(c["started_at"]) if c["started_at"] else "",
            ]
            for c in _desk_call(settings, work)
        ],
    )


@campaigns.command("status")
@click.argument("campaign")
@click.pass_context
def campaigns_status(ctx: click.Context, campaign: str) -> None:
    """Messages by state, and why recipients were skipped."""
    _report(ctx, campaign, deals=False)


@campaigns.command("report")
@click.argument("campaign")
@click.pass_context
def campaigns_report(ctx: click.Context, campaign: str) -> None:
    """Status, delivery, and the deals that came of it (created or won after the message)."""
    _report(ctx, campaign, deals=True)


def _report(ctx: click.Context, campaign: str, *, deals: bool) -> None:
    settings = _settings(ctx)

    async def work(hub: Any) -> Any:
        if deals:
            return await hub.campaigns.report(_ref(campaign))
        return await hub.campaigns.status(_ref(campaign))

    found = _desk_call(settings, work)
    row = found["campaign"]
    click.echo(
        f"campaign {row['id']} «{row['name']}»: {row['state']} ({row['channel']}, {row['gateway']})"
    )
    for state in ("queued", "sending", "sent", "delivered", "failed", "review", "skipped"):
        if found["states"].get(state):
            click.echo(f"  {state}: {found['states'][state]}")
    for reason, count in sorted(found["skipped"].items()):
        click.echo(f"    {SKIP_WORDS.get(reason, reason)}: {count}")
    if not deals:
        return
    click.echo(f"  получателей: {found['recipients']}, отправлено: {found['sent']}")
    click.echo(f"  доставлено: {found['delivered']}, не доставлено: {found['failed']}")
    for error, count in found["failures"].items():
        click.echo(f"    {error or 'без объяснения'}: {count}")
    if found["review"]:
        click.echo(f"  прерваны сбоем, ждут решения: {found['review']}")
    if found["sms_parts"]:
        click.echo(f"  частей SMS: {found['sms_parts']}")
    if found["cost"] is not None:
        click.echo(f"  стоимость: {found['cost']}")
    click.echo(f"  отписались после рассылки: {found['opted_out']}")
    days = found["attribution_days"]
    click.echo(f"  за {days} дн. после сообщения: новых сделок {found['deals_created']}, "
               f"возобновлено {found['deals_reopened']}, выиграно {found['deals_won']} "
               f"на сумму {found['won_amount']}")  # fmt: skip


@campaigns.command("held")
@click.argument("campaign")
@click.pass_context
def campaigns_held(ctx: click.Context, campaign: str) -> None:
    """Messages a crash left unknown: the gateway could not tell whether they went."""
    settings = _settings(ctx)
    rows = _desk_call(settings, lambda hub: hub.campaigns.held(_ref(campaign)))
    if not rows:
        click.echo("нет сообщений, ждущих решения")
        return
    _table(
        ["id", "contact", "name", "address", "attempts", "why"],
        [[r["id"], r["contact_id"], r["name"] or "", r["address"] or "", r["attempts"],
          r["error"] or ""] for r in rows],
    )  # fmt: skip
    click.echo(
        "проверьте у провайдера и решите: hub campaigns settle "
        f"{campaign} --resend (не ушли) или --sent (ушли)"
    )


@campaigns.command("settle")
@click.argument("campaign")
@click.option("--resend", "resend", flag_value=True, default=None, help="They did not go: send.")
@click.option("--sent", "resend", flag_value=False, help="They went: take them as sent.")
@click.option("--id", "ids", type=int, multiple=True, help="Only this held message (repeat).")
@as_option
@click.pass_context
def campaigns_settle(
    ctx: click.Context,
    campaign: str,
    resend: bool | None,
    ids: tuple[int, ...],
    as_user: str | None,
) -> None:
    """Decide on held messages (see `held`): send them again, or take them as sent."""
    if resend is None:
        raise click.UsageError("say --resend (they did not go) or --sent (they went)")
    settings = _settings(ctx)

    async def work(hub: Any) -> list[int]:
        return await hub.campaigns.settle_held(
            _ref(campaign), resend=resend, ids=ids or None, actor=await acting_as(hub, as_user)
        )

    settled = _desk_call(settings, work)
    if not settled:
        click.echo("нет таких сообщений, ждущих решения", err=True)
        sys.exit(1)
    what = "снова в очереди (демон отправит)" if resend else "отмечены отправленными"
    click.echo(f"{len(settled)} {what}: {', '.join(map(str, settled))}")


@click.group()
def consents() -> None:
    """Consent to advertising per contact and channel."""


@consents.command("set")
@click.argument("contact_id", type=int)
@click.argument("channel", type=click.Choice(["sms", "email"]))
@click.option("--withdraw", is_flag=True, help="Record an opt-out instead.")
@click.option("--source", default="cli", show_default=True, help="Where it came from.")
@as_option
@click.pass_context
def consents_set(
    ctx: click.Context,
    contact_id: int,
    channel: str,
    withdraw: bool,
    source: str,
    as_user: str | None,
) -> None:
    """Record that CONTACT_ID agreed to advertising on CHANNEL (or withdrew)."""
    settings = _settings(ctx)

    async def work(hub: Any) -> None:
        await hub.campaigns.set_consent(
            contact_id, channel, not withdraw, source=source, actor=await acting_as(hub, as_user)
        )

    _desk_call(settings, work)
    click.echo(f"contact {contact_id}: {channel} {'withdrawn' if withdraw else 'granted'}")
