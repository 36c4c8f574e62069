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
    "middle_name, phone, email, company, tax_id, city, segment, external_id, owner, "
    "address, postcode, birth_date, ignore). Default: guessed from the headers, "
    "Russian or English.",
)
@click.option(
    "--system",
    default=None,
    help="The system the file's external ids come from (1c, bitrix, ...): an id 000123 is "
    "kept as 1c:000123. Without it an id may name its system itself (1c:000123).",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write one CSV line per row of FILE: row, external_id, decision (created, merged, "
    "unchanged, flagged, rejected), contact_id, score, reasons, duplicate_of, note.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Decide every row (and --report it) as the import would, and write nothing.",
)
@click.pass_context
def import_contacts_cmd(
    ctx: click.Context,
    file: Path,
    mapping: str | None,
    system: str | None,
    report_path: Path | None,
    dry_run: bool,
) -> None:
    """Import contacts from a CSV or XLSX FILE, matching each row against the store.

    Each row is created, merged into a contact the store has (by its external id, phone
    or email), unchanged (it was imported before), flagged for review beside a similar
    contact, or rejected with its reason. Importing a file twice changes nothing."""
    from hub.deals.changes import split_external_id
    from hub.importer import ImportFailed, import_contacts, parse_mapping, read_rows
    from hub.leads import LeadPipeline
    from hub.store.ops import bump_counter

    settings = _settings(ctx)

    async def go() -> Any:
        async with offline_hub(settings) as hub:
            assert hub.catalog is not None
            pipeline = LeadPipeline(hub.catalog, settings, bump_counter, hub.deals, hub.matchers())
            explicit = parse_mapping(mapping, read_rows(file)[0]) if mapping else None
            return await import_contacts(
                hub.store, pipeline, file, explicit, system=system, dry_run=dry_run
            )

    if system is not None and split_external_id(f"{system}:0")[0] != system.lower():
        click.echo(
            f"cannot import: --system {system!r}: up to 32 letters, digits, '.', '-' and '_', "
            "with at least one letter",
            err=True,
        )
        sys.exit(2)
    try:
        report = _run(go())
    except ImportFailed as error:
        click.echo(f"cannot import: {error}", err=True)
        sys.exit(2)
    columns = ", ".join(f"{h} → {f}" for h, f in report.mapping.items())
    click.echo(f"columns: {columns}")
    # "merged" counts every row that went to a contact the store had; of those, the
    # unchanged ones (a file imported again) are named.
    unchanged = f" ({report.unchanged} unchanged)" if report.unchanged else ""
    click.echo(
        f"created {report.created}, merged {report.merged + report.unchanged}{unchanged}, "
        f"flagged {report.flagged}, rejected {len(report.rejected)}"
    )
    for number, reason in report.rejected:
        click.echo(f"  row {number}: {reason}")
    if report_path is not None:
        report.write_csv(report_path)
        click.echo(f"report: {report_path} ({len(report.rows)} rows)")
    if dry_run:
        click.echo("dry run: nothing was written")
