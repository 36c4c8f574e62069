"""The hub's configuration: one TOML file, overridden by ``HUB__SECTION__KEY`` variables.

Each plugin owns a section ``[plugins.<name>]`` validated by the plugin's own
model (see :mod:`hub.plugins`); this module validates the core sections and keeps
plugin sections as raw tables until the plugins are loaded.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from hub.campaigns.audience import Audience
from hub.domain.matching import GENERIC_MAILBOXES

ENV_PREFIX = "HUB__"
CONFIG_ENV = "HUB_CONFIG"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> Any:
    """Accept ``90``, ``"90s"``, ``"15m"``, ``"36h"``, ``"2d"``; a bare number is seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        parts = value.split()
        total = 0.0
        # "1d 12h" is allowed as well as "36h".
        tokens = re.findall(r"\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w)?", value)
        if tokens and "".join(tokens).replace(" ", "") == "".join(parts):
            for token in tokens:
                match = _DURATION.match(token)
                assert match is not None
                total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            return timedelta(seconds=total)
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 15m, 36h, 2d)")
    raise ValueError(f"not a duration: {value!r}")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HubSection(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    timezone: str = "UTC"
    default_region: str = "RU"
    shutdown_timeout: Duration = timedelta(seconds=30)
    # A plugin's hub_startup still running after this long is cancelled and retried as not ready.
    plugin_startup_timeout: Duration = timedelta(seconds=30)
    # Files that arrive with leads; relative to the config file's folder.
    attachments_dir: str = "var/attachments"

    @field_validator("shutdown_timeout", "plugin_startup_timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r} (use an IANA name such as Europe/Moscow)"
            ) from None
        return value

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown phone region {value!r} (use an ISO code such as RU)")
        return region


class LogSection(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class StoreSection(Section):
    url: str = "sqlite+aiosqlite:///var/hub.db"
    # SQLite only: FULL syncs the WAL on every commit (group commit keeps that cheap);
    # NORMAL survives a process crash but may lose the last commits on power loss.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    pool_size: int = Field(10, ge=1)
    echo: bool = False
    # A store not reachable at start-up is retried with backoff (while /healthz answers and
    # /readyz says why); still unreachable after this long, the daemon exits with an error.
    startup_deadline: Duration = timedelta(minutes=5)

    @field_validator("startup_deadline")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("use sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB")
        return value


class IntakeSection(Section):
    dedupe_window: Duration = timedelta(minutes=10)
    batch_size: int = Field(256, ge=1, le=5000)
    batch_linger: Duration = timedelta(milliseconds=50)
    group_commit_max: int = Field(1000, ge=1)
    max_attempts: int = Field(8, ge=1)
    retry_base: Duration = timedelta(seconds=5)
    retry_max: Duration = timedelta(hours=1)
    poll_interval: Duration = timedelta(seconds=1)
    workers: int = Field(1, ge=1, le=32)
    # While accepting takes nearly all of this process's CPU (a burst of leads), the workers
    # wait, so the burst is stored at full speed; a lead waits at most this long, then the
    # workers take their share again. 0 processes alongside the intake.
    burst_defer: Duration = timedelta(seconds=30)
    # false: this process only accepts (an ingress node); another hub process on the same
    # store turns the inbox into deals.
    process: bool = True


class ApiToken(Section):
    token: SecretStr
    role: Literal["admin", "head", "manager"] = "head"
    user: str | None = None  # a manager token sees only this user's records

    @model_validator(mode="after")
    def _manager_has_user(self) -> ApiToken:
        if self.role == "manager" and not self.user:
            raise ValueError("a token with role 'manager' needs user = \"<manager's email>\"")
        if len(self.token.get_secret_value()) < 16:
            raise ValueError("token must be at least 16 characters")
        return self


class ApiSection(Section):
    enabled: bool = True
    page_size: int = Field(50, ge=1, le=1000)
    tokens: dict[str, ApiToken] = {}


_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


def check_hours(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    value = value.replace(" ", "")
    if not _HOURS.match(value):
        raise ValueError(f"{name} {value!r}: write it as 09:00-18:00")
    return value


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class User(Section):
    email: str
    name: str
    role: Literal["manager", "head", "admin"] = "manager"
    active: bool = True
    extension: str | None = None
    phone: str | None = None
    telegram_chat_id: str | None = None
    timezone: str | None = None
    # New leads go only to managers on duty: these hours on these days, in their timezone.
    working_hours: str | None = None  # "09:00-18:00"; none: any time
    working_days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = list(
        WEEKDAYS[:5]
    )
    max_open_deals: int | None = Field(None, ge=1)  # skipped by round-robin at this many
    # Notifications to this user wait until these hours end, in their timezone ("21:00-09:00");
    # none: [notifications] quiet_hours.
    quiet_hours: str | None = None

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str | None) -> str | None:
        return check_hours(value, "quiet_hours")

    @field_validator("working_hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is not None and not _HOURS.match(value.replace(" ", "")):
            raise ValueError(f"working_hours {value!r}: write it as 09:00-18:00")
        return value.replace(" ", "") if value else value

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()


# Fields a stage may require before a deal enters it: the deal's own, its contact's
# (``contact.``), and custom fields of the deal (``custom.NAME``).
DEAL_FIELDS = ("title", "amount", "currency", "segment", "source", "company")
CONTACT_FIELDS = (
    "contact.name",
    "contact.city",
    "contact.segment",
    "contact.phone",
    "contact.email",
)


# Who a notification goes to: the deal's owner, every head of sales, a user by email, or
# a named destination a notifier knows (a Telegram group chat, a webhook endpoint).
_RECIPIENT = re.compile(r"^(owner|head|admin|user:[^@\s]+@[^@\s]+|chat:[\w\-]+)$")


def check_recipients(value: list[str]) -> list[str]:
    for item in value:
        if not _RECIPIENT.match(item):
            raise ValueError(
                f"{item!r} is not a recipient (owner, head, admin, user:EMAIL or chat:NAME)"
            )
    return value


class StageAction(Section):
    """One thing done when a deal enters its stage (by any path: API, CLI, a rule...)."""

    close_tasks: bool = False  # complete the deal's open tasks (the stage's work is over)
    task: str | None = None  # create a task with this title for the deal's owner
    # The new task is due this long after entering, counted in the owner's working time.
    due: Duration = timedelta(days=1)
    notify: list[str] = []  # owner, head, admin, user:EMAIL, chat:NAME
    via: list[str] | None = None  # notifiers to use; none: every one that can reach them
    template: str = "stage_entered"  # hub/templates/notifications/NAME.j2

    @field_validator("notify")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        return check_recipients(value)

    @model_validator(mode="after")
    def _does_something(self) -> StageAction:
        if not (self.close_tasks or self.task or self.notify):
            raise ValueError('an action needs close_tasks = true, task = "..." or notify = [...]')
        return self


class Stage(Section):
    key: str = Field(pattern=r"^[a-z0-9_\-]+$")
    name: str
    probability: int = Field(0, ge=0, le=100)
    kind: Literal["open", "won", "lost"] = "open"
    contact_within: Duration | None = None
    time_limit: Duration | None = None
    required_fields: list[str] = []
    on_enter: list[StageAction] = []

    @field_validator("required_fields")
    @classmethod
    def _known_fields(cls, value: list[str]) -> list[str]:
        for name in value:
            if (
                name not in DEAL_FIELDS
                and name not in CONTACT_FIELDS
                and not (name.startswith("custom.") and len(name) > len("custom."))
            ):
                known = ", ".join((*DEAL_FIELDS, *CONTACT_FIELDS, "custom.NAME"))
                raise ValueError(f"{name!r} is not a field a stage can require ({known})")
        return value


class RepeatInquiry(Section):
    """What a request from a known client becomes in this pipeline."""

    # The contact's last deal here closed (won or lost) within this long: reopen it, or open anew.
    recent_within: Duration = timedelta(days=30)
    on_recent_closed: Literal["reopen", "new"] = "new"
    # The task the owner gets when a request is added to their open deal.
    task: str = "Repeat request from the client"


class Pipeline(Section):
    name: str
    default: bool = False
    first_task: str = "Call the client"
    repeat: RepeatInquiry = RepeatInquiry()
    stages: list[Stage]
    # Moves allowed beyond the next stage, by stage key: ``new = ["proposal"]``. Always
    # allowed: the next stage, any earlier stage, and lost from any stage.
    jumps: dict[str, list[str]] = {}

    @model_validator(mode="after")
    def _stages_make_sense(self) -> Pipeline:
        keys = [s.key for s in self.stages]
        if len(keys) != len(set(keys)):
            raise ValueError("stage keys must be unique within a pipeline")
        if not any(s.kind == "open" for s in self.stages):
            raise ValueError("a pipeline needs at least one open stage")
        for source, targets in self.jumps.items():
            for key in (source, *targets):
                if key not in keys:
                    raise ValueError(f"jumps: no stage {key!r} in this pipeline")
        return self


class AssignmentRule(Section):
    """The first rule whose conditions all hold for a lead picks its owner among ``to``."""

    name: str
    pipeline: str | None = None
    source: str | None = None
    city: str | None = None
    segment: str | None = None
    channel: str | None = None
    to: list[str]

    @field_validator("to")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one user's email")
        return [v.strip().lower() for v in value]


class AssignmentSection(Section):
    rules: list[AssignmentRule] = []


class MatchingSection(Section):
    """How an incoming lead is matched to a known contact."""

    # Match probabilities (hub/domain/weights.py). At or above `join` the lead joins the
    # contact; from `review` up to `join` it gets a new contact flagged as a possible
    # duplicate; below `review`, a new contact.
    join: float = Field(0.99, gt=0, le=1)
    review: float = Field(0.05, gt=0, le=1)
    # The match model `hub dedupe train` writes; relative to the config file's folder.
    # Until it exists the built-in defaults are used.
    model: str = "var/match_model.json"
    # Mailboxes and points that several people share count only as weak evidence.
    generic_mailboxes: list[str] = sorted(GENERIC_MAILBOXES)  # info@, sales@, zakaz@ ...
    shared_after: int = Field(2, ge=2)  # a phone or email already on this many contacts is shared
    shared_phones: list[str] = []  # known office lines, any format
    # Providers that ignore dots and/or "+tag" in the local part, so those are one mailbox.
    dotless_domains: list[str] = ["gmail.com", "googlemail.com"]
    plus_tag_domains: list[str] = [
        "gmail.com",
        "googlemail.com",
        "yandex.ru",
        "ya.ru",
        "outlook.com",
        "hotmail.com",
        "icloud.com",
        "fastmail.com",
    ]

    @model_validator(mode="after")
    def _ordered(self) -> MatchingSection:
        if self.review >= self.join:
            raise ValueError("review must be below join")
        return self


class NotificationsSection(Section):
    """How the notification outbox is delivered (the notifiers are plugins)."""

    # Where a notification's link points; {id} is the deal's id.
    deal_url: str = "http://127.0.0.1:8080/api/v1/deals/{id}"
    # Hours when notifications to people wait (in each user's timezone): "21:00-09:00".
    # Chats and webhooks are not held. A user's own quiet_hours wins.
    quiet_hours: str | None = None
    # Templates here override the built-in ones of the same name (NAME.j2); relative to
    # the config file's folder.
    templates_dir: str | None = None
    # How often the sender looks for due notifications when nothing woke it.
    poll_every: Duration = timedelta(seconds=2)
    # A send not finished this long after it was claimed is taken as cut off by a crash.
    lease: Duration = timedelta(seconds=60)

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str | None) -> str | None:
        return check_hours(value, "quiet_hours")


class CampaignsSection(Section):
    """How campaigns are sent (the segments are ``[segments.NAME]``, the gateways plugins)."""

    # The hub's address as recipients reach it: unsubscribe links point here.
    public_url: str = "http://127.0.0.1:8080"
    # Hours when no campaign message goes out, in each recipient's own timezone (from the
    # phone number's region, else ``timezone``). A campaign may set its own.
    quiet_hours: str | None = "21:00-09:00"
    # The timezone of a recipient whose own is not known; empty: hub.timezone.
    timezone: str | None = None
    # How often the sender looks for due messages when nothing woke it.
    poll_every: Duration = timedelta(seconds=1)
    # A send not finished this long after it was claimed is taken as cut off by a crash.
    lease: Duration = timedelta(seconds=60)
    # Delivery reports the provider's callback has not brought are asked for this often
    # (each gateway's status query), for this long after sending; "0s": never asked.
    ask_reports_every: Duration = timedelta(minutes=5)
    ask_reports_for: Duration = timedelta(hours=72)
    # A recipient's deal created, reopened or won this many days after their message counts
    # for the campaign in its report.
    attribution_days: int = Field(30, ge=1, le=365)

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str | None) -> str | None:
        return check_hours(value, "quiet_hours")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else HubSection._known_timezone(value)

    @field_validator("public_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class RulesSection(Section):
    """When the rules engine's jobs run."""

    # Audits of the whole store (`hub rules audit` on demand); 0s turns the schedule off.
    audit_every: Duration = timedelta(hours=1)


class CatalogSection(Section):
    sources: list[str] = []
    loss_reasons: list[str] = []
    # Loss reasons that also need the competitor the deal went to.
    competitor_reasons: list[str] = []

    @model_validator(mode="after")
    def _reasons_listed(self) -> CatalogSection:
        unknown = [r for r in self.competitor_reasons if r not in self.loss_reasons]
        if unknown:
            raise ValueError(f"competitor_reasons: not in loss_reasons: {', '.join(unknown)}")
        return self


def _default_pipelines() -> dict[str, Pipeline]:
    return {
        "sales": Pipeline(
            name="Sales",
            default=True,
            stages=[
                Stage(key="new", name="New", probability=10, contact_within=timedelta(days=1)),
                Stage(key="won", name="Won", probability=100, kind="won"),
                Stage(key="lost", name="Lost", probability=0, kind="lost"),
            ],
        )
    }


class Settings(BaseSettings):
    """The whole configuration. Plugin sections are checked later by each plugin's model."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    hub: HubSection = HubSection()
    log: LogSection = LogSection()
    store: StoreSection = StoreSection()
    intake: IntakeSection = IntakeSection()
    api: ApiSection = ApiSection()
    users: list[User] = []
    pipelines: dict[str, Pipeline] = Field(default_factory=_default_pipelines)
    catalog: CatalogSection = CatalogSection()
    matching: MatchingSection = MatchingSection()
    assignment: AssignmentSection = AssignmentSection()
    rules: RulesSection = RulesSection()
    notifications: NotificationsSection = NotificationsSection()
    campaigns: CampaignsSection = CampaignsSection()
    segments: dict[str, Audience] = {}
    plugins: dict[str, dict[str, Any]] = {}

    # Where the file was read from; relative paths in it are resolved against its folder.
    config_path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _one_default_pipeline(self) -> Settings:
        defaults = [key for key, p in self.pipelines.items() if p.default]
        if not self.pipelines:
            raise ValueError("pipelines: configure at least one pipeline")
        if len(defaults) > 1:
            raise ValueError(f"pipelines: only one may be default, found {', '.join(defaults)}")
        emails = [u.email for u in self.users]
        dup = {e for e in emails if emails.count(e) > 1}
        if dup:
            raise ValueError(f"users: duplicate email {', '.join(sorted(dup))}")
        active = {u.email for u in self.users if u.active}
        for name, token in self.api.tokens.items():
            if token.role != "manager" or token.user is None:
                continue
            user = token.user.strip().lower()
            if user not in emails:
                raise ValueError(
                    f"api.tokens.{name}.user: {token.user!r} is not under [[users]] "
                    "(a manager token sees that user's records)"
                )
            if user not in active:
                raise ValueError(
                    f"api.tokens.{name}.user: {token.user!r} is not active; "
                    "remove the token or set active = true"
                )
        for rule in self.assignment.rules:
            unknown = [e for e in rule.to if e not in emails]
            if unknown:
                raise ValueError(
                    f"assignment.rules {rule.name!r}: {', '.join(unknown)} not under [[users]]"
                )
            if rule.pipeline and rule.pipeline not in self.pipelines:
                raise ValueError(
                    f"assignment.rules {rule.name!r}: pipeline {rule.pipeline!r} not configured"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def default_pipeline(self) -> str:
        for key, pipeline in self.pipelines.items():
            if pipeline.default:
                return key
        return next(iter(self.pipelines))

    @property
    def attachments_path(self) -> Path:
        path = Path(self.hub.attachments_dir)
        if not path.is_absolute() and self.config_path is not None:
            path = self.config_path.parent / path
        return path

    @property
    def notification_templates_path(self) -> Path | None:
        folder = self.notifications.templates_dir
        if folder is None:
            return None
        path = Path(folder)
        if not path.is_absolute() and self.config_path is not None:
            path = self.config_path.parent / path
        return path

    @property
    def store_url(self) -> str:
        """The store URL with a relative SQLite path resolved against the config's folder."""
        url = self.store.url
        prefix = "sqlite+aiosqlite:///"
        if url.startswith(prefix) and self.config_path is not None:
            path = url[len(prefix) :]
            if path and path != ":memory:" and not os.path.isabs(path):
                return prefix + str((self.config_path.parent / path).resolve())
        return url


# "api.tokens.anna.user: ..." or "assignment.rules 'Опт': ...": the message starts with its key.
_NAMES_ITS_KEY = re.compile(r"^[a-z_]+(?:\.[^:\n]+)?:")


class ConfigError(Exception):
    """An invalid configuration; the message names every bad key and what is wrong."""


def format_validation_error(error: ValidationError, prefix: str = "") -> str:
    lines = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"] if part != "__root__")
        key = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "config"
        message = item["msg"].removeprefix("Value error, ")
        if not loc and not prefix and _NAMES_ITS_KEY.match(message):
            lines.append(message)  # a check across sections names the key itself
            continue
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against config.example.toml)"
        elif item["type"] == "missing":
            message = "required key is missing"
        lines.append(f"{key}: {message}")
    return "\n".join(lines)


def default_config_path() -> Path:
    """``$HUB_CONFIG``, else ``./config.toml``, else ``./config.example.toml``."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    for name in ("config.toml", "config.example.toml"):
        if Path(name).exists():
            return Path(name)
    return Path("config.toml")


def load_settings(path: Path | str | None = None) -> Settings:
    """Read and validate the configuration, raising :class:`ConfigError` when it is invalid."""
    config_path = Path(path) if path is not None else default_config_path()
    if not config_path.exists():
        raise ConfigError(f"{config_path}: configuration file not found")

    class FileSettings(Settings):
        model_config = SettingsConfigDict(toml_file=config_path)

    try:
        settings = FileSettings()
    except ValidationError as error:
        raise ConfigError(format_validation_error(error)) from None
    except ValueError as error:  # TOML syntax
        raise ConfigError(f"{config_path}: {error}") from None
    settings.config_path = config_path.resolve()
    return settings


# -- secrets on a listening address ------------------------------------------------------

EXAMPLE_SECRET = "change-me"
MIN_EXPOSED_SECRET = 32


def secrets_in(value: Any, key: str = "") -> Iterator[tuple[str, SecretStr]]:
    """Every :class:`SecretStr` in a tree of settings, with its key (``api.tokens.head.token``)."""
    if isinstance(value, SecretStr):
        yield key, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from secrets_in(getattr(value, name), f"{key}.{name}" if key else name)
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from secrets_in(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from secrets_in(item, f"{key}[{index}]")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    bare = host.strip().strip("[]").lower()
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False  # a name, "" or "0.0.0.0"-like: assume it is reachable from outside


class Credential(SecretStr):
    """A secret the hub presents to another service (an SMTP password, a bot token): kept out
    of logs like any secret, but its length is that service's business, not the hub's."""


def weak_secrets(secrets: Iterable[tuple[str, SecretStr]]) -> list[str]:
    """One line per secret that is still an example value or too short to guess at."""
    problems = []
    for key, secret in secrets:
        value = secret.get_secret_value()
        hint = "" if "[" in key else f" (e.g. {ENV_PREFIX}{key.upper().replace('.', '__')})"
        if value.strip().lower().startswith(EXAMPLE_SECRET):
            problems.append(
                f"{key}: still the example value; set a real one{hint}"
                if isinstance(secret, Credential)
                else f"{key}: still the example value; set a secret of {MIN_EXPOSED_SECRET} or "
                f"more characters{hint}"
            )
        elif len(value) < MIN_EXPOSED_SECRET and not isinstance(secret, Credential):
            problems.append(
                f"{key}: {len(value)} characters is too short to listen beyond this machine; "
                f"use {MIN_EXPOSED_SECRET} or more{hint}"
            )
    return problems


def check_listen_address(
    settings: Settings, host: str, plugin_secrets: Iterable[tuple[str, SecretStr]] = ()
) -> None:
    """Refuse a non-loopback ``host`` while any secret is an example value or short.

    Loopback stays allowed with any secret, for development. Raises
    :class:`ConfigError` naming every weak key.
    """
    if is_loopback(host):
        return
    problems = weak_secrets([*secrets_in(settings), *plugin_secrets])
    if problems:
        problems.append(
            f"hub.host: {host!r} is reachable from other machines, so the secrets above must be "
            "real; 127.0.0.1 is allowed with any secret, for development"
        )
        raise ConfigError("\n".join(problems))
