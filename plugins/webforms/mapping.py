"""From a form's fields to a lead, with the errors a person filling the form can fix."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from hub.domain.lead import UTM_FIELDS
from hub.domain.normalize import InvalidPoint, normalize_email, normalize_phone, normalize_tax_id
from plugins.webforms.config import Form
from plugins.webforms.parsing import Fields

MAX_VALUE = 5000


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


# What is wrong with one field: ``field`` is the form's own name for it (the one the site
# used), ``lead_field`` the lead field it fills (None for a field kept only in the history),
# ``code`` the kind of error, and its parameters (``limit``).
FieldError = dict[str, Any]


def _error(field: str, lead_field: str | None, code: str, **params: Any) -> FieldError:
    return {"field": field, "lead_field": lead_field, "code": code, **params}


def _named(sources: list[str], fields: Fields, configured: str) -> str:
    """The field the site used among ``sources``: the one it sent, else the configured one."""
    return next((f for f in sources if f in fields), configured)


def map_fields(
    form: Form,
    fields: Fields,
    query: dict[str, str],
    region: str,
    unstorable: Sequence[str] = (),
) -> tuple[dict[str, Any], list[FieldError]]:
    """Return the lead's fields and what is wrong with the form's fields.

    ``unstorable`` names fields whose text no store can keep (see parsing.keepable).
    """
    errors = [_error(name, form.target(name), "unstorable") for name in unstorable]
    lead: dict[str, Any] = {"phones": [], "emails": [], "utm": {}, "custom": {}}

    # A required name is a form field or a lead field any form field maps to.
    for sources, configured in form.required_sources:
        if not any(v.strip() for f in sources for v in fields.get(f, ())):
            named = _named(sources, fields, configured)
            errors.append(_error(named, form.target(named), "required"))

    for name, raw in fields.items():
        target = form.target(name)
        if target is None:
            continue
        values = [v for v in map(str.strip, raw) if v]
        if not values:
            continue
        if max(map(len, values)) > MAX_VALUE:
            errors.append(_error(name, target, "too_long", limit=MAX_VALUE))
            continue
        if target == "phone":
            for value in values:
                try:
                    normalize_phone(value, region)
                except InvalidPoint:
                    errors.append(_error(name, target, "invalid_phone"))
                    break
                lead["phones"].append(value)
        elif target == "email":
            for value in values:
                try:
                    normalize_email(value)
                except InvalidPoint:
                    errors.append(_error(name, target, "invalid_email"))
                    break
                lead["emails"].append(value)
        elif target == "tax_id":
            try:
                lead["tax_id"] = normalize_tax_id(values[0], region)
            except InvalidPoint:
                errors.append(_error(name, target, "invalid_tax_id"))
        elif target == "amount":
            try:
                amount = Decimal(values[0].replace(" ", "").replace(",", "."))
                if not amount.is_finite() or amount < 0:
                    raise InvalidOperation
            except InvalidOperation:
                errors.append(_error(name, target, "invalid_amount"))
                continue
            lead["amount"] = str(amount)
        elif target in UTM_FIELDS:
            lead["utm"][target] = values[0][:200]
        elif target.startswith("custom."):
            key = target.removeprefix("custom.")
            lead["custom"][key] = values[0] if len(values) == 1 else values
        elif target in ("consent_sms", "consent_email"):
            # A checked box sends its value ("on", "1", "да"); an unchecked one sends nothing.
            agreed = values[0].lower() not in ("0", "false", "no", "off", "нет")
            lead.setdefault("consents", {})[target.removeprefix("consent_")] = agreed
            lead["consent_source"] = form.name or "form"
        elif target == "message":
            lead["message"] = "\n".join(values)
        else:
            lead[target] = values[0]

    if not lead["phones"] and not lead["emails"] and not errors:
        sources = form.contact_sources
        named = _named(sources, fields, sources[0])
        errors.append(_error(named, form.target(named), "phone_or_email"))

    for name in UTM_FIELDS:  # UTM tags in the form's action URL count too
        if name not in lead["utm"] and query.get(name):
            lead["utm"][name] = query[name][:200]
    if form.source and not lead.get("source"):
        lead["source"] = form.source
    if form.segment and not lead.get("segment"):
        lead["segment"] = form.segment
    if form.title:
        values = _Blank({k: str(v) for k, v in lead.items() if isinstance(v, str)})
        values["phone"] = lead["phones"][0] if lead["phones"] else ""
        values["email"] = lead["emails"][0] if lead["emails"] else ""
        values["form"] = form.name or ""
        lead["title"] = form.title.format_map(values).strip()[:300]
    if form.pipeline:
        lead["pipeline"] = form.pipeline
    if form.stage:
        lead["stage"] = form.stage
    return lead, errors
