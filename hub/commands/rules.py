"""`hub rules`: the rules engine's findings, and a changed policy tried on the history."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from hub.commands.common import _run, _settings, offline_hub
from hub.config import ConfigError


@click.group()
def rules() -> None:
    """Audits of the store (what breaks the sales rules, by manager), and a changed policy
    tried on the recorded history before it is enabled."""


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


@rules.command("simulate")
@click.option(
    "--config",
    "candidate",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="CANDIDATE.toml",
    help="The policy to try: a config file whose sections ([pipelines], [catalog], "
    "[plugins.NAME]...) replace the current ones. Default: the current config.",
)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Moves of this many days.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def rules_simulate(ctx: click.Context, candidate: Path | None, days: int, as_json: bool) -> None:
    """What the guards of a policy would have refused among the stage moves of the last
    DAYS days: by manager, by reason, with example deals. Writes nothing: the history is
    replayed in a transaction that is rolled back."""
    from rules.simulate import SimulationError, candidate_settings, describe, simulate

    settings = _settings(ctx)
    try:
        policy = candidate_settings(settings, candidate) if candidate else settings
        report = _run(simulate(policy, days, policy=str(candidate) if candidate else None))
    except ConfigError as error:
        which = f"candidate configuration ({candidate})" if candidate else "configuration"
        click.echo(f"invalid {which}:\n{error}", err=True)
        sys.exit(2)
    except SimulationError as error:
        click.echo(str(error), err=True)
        sys.exit(1)
    if as_json:
        click.echo(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
        return
    for line in describe(report):
        click.echo(line)
