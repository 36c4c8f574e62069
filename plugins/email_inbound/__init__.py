"""Inbound email channel: mailboxes to leads, replies to their deals, mail sent from a deal.

``[plugins.email_inbound]`` names any number of IMAP mailboxes (:mod:`.config`); each is
read exactly once (:mod:`.mailbox`), every letter stored through the intake before it is
flagged on the server, then understood (:mod:`.message`, :mod:`.signature`) and filed
(:mod:`.filing`): a reply on its deal, a new sender's request as a lead, the rest skipped
with the reason (:mod:`.skipping`). Where mail is forwarded instead, an SMTP listener
takes it into the same intake (:mod:`.smtp_intake`, off by default). Managers write to
clients from a deal (:mod:`.sending`).
"""

from plugins.email_inbound.channel import EmailInbound
from plugins.email_inbound.config import EmailInboundConfig

__all__ = ["EmailInbound", "EmailInboundConfig"]
