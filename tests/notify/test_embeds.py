from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.notify.embeds import (
    CONTENT_RESERVE,
    MAX_PARTS,
    TRUNCATION_MARKER,
    Embed,
    EmbedField,
    Message,
    discord_len,
    plain_text,
    render,
    split_text,
    violations,
)

T0 = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


def units(text: str) -> int:
    """Written independently of the module: UTF-16 code units."""
    return sum(2 if ord(c) > 0xFFFF else 1 for c in text)


def assert_within_limits(body: dict[str, Any]) -> None:
    """Discord's limits, checked independently of engine.notify.embeds.violations."""
    embeds = body.get("embeds", [])
    content = body.get("content", "")
    assert units(content) <= 2000
    assert content.strip() or embeds, "empty message"
    assert len(embeds) <= 10
    total = 0
    for e in embeds:
        title, desc = e.get("title", ""), e.get("description", "")
        footer, author = e.get("footer", {}).get("text", ""), e.get("author", {}).get("name", "")
        assert units(title) <= 256 and units(desc) <= 4096 and units(footer) <= 2048 and units(author) <= 256
        fields = e.get("fields", [])
        assert len(fields) <= 25
        for f in fields:
            assert 0 < units(f["name"]) <= 256 and f["name"].strip()
            assert 0 < units(f["value"]) <= 1024 and f["value"].strip()
            assert isinstance(f["inline"], bool)
        size = units(title) + units(desc) + units(footer) + units(author)
        size += sum(units(f["name"]) + units(f["value"]) for f in fields)
        assert (title + desc + footer + author).strip() or fields, "empty embed"
        total += size
        if "color" in e:
            assert 0 <= e["color"] <= 0xFFFFFF
    assert total <= 6000
    assert violations(body) == []


def descriptions(bodies: list[dict[str, Any]]) -> str:
    return "".join(e.get("description", "") for b in bodies for e in b.get("embeds", []))


def field_values(bodies: list[dict[str, Any]]) -> list[str]:
    return [f["value"] for b in bodies for e in b.get("embeds", []) for f in e.get("fields", [])]


def test_a_small_message_is_one_embed_with_every_part() -> None:
    msg = Message(
        kind="signal",
        title="AAPL long",
        description="entry zone",
        fields=[("entry", 101.5, True), EmbedField("stop", "97.2"), ("target", "110")],
        color=0x2ECC71,
        footer="ATR Matrix",
        timestamp=T0,
        url="https://example.com/aapl",
        author="QuantMatrix",
    )
    [body] = render(msg)
    assert_within_limits(body)
    [embed] = body["embeds"]
    assert embed["title"] == "AAPL long" and embed["description"] == "entry zone"
    assert embed["fields"][0] == {"name": "entry", "value": "101.5", "inline": True}
    assert embed["fields"][1] == {"name": "stop", "value": "97.2", "inline": False}
    assert embed["color"] == 0x2ECC71 and embed["footer"] == {"text": "ATR Matrix"}
    assert embed["timestamp"] == "2026-01-05T15:00:00+00:00" and embed["url"] == "https://example.com/aapl"
    assert embed["author"] == {"name": "QuantMatrix"}
    assert body["allowed_mentions"] == {"parse": []}
    assert "content" not in body


def test_thirty_fields_continue_in_a_second_embed() -> None:
    fields = [(f"f{i}", f"value {i}") for i in range(30)]
    [body] = render(Message(title="many", fields=fields))
    assert_within_limits(body)
    first, second = body["embeds"]
    assert len(first["fields"]) == 25 and len(second["fields"]) == 5
    assert second["title"] == "many (cont.)"
    assert field_values([body]) == [f"value {i}" for i in range(30)]


def test_a_ten_thousand_character_description_is_split_without_loss() -> None:
    text = "\n".join(f"line {i:05d} " + "x" * 40 for i in range(200))  # ~10,000 characters
    assert len(text) > 10_000
    bodies = render(Message(title="long", description=text))
    for b in bodies:
        assert_within_limits(b)
    assert descriptions(bodies) == text
    pieces = [e["description"] for b in bodies for e in b["embeds"]]
    assert len(pieces) == 3 and all(p.endswith("\n") for p in pieces[:-1])  # broken at line ends


def test_twelve_embeds_become_two_messages() -> None:
    embeds = [Embed(title=f"e{i}", description="d" * 10) for i in range(12)]
    bodies = render(Message(embeds=embeds))
    assert [len(b["embeds"]) for b in bodies] == [10, 2]
    for b in bodies:
        assert_within_limits(b)


def test_seven_thousand_characters_across_embeds_become_two_messages() -> None:
    embeds = [Embed(title=f"e{i}", description=str(i) * 1750) for i in range(4)]
    bodies = render(Message(embeds=embeds))
    assert len(bodies) == 2
    for b in bodies:
        assert_within_limits(b)
    assert descriptions(bodies) == "".join(str(i) * 1750 for i in range(4))


def test_a_long_field_value_continues_in_further_fields() -> None:
    value = "word " * 600  # 3000 characters
    [body] = render(Message(fields=[("notes", value, True)]))
    assert_within_limits(body)
    names = [f["name"] for f in body["embeds"][0]["fields"]]
    assert names == ["notes", "notes (cont.)", "notes (cont.)"]
    assert "".join(field_values([body])) == value


def test_text_that_cannot_be_split_is_trimmed_with_a_visible_marker() -> None:
    msg = Message(title="T" * 300, author="A" * 300, footer="F" * 3000, fields=[("N" * 300, "v")])
    [body] = render(msg)
    assert_within_limits(body)
    e = body["embeds"][0]
    for text, limit in ((e["title"], 256), (e["author"]["name"], 256), (e["footer"]["text"], 2048)):
        assert len(text) == limit and text.endswith(TRUNCATION_MARKER)
    assert e["fields"][0]["name"].endswith(TRUNCATION_MARKER)


def test_long_content_is_split_and_leaves_room_for_the_duplicate_note() -> None:
    content = "c" * 5000
    bodies = render(Message(content=content, title="t", description="d"))
    for b in bodies:
        assert_within_limits(b)
        assert len(b.get("content", "")) <= 2000 - CONTENT_RESERVE
    assert "".join(b.get("content", "") for b in bodies) == content
    assert "embeds" not in bodies[0] and bodies[-1]["embeds"][0]["title"] == "t"  # the text first, then the embed


def test_empty_field_names_and_values_are_made_visible() -> None:
    [body] = render(Message(title="t", fields=[("", ""), ("  ", "x")]))
    assert_within_limits(body)


def test_whitespace_only_text_never_makes_an_empty_message_or_embed() -> None:
    msg = Message(
        title="   ", footer="\n", content="a" * 1880 + " " * 3000, embeds=[Embed(title=" ", description="\n\n")]
    )
    bodies = render(msg)
    assert bodies == [{"content": "a" * 1880, "allowed_mentions": {"parse": []}}]
    for b in bodies:
        assert_within_limits(b)


def test_an_empty_message_still_renders_a_valid_body() -> None:
    [body] = render(Message())
    assert_within_limits(body)


def test_astral_characters_count_twice() -> None:
    emoji = "😀" * 3000  # 3000 code points, 6000 UTF-16 units
    assert discord_len(emoji) == 6000
    bodies = render(Message(description=emoji))
    for b in bodies:
        assert_within_limits(b)
    assert descriptions(bodies) == emoji
    assert all(units(p) <= 4000 for p in split_text(emoji, 4000))


def test_a_huge_notification_is_cut_with_a_marker_saying_how_much() -> None:
    bodies = render(Message(description="y" * 200_000))
    assert len(bodies) == MAX_PARTS
    for b in bodies:
        assert_within_limits(b)
    last = bodies[-1]["embeds"][-1]["description"]
    assert last.startswith(TRUNCATION_MARKER)
    missing = 200_000 - descriptions(bodies).count("y")
    assert f"{missing} more characters" in last


def test_invalid_urls_and_colours_never_reach_discord() -> None:
    [body] = render(Message(title="t", url="javascript:alert(1)", color=-1))
    assert "url" not in body["embeds"][0] and 0 <= body["embeds"][0]["color"] <= 0xFFFFFF


def test_plain_text_shows_what_a_reader_sees() -> None:
    text = plain_text(render(Message(title="t", description="d", fields=[("n", "v")], footer="f", content="c")))
    assert text.split("\n") == ["c", "t", "d", "n", "v", "f"]


# --- property: any message renders to bodies Discord accepts, and nothing is lost without a marker ---------

_chars = st.characters(codec="utf-8", exclude_categories=("Cs",))
_piece = st.text(_chars, min_size=0, max_size=40)
_long = st.builds(lambda s, n: s * n, _piece, st.integers(0, 400))
_fields = st.lists(st.tuples(_piece, _long, st.booleans()), max_size=40)
_embed = st.builds(Embed, title=_long, description=_long, fields=_fields, footer=_long, author=_piece)
_message = st.builds(
    Message,
    title=_long,
    description=_long,
    fields=_fields,
    footer=_long,
    content=_long,
    embeds=st.lists(_embed, max_size=12),
    color=st.one_of(st.none(), st.integers(-(2**31), 2**31)),
)


def _squash(text: str) -> str:
    return re.sub(r"[\s\u200b]", "", text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_message)
def test_every_rendered_body_satisfies_every_limit(msg: Message) -> None:
    bodies = render(msg)
    assert 1 <= len(bodies) <= MAX_PARTS
    for b in bodies:
        assert_within_limits(b)
    if any(TRUNCATION_MARKER in plain_text([b]) for b in bodies[-1:]) and len(bodies) == MAX_PARTS:
        return  # cut on purpose, with the marker
    if bodies == render(Message()):
        return  # nothing visible to send: the placeholder
    # Descriptions, field values and content are split, never trimmed: all of their visible text arrives.
    sources = msg.all_embeds()
    assert _squash(descriptions(bodies)) == _squash("".join(e.description for e in sources))
    expected_values = [str(f[1]) for e in sources for f in e.fields]
    assert _squash("".join(field_values(bodies))) == _squash("".join(expected_values))
    assert _squash("".join(b.get("content", "") for b in bodies)) == _squash(msg.content)
