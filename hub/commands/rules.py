"""`hub rules`: the rules engine's findings."""

from __future__ import annotations

import click

from hub.commands.common import _run, _settings, offline_hub


@click.group()
def rules() -> None:
    """Audits of the store: what breaks the sales rules, by manager."""


@rules.command("audit")
@click.pass_context
def rules_audit(ctx: click.Context) -> None:
    """Run every audit now; print the open violations by manager, worst first."""
    from hub.audit import describe, run_audits

    async def go() -> list[str]:
        async with offline_hub(_settings(ctx)) as hub:
            return describe(await run_audits(hub))

    for line in _run(go()):
        click.echo(line)
