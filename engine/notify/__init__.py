"""Notifications: Discord webhooks behind an outbox (DESIGN §10).

``enqueue`` (or ``OutboxNotifier.notify``) writes a notification to the outbox; ``run_worker`` /
``deliver_due`` send it to the channel's webhook, in order, within Discord's limits, with retries.
"""

from engine.notify.discord import DeliveryReport, deliver_due, run_worker
from engine.notify.embeds import Embed, EmbedField, Message, render
from engine.notify.outbox import CHANNELS, OutboxNotifier, enqueue, requeue_not_configured, status_counts
from engine.notify.ports import MemoryNotifier, Notifier

__all__ = [
    "CHANNELS",
    "DeliveryReport",
    "Embed",
    "EmbedField",
    "MemoryNotifier",
    "Message",
    "Notifier",
    "OutboxNotifier",
    "deliver_due",
    "enqueue",
    "render",
    "requeue_not_configured",
    "run_worker",
    "status_counts",
]
