"""Settings of the web-form channel: ``[plugins.webforms]`` and one table per form."""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, model_validator

from hub.config import Duration, Settings
from hub.domain.lead import LEAD_FIELDS

TARGETS = set(LEAD_FIELDS) | {"ignore"}


def _valid_target(target: str) -> bool:
    return target in TARGETS or (target.startswith("custom.") and len(target) > len("custom."))


class Form(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    # form field → lead field: name, phone, email, company, city, title, message, amount,
    # currency, source, segment, utm_*, custom.<key> or ignore. Unlisted fields whose name
    # is a lead field map to it; every field is kept in the deal's history either way.
    fields: dict[str, str] = {}
    required: list[str] = []  # form fields, or lead fields some form field maps to
    pipeline: str | None = None
    stage: str | None = None
    source: str | None = None
    segment: str | None = None
    title: str | None = None  # deal title template, e.g. "Заявка с сайта: {name}"
    allowed_origins: list[str] = []  # ["*"] allows any; empty allows no cross-site browser
    auth: Literal["none", "token", "hmac"] = "none"
    secret: SecretStr | None = None
    honeypot: str | None = None
    rate_limit: int = Field(20, ge=1)  # submissions per client IP per rate_window
    rate_window: Duration = timedelta(minutes=1)
    max_body: int = Field(65536, ge=1024, le=50 * 1024 * 1024)
    thank_you_url: str | None = None
    # The page the form is on: the error page links back to it when the browser does not
    # say where it came from (no Referer, or only the site's address).
    page_url: str | None = None

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Form:
        if self.page_url and not self.page_url.startswith(("http://", "https://")):
            raise ValueError(f"page_url must be an http(s) address, not {self.page_url!r}")
        bad = [f"{k} = {v!r}" for k, v in self.fields.items() if not _valid_target(v)]
        if bad:
            raise ValueError(
                f"fields: unknown lead field in {', '.join(bad)} "
                f"(use one of {', '.join(sorted(TARGETS))} or custom.<key>)"
            )
        if self.auth != "none" and self.secret is None:
            raise ValueError(f"auth = {self.auth!r} needs a secret (or HUB__PLUGINS__...__SECRET)")
        settings = (info.context or {}).get("settings")
        if isinstance(settings, Settings):
            key = self.pipeline or settings.default_pipeline
            pipeline = settings.pipelines.get(key)
            if pipeline is None:
                raise ValueError(f"pipeline {key!r} is not configured under [pipelines]")
            if self.stage and not any(
                s.key == self.stage and s.kind == "open" for s in pipeline.stages
            ):
                raise ValueError(f"stage {self.stage!r} is not an open stage of pipeline {key!r}")
        return self

    @cached_property
    def required_sources(self) -> list[tuple[list[str], str]]:
        """For each required name: the form fields that fill it, and the field an error
        names when the submission holds none of them (else it names the one it holds)."""
        out = []
        for name in self.required:
            mapped = [f for f, target in self.fields.items() if target == name]
            out.append(([*mapped, name], mapped[0] if len(mapped) == 1 else name))
        return out

    @cached_property
    def contact_sources(self) -> list[str]:
        """The form fields that give a phone or an email, the phone's first."""
        out = []
        for point in ("phone", "email"):
            out += [f for f, target in self.fields.items() if target == point]
            if point not in self.fields:
                out.append(point)
        return out

    def target(self, field: str) -> str | None:
        if field in self.fields:
            target = self.fields[field]
            return None if target == "ignore" else target
        return field if field in LEAD_FIELDS else None


class WebFormsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Behind a reverse proxy, take the client's address from X-Forwarded-For.
    trust_forwarded_for: bool = False
    forms: dict[str, Form] = {}
