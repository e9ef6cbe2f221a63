"""Messages and their rendering into Discord webhook bodies that always fit Discord's limits.

A :class:`Message` is one notification: a main embed (title, description, fields, ...), optional extra
embeds and optional plain ``content``. :func:`render` turns it into one or more webhook bodies
(``{"embeds": [...], "content": ...}``), each within every limit Discord enforces, so Discord never
rejects a notification for its size:

- text that is too long for one place is *split*: a long description or field value continues in further
  embeds / fields marked ``(cont.)``; embeds beyond 10 per message or 6000 characters per message go into
  further messages (the outbox stores each as its own row with the sub-key ``key#2``, ``key#3``, ...);
- text that cannot be split (a title, a field name, a footer, an author name) is *trimmed* with the visible
  marker ``…(truncated)``; a notification that would need more than :data:`MAX_PARTS` messages is cut
  there with a final embed saying how many characters were not sent.

Characters are counted as UTF-16 code units (:func:`discord_len`). For text in the Basic Multilingual
Plane that equals Python's ``len``; characters outside it (most emoji) count 2 here. Discord's exact
counting of astral characters is not documented, and UTF-16 units are never fewer than code points, so
this count is the conservative one whichever Discord uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

# Discord's documented limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits).
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
AUTHOR_NAME_MAX = 256
EMBED_TOTAL_MAX = 6000  # summed over all embeds of one message
EMBEDS_PER_MESSAGE_MAX = 10
CONTENT_MAX = 2000
URL_MAX = 2048

MAX_PARTS = 10  # Discord messages one notification may become; the rest is cut with a marker
# Room kept free in ``content`` so the delivery worker can prepend its "possible duplicate" note.
CONTENT_RESERVE = 120
TRUNCATION_MARKER = "…(truncated)"
CONTINUED = " (cont.)"
EMPTY_TEXT = "\u200b"  # zero-width space: Discord rejects empty field names and values

# Embed colours (0xRRGGBB).
GREEN = 0x2ECC71
RED = 0xE74C3C
BLUE = 0x3498DB
ORANGE = 0xE67E22
GREY = 0x95A5A6


def discord_len(text: str) -> int:
    """Length in UTF-16 code units: equals ``len`` for BMP text, counts astral characters (emoji) as 2."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


class EmbedField(NamedTuple):
    name: str
    value: str
    inline: bool = False


FieldLike = EmbedField | tuple[Any, Any] | tuple[Any, Any, bool]


@dataclass(frozen=True)
class Embed:
    title: str = ""
    description: str = ""
    fields: Sequence[FieldLike] = ()
    color: int | None = None
    footer: str = ""
    timestamp: datetime | None = None
    url: str | None = None
    author: str = ""


@dataclass(frozen=True)
class Message:
    """One notification. The keyword fields build the main embed; ``embeds`` follow it; ``content`` is
    plain text shown above the embeds. ``kind`` says what it is about (signal, fill, morning_brew, test...)."""

    title: str = ""
    description: str = ""
    fields: Sequence[FieldLike] = ()
    color: int | None = None
    footer: str = ""
    timestamp: datetime | None = None
    url: str | None = None
    author: str = ""
    embeds: Sequence[Embed] = ()
    content: str = ""
    kind: str = "info"

    def all_embeds(self) -> list[Embed]:
        main = Embed(
            self.title, self.description, self.fields, self.color, self.footer, self.timestamp, self.url, self.author
        )
        return ([main] if _has_text(main) else []) + list(self.embeds)


def _has_text(embed: Embed) -> bool:
    return bool(embed.fields) or any(t.strip() for t in (embed.title, embed.description, embed.footer, embed.author))


# --- text helpers -----------------------------------------------------------------------------------


def _prefix_len(text: str, budget: int) -> int:
    """Number of characters of ``text`` whose discord_len fits ``budget``."""
    if text.isascii() or discord_len(text) == len(text):
        return min(len(text), max(budget, 0))
    used = 0
    for i, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > budget:
            return i
    return len(text)


def trim(text: str, limit: int, marker: str = TRUNCATION_MARKER) -> str:
    """``text`` if it fits ``limit``, else its start followed by a visible marker, within ``limit``."""
    if discord_len(text) <= limit:
        return text
    return text[: _prefix_len(text, limit - discord_len(marker))] + marker


def split_text(text: str, limit: int) -> list[str]:
    """Pieces of at most ``limit`` units whose concatenation is ``text``; breaks at a line end, else at a
    space, else anywhere (never inside a character)."""
    pieces: list[str] = []
    rest = text
    while discord_len(rest) > limit:
        cut = _prefix_len(rest, limit)
        head = rest[:cut]
        brk = head.rfind("\n")
        if brk < cut // 2:  # a break too early would make many tiny pieces: try a space instead
            brk = max(brk, head.rfind(" "))
        if brk >= cut // 2 and brk > 0:
            cut = brk + 1  # the separator stays with the earlier piece
        pieces.append(rest[:cut])
        rest = rest[cut:]
    if rest or not pieces:
        pieces.append(rest)
    return pieces


def _nonempty(text: str) -> str:
    return text if text.strip() else EMPTY_TEXT


# --- embed rendering --------------------------------------------------------------------------------


def embed_len(embed: dict[str, Any]) -> int:
    """Characters of one embed as Discord counts them towards the 6000 limit."""
    total = discord_len(embed.get("title", "")) + discord_len(embed.get("description", ""))
    total += discord_len(embed.get("footer", {}).get("text", "")) + discord_len(embed.get("author", {}).get("name", ""))
    for f in embed.get("fields", []):
        total += discord_len(f["name"]) + discord_len(f["value"])
    return total


def _as_field(raw: FieldLike) -> EmbedField:
    if isinstance(raw, EmbedField):
        return EmbedField(str(raw.name), str(raw.value), bool(raw.inline))
    name, value, *rest = raw
    return EmbedField(str(name), str(value), bool(rest[0]) if rest else False)


def _timestamp(ts: datetime) -> str:
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def _valid_url(url: str | None) -> bool:
    return bool(url) and url.startswith(("https://", "http://")) and len(url) <= URL_MAX  # type: ignore[union-attr]


def _render_embed(src: Embed) -> list[dict[str, Any]]:
    """One source embed as one or more Discord embeds, each within the per-embed limits and 6000 total."""
    # Whitespace-only text is left out: Discord treats it as empty.
    title = trim(src.title, TITLE_MAX) if src.title.strip() else ""
    cont_title = (trim(src.title, TITLE_MAX - len(CONTINUED)) + CONTINUED) if title else ""
    color = (int(src.color) & 0xFFFFFF) if src.color is not None else None
    chunks: list[dict[str, Any]] = []

    def new_chunk() -> dict[str, Any]:
        chunk: dict[str, Any] = {}
        if not chunks:
            if title:
                chunk["title"] = title
            if src.author.strip():
                chunk["author"] = {"name": trim(src.author, AUTHOR_NAME_MAX)}
            if _valid_url(src.url):
                chunk["url"] = src.url
        elif cont_title:
            chunk["title"] = cont_title
        if color is not None:
            chunk["color"] = color
        chunks.append(chunk)
        return chunk

    chunk = new_chunk()
    if src.description.strip():
        for piece in split_text(src.description, DESCRIPTION_MAX):
            if not piece.strip():
                continue  # whitespace only: nothing visible is lost
            if "description" in chunk or chunk.get("fields"):
                chunk = new_chunk()
            chunk["description"] = piece
    for raw in src.fields:
        f = _as_field(raw)
        name = _nonempty(trim(f.name, FIELD_NAME_MAX))
        cont_name = trim(f.name, FIELD_NAME_MAX - len(CONTINUED)) + CONTINUED
        for i, piece in enumerate(split_text(f.value, FIELD_VALUE_MAX)):
            item = {"name": name if i == 0 else cont_name, "value": _nonempty(piece), "inline": f.inline}
            size = discord_len(item["name"]) + discord_len(item["value"])
            if len(chunk.get("fields", [])) >= FIELDS_MAX or embed_len(chunk) + size > EMBED_TOTAL_MAX:
                chunk = new_chunk()
            chunk.setdefault("fields", []).append(item)
    if src.footer.strip():
        footer = {"text": trim(src.footer, FOOTER_MAX)}
        if embed_len(chunk) + discord_len(footer["text"]) > EMBED_TOTAL_MAX:
            chunk = new_chunk()
        chunk["footer"] = footer
    if src.timestamp is not None:
        chunk["timestamp"] = _timestamp(src.timestamp)
    # Drop a chunk with no visible text (a source embed with only a colour or a timestamp): Discord
    # rejects empty embeds.
    return [c for c in chunks if plain_text([{"embeds": [c]}]).strip()]


def _text_of(body: dict[str, Any]) -> int:
    return discord_len(body.get("content", "")) + sum(embed_len(e) for e in body.get("embeds", []))


def render(message: Message) -> list[dict[str, Any]]:
    """Discord webhook bodies for ``message``, in order; each satisfies every limit (see :func:`violations`)."""
    embeds = [e for src in message.all_embeds() for e in _render_embed(src)]
    groups: list[list[dict[str, Any]]] = []
    for e in embeds:
        if (
            not groups
            or len(groups[-1]) >= EMBEDS_PER_MESSAGE_MAX
            or sum(embed_len(x) for x in groups[-1]) + embed_len(e) > EMBED_TOTAL_MAX
        ):
            groups.append([])
        groups[-1].append(e)
    contents = [c for c in split_text(message.content, CONTENT_MAX - CONTENT_RESERVE) if c.strip()]

    # Content first (it introduces the embeds), the last content piece shares a message with the first embeds.
    bodies: list[dict[str, Any]] = [{"content": c} for c in contents]
    for i, group in enumerate(groups):
        if i == 0 and bodies:
            bodies[-1]["embeds"] = group
        else:
            bodies.append({"embeds": group})
    if not bodies:
        bodies = [{"embeds": [{"description": "(empty notification)"}]}]
    if len(bodies) > MAX_PARTS:
        bodies = _cut(bodies)
    for body in bodies:
        body["allowed_mentions"] = {"parse": []}  # an alert never pings @everyone or a role by accident
    return bodies


def _cut(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep MAX_PARTS messages; the last one ends with an embed saying how much was not sent."""
    kept, dropped = bodies[:MAX_PARTS], bodies[MAX_PARTS:]
    lost = sum(_text_of(b) for b in dropped)
    last = kept[-1]
    embeds = list(last.get("embeds", []))

    def marker() -> dict[str, Any]:
        return {"description": f"{TRUNCATION_MARKER} {lost} more characters of this notification were not sent"}

    while embeds and (
        len(embeds) >= EMBEDS_PER_MESSAGE_MAX
        or sum(embed_len(e) for e in embeds) + embed_len(marker()) > EMBED_TOTAL_MAX
    ):
        lost += embed_len(embeds.pop())
    last["embeds"] = [*embeds, marker()]
    return kept


def violations(body: dict[str, Any]) -> list[str]:
    """Every Discord limit ``body`` breaks (empty when it is fine)."""
    out: list[str] = []
    content = body.get("content", "")
    embeds = body.get("embeds", [])
    if discord_len(content) > CONTENT_MAX:
        out.append(f"content {discord_len(content)} > {CONTENT_MAX}")
    if not content.strip() and not embeds:
        out.append("empty message")
    if len(embeds) > EMBEDS_PER_MESSAGE_MAX:
        out.append(f"{len(embeds)} embeds > {EMBEDS_PER_MESSAGE_MAX}")
    total = sum(embed_len(e) for e in embeds)
    if total > EMBED_TOTAL_MAX:
        out.append(f"embeds total {total} > {EMBED_TOTAL_MAX}")
    for i, e in enumerate(embeds):
        checks = [
            ("title", discord_len(e.get("title", "")), TITLE_MAX),
            ("description", discord_len(e.get("description", "")), DESCRIPTION_MAX),
            ("footer", discord_len(e.get("footer", {}).get("text", "")), FOOTER_MAX),
            ("author", discord_len(e.get("author", {}).get("name", "")), AUTHOR_NAME_MAX),
            ("fields", len(e.get("fields", [])), FIELDS_MAX),
        ]
        out += [f"embed {i} {what} {n} > {limit}" for what, n, limit in checks if n > limit]
        for j, f in enumerate(e.get("fields", [])):
            if not 0 < discord_len(f["name"]) <= FIELD_NAME_MAX or not f["name"].strip():
                out.append(f"embed {i} field {j} name length {discord_len(f['name'])}")
            if not 0 < discord_len(f["value"]) <= FIELD_VALUE_MAX or not f["value"].strip():
                out.append(f"embed {i} field {j} value length {discord_len(f['value'])}")
        if not plain_text([{"embeds": [e]}]).strip():
            out.append(f"embed {i} is empty")
    return out


def plain_text(bodies: Iterable[dict[str, Any]]) -> str:
    """All visible text of rendered bodies, in order (for previews in the console and for tests)."""
    parts: list[str] = []
    for body in bodies:
        if body.get("content"):
            parts.append(body["content"])
        for e in body.get("embeds", []):
            parts += [e.get("author", {}).get("name", ""), e.get("title", ""), e.get("description", "")]
            for f in e.get("fields", []):
                parts += [f["name"], f["value"]]
            parts.append(e.get("footer", {}).get("text", ""))
    return "\n".join(p for p in parts if p)


def sample_message(channel: str, now: datetime | None = None) -> Message:
    """The message ``notify test`` posts to a channel."""
    now = now or datetime.now(UTC)
    return Message(
        kind="test",
        title=f"QuantMatrix test message: {channel}",
        description="If you can read this, the webhook for this channel works.",
        fields=[
            EmbedField("channel", channel, True),
            EmbedField("sent at", now.strftime("%Y-%m-%d %H:%M:%S UTC"), True),
        ],
        color=BLUE,
        footer="QuantMatrix",
        timestamp=now,
    )


__all__ = [
    "BLUE",
    "GREEN",
    "GREY",
    "ORANGE",
    "RED",
    "TRUNCATION_MARKER",
    "Embed",
    "EmbedField",
    "Message",
    "discord_len",
    "plain_text",
    "render",
    "split_text",
    "trim",
    "violations",
]
