"""`hub import`: Importing contacts from files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from hub.commands.common import (
    _run,
    _settings,
    offline_hub,
)


@click.group("import")
def import_() -> None:
    """Bring data in from files."""


@import_.command("contacts")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--map",
    "mapping",
    default=None,
    help="Columns as 'Header=field,...' (fields: name, first_name, last_name, "
    "middle_name, phone, email, company, city, segment, external_id, owner, "
    "ignore). Default: guessed from the headers, Russian or English.",
)
@click.pass_context
def import_contacts_cmd(ctx: click.Context, file: Path, mapping: str | None) -> None:
    """Import contacts from a CSV or XLSX FILE, matching each row against the store."""
    from hub.importer import ImportFailed, import_contacts, parse_mapping, read_rows
    from hub.leads import LeadPipeline
    from hub.store.ops import bump_counter

    settings = _settings(ctx)

    async def go() -> Any:
        async with offline_hub(settings) as hub:
            assert hub.catalog is not None
            pipeline = LeadPipeline(hub.catalog, settings, bump_counter, hub.deals, hub.matchers())
            explicit = parse_mapping(mapping, read_rows(file)[0]) if mapping else None
            return await import_contacts(hub.store, pipeline, file, explicit)

    try:
        report = _run(go())
    except ImportFailed as error:
        click.echo(f"cannot import: {error}", err=True)
        sys.exit(2)
    columns = ", ".join(f"{h} → {f}" for h, f in report.mapping.items())
    click.echo(f"columns: {columns}")
    click.echo(
        f"created {report.created}, merged {report.merged}, flagged {report.flagged}, "
        f"rejected {len(report.rejected)}"
    )
    for number, reason in report.rejected:
        click.echo(f"  row {number}: {reason}")
