"""Mango Office's recordings: a link to play each, signed on the spot when a manager listens.

``GET <api_url>/queries/recording/link/<recording_id>/play/<vpbx_api_key>/<expires>/<sign>``
with ``sign = hex(SHA-256(vpbx_api_key + expires + recording_id + vpbx_api_salt))`` and
``expires`` the unix time the link stops working: a GET link the VPBX serves without
any other authorization, so nothing is asked of Mango until the manager's player
follows it. The hub signs one valid for ``recording_link_for`` each time.

The VPBX serves these links only once "ссылки на записи без авторизации" is enabled in
its personal account (off by default, the API document says); otherwise Mango answers
the manager's player with an error. The link names the API key (never the salt): a
manager who can listen can read it.

Sources (read 2025-11):

- github.com/Bobrovskih/mango-vpbx ``src/helpers/sign.js`` (the recording link's sign:
  ``apiKey + json.expires + json.recording_id + apiSalt``), ``test/vpbx.spec.js`` and
  ``test/helpers.spec.js`` (links with their expected signs, the URL's shape with the
  ``play`` action), ``src/urls.js`` (``https://app.mango-office.ru/vpbx/``).
- A public summary of the official "MangoOffice_VPBX_API" PDF (dated 16.02.2026):
  ``/vpbx/queries/recording/link/[recording_id]/[action]/[vpbx_api_key]/[timestamp]/[sign]``,
  ``action`` download | play, the sign formula, the account setting that enables it;
  ``events/recording`` with ``recording_state`` Started | Continued | Completed,
  ``completion_code`` and ``recipient``.

Not verified: whether the VPBX wants a ``/`` inside a recording id percent-encoded (ids
seen are base64 without one; the hub encodes ``/`` and keeps ``=`` and ``+`` as the
examples do), and the time zone of ``expires`` (the summary says "UTC+3"; the examples
use plain unix seconds, as the hub does).
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote

from hub.store.types import utcnow
from plugins.telephony_mango.config import MangoConfig
from plugins.telephony_mango.events import PROVIDER

ACTION = "play"  # the player streams it; "download" would save the file instead


def link_sign(api_key: str, expires: int, recording_id: str, api_salt: str) -> str:
    """The ``sign`` of a recording link."""
    text = f"{api_key}{expires}{recording_id}{api_salt}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def recording_link(
    api_url: str, api_key: str, api_salt: str, recording_id: str, expires: int
) -> str:
    """The link that plays ``recording_id`` until ``expires`` (unix seconds)."""
    sign = link_sign(api_key, expires, recording_id, api_salt)
    path = "/".join(
        [quote(recording_id, safe="=+"), ACTION, quote(api_key, safe=""), str(expires), sign]
    )
    return f"{api_url}/queries/recording/link/{path}"


class MangoRecordings:
    """The :class:`~plugins.telephony.recordings.RecordingSource` of Mango Office calls."""

    provider = PROVIDER

    def __init__(self, config: MangoConfig) -> None:
        self.config = config

    async def listen_link(self, recording_id: str) -> str:
        expires = int((utcnow() + self.config.recording_link_for).timestamp())
        return recording_link(
            self.config.api_url,
            self.config.api_key.get_secret_value(),
            self.config.api_salt.get_secret_value(),
            recording_id,
            expires,
        )
