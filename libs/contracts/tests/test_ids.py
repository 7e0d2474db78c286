"""One id alphabet: every id-carrying Struct enforces it, and subjects refuse the rest."""

from __future__ import annotations

import inspect
from typing import Any

import msgspec
import pytest

from chat_contracts import bus, client, ids, subjects

#: What an attacker sent in the review: wildcards, a subject separator, a space, a
#: trailing newline (Python's `$` matches before it), a non-ASCII digit, too long.
BAD_IDS = ["*", ">", "a.b", "bob x", "bob\n", "", "²", "é", "a" * 129, "a\tb", "rt.user.>"]
GOOD_IDS = ["a", "alice", "g_0192ab", "c_1", "A-b_9", "x" * 128]


@pytest.mark.parametrize("value", GOOD_IDS)
def test_the_alphabet_accepts_our_ids(value: str) -> None:
    assert ids.is_valid_id(value)
    assert ids.check_id(value) == value
    assert msgspec.convert({"userId": value}, client.UserRef).user_id == value


@pytest.mark.parametrize("value", BAD_IDS)
def test_the_alphabet_refuses_the_rest(value: str) -> None:
    assert not ids.is_valid_id(value)
    with pytest.raises(ValueError, match="not a valid id"):
        ids.check_id(value)
    with pytest.raises(msgspec.ValidationError, match=r"\$\.userId"):
        msgspec.convert({"userId": value}, client.UserRef)


def test_a_token_sub_that_is_not_a_string_is_not_an_id() -> None:
    assert not ids.is_valid_id(None)
    assert not ids.is_valid_id(42)


def test_typing_at_a_wildcard_user_is_refused_naming_the_field() -> None:
    # The review's reproduction: `typing:start {targetUserId:"*"}` reached `rt.user.*`.
    with pytest.raises(msgspec.ValidationError, match=r"\$\.targetUserId"):
        msgspec.json.decode(b'{"targetUserId":"*"}', type=client.TypingChange)


def _id_fields(kind: type[msgspec.Struct]) -> list[tuple[str, Any]]:
    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    return [
        (f.name, f.type)
        for f in info.fields
        if f.name.endswith(("_id", "_ids", "_by")) and f.name not in _NOT_IDS
    ]


#: Fields whose names end like ids but hold something else.
_NOT_IDS = {"origin_sid", "read_by"}


def _is_id(t: Any) -> bool:
    if isinstance(t, msgspec.inspect.Metadata):
        return _is_id(t.type)
    if isinstance(t, msgspec.inspect.UnionType):
        return all(_is_id(x) for x in t.types if not isinstance(x, msgspec.inspect.NoneType))
    if isinstance(t, msgspec.inspect.ListType):
        return _is_id(t.item_type)
    return isinstance(t, msgspec.inspect.StrType) and t.pattern == ids.ID_PATTERN


def _structs(module: Any) -> list[type[msgspec.Struct]]:
    return [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, msgspec.Struct)
        and obj.__module__ == module.__name__
        # Fanout is built only by our publishers and hands ids to `subjects.room`,
        # which checks them; validating it on every delivery would tax the hot path.
        and obj is not bus.Fanout
    ]


@pytest.mark.parametrize(
    "kind", _structs(client) + _structs(bus), ids=lambda k: f"{k.__module__}.{k.__name__}"
)
def test_every_id_field_of_a_client_payload_or_bus_query_uses_the_alphabet(
    kind: type[msgspec.Struct],
) -> None:
    for name, t in _id_fields(kind):
        assert _is_id(t), f"{kind.__name__}.{name} is not an `Id`"


def test_the_actor_is_an_id_too() -> None:
    decoder = msgspec.msgpack.Decoder(bus.Actor)
    with pytest.raises(msgspec.ValidationError):
        decoder.decode(msgspec.msgpack.encode(["bob x", "Bob"]))


@pytest.mark.parametrize("value", BAD_IDS)
def test_subjects_refuse_ids_outside_the_alphabet(value: str) -> None:
    with pytest.raises(ValueError, match="not a valid id"):
        subjects.user(value)
    with pytest.raises(ValueError, match="not a valid id"):
        subjects.room(value)


@pytest.mark.parametrize(
    ("domain", "action"), [("messages", "*"), ("messages", ">"), ("Messages", "send"), ("a.b", "c")]
)
def test_command_subjects_refuse_names_outside_their_alphabet(domain: str, action: str) -> None:
    with pytest.raises(ValueError, match="not a subject name"):
        subjects.command(domain, action)


def test_subjects_of_valid_ids() -> None:
    assert subjects.user("alice") == "rt.user.alice"
    assert subjects.room("g_1") == "rt.room.g_1"
    assert subjects.command("groups", "member_add") == "cmd.groups.member_add"
    assert subjects.commands_of("groups") == "cmd.groups.*"
    assert subjects.GROUP_MEMBERSHIP_CHANGED == "evt.groups.membership"


def test_chat_kinds_by_prefix() -> None:
    assert ids.is_group("g_1")
    assert not ids.is_conversation("g_1")
    assert ids.is_conversation("c_1")
    assert not ids.is_group("c_1")


def test_the_field_scan_sees_the_id_fields() -> None:
    # Guards the scan above against passing vacuously.
    names = {name for name, _ in _id_fields(client.MessageSend)}
    assert {"client_message_id", "reply_to_id", "group_id", "target_user_id"} <= names
    assert {name for name, _ in _id_fields(bus.Members)} == {"user_ids"}
