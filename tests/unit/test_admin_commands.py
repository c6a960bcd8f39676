"""The admin commands' typed requests and results, without a node: what each request accepts,
the exact line each bad one gets, and the maps the results send back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from plexinode.admin.fields import TEXT, Anything, Fields, MapOf, Refused, arg
from plexinode.admin.requests import (
    AddressText,
    AuthorityInfoRequest,
    AuthoritySubmitRequest,
    DhtGetRequest,
    InviteRequest,
    JoinRequest,
    NetworkKeyRequest,
    NoArguments,
    NodeIdText,
    PingRequest,
    ResolveRequest,
    StateSetRequest,
    TagsSetRequest,
)
from plexinode.admin.results import (
    AuthorityAdded,
    AuthorityInfo,
    ConfigRow,
    Document,
    Invited,
    Joined,
    Left,
    NetworkKeys,
    NodeIdResult,
    PingResult,
    Records,
    Resolved,
    Rows,
    Status,
    Stopped,
    config_rows,
)
from plexinode.dht.record_types import PEER, PROVIDER
from plexinode.errors import AdminError, DecodeError
from plexinode.identity import Identity
from plexinode.net.address import Address
from plexinode.net.keyring import key_id
from plexinode.wire.schema import Int

NODE = Identity.from_seed(bytes(32)).node_id
KEY_A, KEY_B = bytes(range(32)), bytes(range(1, 33))


def refused(match: str, build: Any, *args: Any) -> None:
    with pytest.raises(AdminError, match=match):
        build(*args)


# -- fields -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample(Fields):
    name: str = arg(TEXT)
    count: int = arg(Int(0, 9), default=1)
    note: str = arg(TEXT, default="", error="a note is text")
    sizes: dict[str, int] = arg(MapOf(Int()), default=None)  # noqa: RUF009


@dataclass(frozen=True, slots=True)
class Strict(Fields):
    EXTRA_KEYS = False
    name: str = arg(TEXT, error="a name, please")


def test_fields_from_and_to_maps() -> None:
    sample = Sample.from_map({"name": "x", "sizes": {"a": 1}, "unknown": 5}, where="w")
    assert sample == Sample("x", 1, "", {"a": 1})
    assert sample.to_map() == {"name": "x", "count": 1, "note": "", "sizes": {"a": 1}}
    with pytest.raises(AdminError, match=r"^w: name is missing$"):
        Sample.from_map({}, where="w")
    with pytest.raises(AdminError, match=r"^w: count: expected an integer in \[0, 9\]$"):
        Sample.from_map({"name": "x", "count": 10}, where="w")
    with pytest.raises(AdminError, match=r"^a note is text$"):
        Sample.from_map({"name": "x", "note": 1}, where="w")
    with pytest.raises(AdminError, match=r"^w: sizes: expected a map with text keys$"):
        Sample.from_map({"name": "x", "sizes": {1: 1}}, where="w")
    with pytest.raises(AdminError, match=r"^w: sizes: expected a map with text keys$"):
        Sample.from_map({"name": "x", "sizes": [1]}, where="w")
    with pytest.raises(AdminError, match=r"^w: unexpected extra, more$"):
        Strict.from_map({"name": "x", "more": 1, "extra": 2}, where="w")
    with pytest.raises(AdminError, match=r"^a name, please$"):
        Strict.from_map({}, where="w")
    assert Strict.from_map({"name": "x"}, where="w") == Strict("x")


def test_checks() -> None:
    assert TEXT("é") == "é"
    with pytest.raises(DecodeError, match="expected text"):
        TEXT(b"x")
    assert Anything()(object) is object
    assert MapOf()({"a": [1]}) == {"a": [1]}
    assert MapOf(Int()).encode({"a": 1}) == {"a": 1}
    assert NodeIdText()(str(NODE)) == NODE
    assert NodeIdText().encode(NODE) == str(NODE)
    with pytest.raises(Refused, match="invalid node ID 'x'"):
        NodeIdText()("x")
    with pytest.raises(DecodeError, match="expected a node ID"):
        NodeIdText()(1)
    assert AddressText()("10.0.0.1:7") == Address("10.0.0.1", 7)
    assert AddressText().encode(Address("10.0.0.1", 7)) == "10.0.0.1:7"
    with pytest.raises(Refused, match="expected HOST:PORT"):
        AddressText()("10.0.0.1")
    with pytest.raises(DecodeError, match="expected HOST:PORT"):
        AddressText()(7)


# -- requests ---------------------------------------------------------------------------------


def test_no_arguments_ignores_what_it_is_sent() -> None:
    assert NoArguments.parse("status", {"verbose": True}) == NoArguments()


def test_ping() -> None:
    assert PingRequest.parse("ping", {"address": "10.0.0.1:7"}) == PingRequest(
        Address("10.0.0.1", 7), None, "datagram"
    )
    by_id = PingRequest.parse("ping", {"node_id": str(NODE), "via": "stream"})
    assert (by_id.address, by_id.node_id, by_id.via) == (None, NODE, "stream")
    refused("^ping needs an address or a node ID$", PingRequest.parse, "ping", {})
    refused("^ping needs an address or a node ID$", PingRequest.parse, "ping", {"address": None})
    refused("^invalid address '10.0.0.1'", PingRequest.parse, "ping", {"address": "10.0.0.1"})
    refused("^invalid node ID 'x'", PingRequest.parse, "ping", {"node_id": "x"})
    refused(
        "^invalid arguments for ping: unknown ping transport 'pigeon'$",
        PingRequest.parse,
        "ping",
        {"node_id": str(NODE), "via": "pigeon"},
    )
    refused(
        "^invalid arguments for ping: address: expected HOST:PORT$",
        PingRequest.parse,
        "ping",
        {"address": 7},
    )


@dataclass(frozen=True)
class RecordType:
    code: int
    name: str


TYPES = [RecordType(PEER, "peer"), RecordType(PROVIDER, "provider")]


def test_dht_get() -> None:
    peer = DhtGetRequest.parse("dht_get", {"type": "peer", "key": str(NODE)})
    assert peer.record_key(TYPES) == (PEER, NODE.raw)
    provider = DhtGetRequest.parse("dht_get", {"type": "provider", "key": "ab" * 32})
    assert provider.record_key(TYPES) == (PROVIDER, b"\xab" * 32)
    refused(
        r"^unknown record type '' \(known: peer, provider\)$",
        DhtGetRequest.parse("dht_get", {}).record_key,
        TYPES,
    )
    refused("^invalid node ID 'x'", DhtGetRequest("peer", "x").record_key, TYPES)
    for key in ("abc", "zz" * 32, "ab" * 31):
        refused(
            "^a provider key is 32 bytes: 64 hex digits$",
            DhtGetRequest("provider", key).record_key,
            TYPES,
        )
    refused(
        "^invalid arguments for dht_get: key: expected text$",
        DhtGetRequest.parse,
        "dht_get",
        {"key": 5},
    )


def test_state_set() -> None:
    written = StateSetRequest.parse("state_set", {"key": "site.motd", "value": "hé"})
    assert written.encoded == "hé".encode()
    assert StateSetRequest.parse("state_set", {"key": "site.motd"}).encoded is None
    refused(
        r"^keys under 'net\.' are the node's own \(see `network key`\)$",
        StateSetRequest.parse,
        "state_set",
        {"key": "net.keyring", "value": "{}"},
    )
    refused("^a state value is text$", StateSetRequest.parse, "state_set", {"key": "k", "value": 5})


def test_tags_set() -> None:
    reserved = {"version", "keys"}
    tags = {"version": "1", "role": "relay"}
    set_site = TagsSetRequest.parse("tags_set", {"key": "site", "value": "lab"})
    assert set_site.apply(tags, reserved) == {"version": "1", "role": "relay", "site": "lab"}
    assert tags == {"version": "1", "role": "relay"}  # not changed in place
    assert TagsSetRequest("role").apply(tags, reserved) == {"version": "1"}
    refused("^this node has no 'site' tag$", TagsSetRequest("site").apply, tags, reserved)
    refused(
        r"^the 'version' tag is set by the node itself \(reserved: keys, version\)$",
        TagsSetRequest("version", "2").apply,
        tags,
        reserved,
    )
    for args in ({}, {"value": "x"}, {"key": 1}, {"key": "a", "value": 1}):
        refused("^a tag is a text key and a text value$", TagsSetRequest.parse, "tags_set", args)


def test_each_tag_rule_has_its_own_message() -> None:
    reserved = {"version", "capacity", "keys"}
    mine = {"version": "1", "capacity": "10", "keys": "0123456789ab"}
    assert TagsSetRequest("name", "kitchen").apply(mine, reserved)["name"] == "kitchen"
    # The same tags again: the caller sees nothing changed (and the node does not bump).
    again = TagsSetRequest("role", "x").apply({**mine, "role": "x"}, reserved)
    assert again == {**mine, "role": "x"}
    for key in ("my role", "a=b", "a,b", "Role", "-x", "k" * 33, ""):
        refused(
            r"^a tag key is 1-32 characters of a-z, 0-9, '\.', '_', '-' \(starting with a "
            r"letter or digit\), not ",
            TagsSetRequest(key, "v").apply,
            mine,
            reserved,
        )
    assert TagsSetRequest("a.b_c-9", "v" * 64).apply(mine, reserved)["a.b_c-9"] == "v" * 64
    refused(
        "^a tag value is at most 64 characters, not 65$",
        TagsSetRequest("role", "v" * 65).apply,
        mine,
        reserved,
    )
    refused(
        "^a tag value is printable text",
        TagsSetRequest("role", "a\tb").apply,
        mine,
        reserved,
    )
    full = {**mine, **{f"t{i}": "v" for i in range(5)}}
    assert TagsSetRequest("t0", "w").apply(full, reserved)["t0"] == "w"  # a change, not a new one
    refused(
        r"^this node has 8 tags, the most a member may carry \(8, of which 3 are set by the "
        r"node: 5 are yours\); remove one first$",
        TagsSetRequest("more", "v").apply,
        full,
        reserved,
    )
    big = {**mine, "a": "v" * 64, "b": "v" * 64, "c": "v" * 64}
    refused(
        r"^the tags would take 2\d\d bytes, more than the 256 a member's tags may take "
        r"together \(\d+ bytes are free\)$",
        TagsSetRequest("d", "v" * 64).apply,
        big,
        reserved,
    )
    refused("^this node has no 'nosuch' tag$", TagsSetRequest("nosuch").apply, mine, reserved)


def test_resolve() -> None:
    other = Identity.from_seed(bytes([1]) * 32).node_id
    text = str(NODE)
    request = ResolveRequest.parse("resolve", {"prefix": text[:8].upper()})
    assert request.matches([NODE, other, NODE]) == [text]
    assert ResolveRequest(text[:4] + "-" + text[4:10]).matches([other]) == []
    assert ResolveRequest(text).matches([NODE]) == [text]
    refused(
        "^invalid node ID 'abc': a node ID is 58 characters, a prefix of one at least 8$",
        ResolveRequest.parse,
        "resolve",
        {"prefix": "abc"},
    )
    refused("only letters a-z and digits 2-7", ResolveRequest, "abcdefg1")
    refused("^a node ID prefix is text$", ResolveRequest.parse, "resolve", {"prefix": 5})
    assert Resolved((text,)).to_result() == {"matches": [text]}


def test_invite_and_join() -> None:
    assert InviteRequest.parse("invite", {}).expires == 86_400.0
    assert InviteRequest.parse("invite", {"expires": 600}).expires == 600.0
    for bad in (0, -1, 30 * 86_400 + 1, 10**9, True, "1h"):
        refused(
            "^expires must be above 0 and at most 30 days$",
            InviteRequest.parse,
            "invite",
            {"expires": bad},
        )
    assert JoinRequest.parse("join", {"token": "T"}).token == "T"
    assert JoinRequest.parse("join", {}).token == ""


def test_network_key() -> None:
    listing = NetworkKeyRequest.parse("network_key", {})
    assert (listing.action, listing.key, listing.force) == ("list", None, False)
    installed = [KEY_A, KEY_B]
    install = NetworkKeyRequest.parse("network_key", {"action": "install", "key": KEY_B.hex()})
    assert install.find_key([]) == KEY_B
    refused(
        "^a network key is 32 bytes written as 64 hex digits$",
        NetworkKeyRequest("install", key_id(KEY_A)).find_key,
        installed,
    )
    use = NetworkKeyRequest.parse(
        "network_key", {"action": "use", "key": f" {key_id(KEY_B).upper()} ", "force": True}
    )
    assert use.force is True
    assert use.find_key(installed) == KEY_B
    assert NetworkKeyRequest("remove", KEY_A.hex()).find_key([]) == KEY_A  # given in full
    refused(
        r"^no installed key has the id 'ffffffffffff' \(see `network key list`\)$",
        NetworkKeyRequest("use", "ffffffffffff").find_key,
        installed,
    )
    refused("^unknown network key action 'dance'$", NetworkKeyRequest, "dance", "k")
    refused("^network key remove needs a key$", NetworkKeyRequest, "remove")
    refused(
        "^invalid arguments for network_key: force: expected a boolean$",
        NetworkKeyRequest.parse,
        "network_key",
        {"force": 1},
    )


def test_authority_requests() -> None:
    assert AuthorityInfoRequest.parse("authority_info", {}).node_id is None
    assert AuthorityInfoRequest.parse("authority_info", {"node_id": str(NODE)}).node_id == NODE
    refused(
        "^invalid node ID 'nope'", AuthorityInfoRequest.parse, "authority_info", {"node_id": "nope"}
    )
    submitted = AuthoritySubmitRequest.parse("authority_submit", {"statements": ["00ff"]})
    assert submitted.encoded() == [b"\x00\xff"]
    bad = AuthoritySubmitRequest.parse("authority_submit", {"statements": ["zz"]})
    refused("^a statement is not hex$", bad.encoded)
    refused(
        "^statements are a list of hex texts$",
        AuthoritySubmitRequest.parse,
        "authority_submit",
        {"statements": "00"},
    )


# -- results ----------------------------------------------------------------------------------


def test_results_are_the_maps_the_cli_reads() -> None:
    assert NodeIdResult("n").to_result() == {"node_id": "n"}
    assert Stopped(stopped=True, pid=7).to_result() == {"stopped": True, "pid": 7}
    assert Rows(({"a": 1},)).to_result() == [{"a": 1}]
    assert Document({"role": "relay"}).to_result() == {"role": "relay"}
    assert Records(({"seq": 1},)).to_result() == {"records": [{"seq": 1}]}
    invited = Invited(token="t", expires=5.0, network="n", addresses=("10.0.0.1:7",))
    assert invited.to_result() == {
        "token": "t",
        "expires": 5.0,
        "network": "n",
        "addresses": ["10.0.0.1:7"],
    }
    assert list(Joined("n", 3, 2).to_result()) == ["network", "bootstrapped", "members"]
    assert Left(left=True, acknowledged_by=2).to_result() == {"left": True, "acknowledged_by": 2}
    assert AuthorityAdded(1, ("why",)).to_result() == {"added": 1, "refused": ["why"]}
    assert AuthorityInfo("home", "ab", "").to_result() == {
        "network": "home",
        "root": "ab",
        "public_key": "",
    }
    keys = NetworkKeys("home", True, {"keys": [], "plan": {}})
    assert keys.to_result() == {"network": "home", "private": True, "keys": [], "plan": {}}


def test_ping_results_keep_their_order_and_omit_what_a_datagram_has_not() -> None:
    rounds = {"rtts_ms": [1.5], "sent": 2, "received": 1}
    datagram = {"node_id": "n", "address": "a", "rtt_ms": 1.5, **rounds, "via": "datagram"}
    assert PingResult.from_map(datagram, where="w").to_result() == datagram
    stream = {"node_id": "n", "address": "a", "rtt_ms": 1, **rounds, "handshake_ms": 2.0}
    stream["via"] = "stream"
    assert list(PingResult.from_map(stream, where="w").to_result()) == list(stream)


STATUS = {
    "node_id": "n",
    "version": "0.1.0",
    "network": "open",
    "address": None,
    "uptime_s": 1.5,
    "peers": 0,
    "members": {"alive": 1, "suspect": 0, "dead": 0, "left": 0},
    "storage": {"used_bytes": 0, "quota_bytes": 1},
    "pid": 1,
    "data_dir": None,
    "datagrams": {},
    "streams": {},
    "dht": {"counters": {}},
    "membership": {},
    "shards": {},
    "keyring": {},
    "authority": {},
}


def test_status_is_checked_and_refuses_undeclared_fields() -> None:
    assert Status.from_map(STATUS, where="status").to_result() == STATUS
    with pytest.raises(AdminError, match=r"^status: unexpected surprise$"):
        Status.from_map({**STATUS, "surprise": 1}, where="status")
    with pytest.raises(AdminError, match=r"^status: members: expected a map"):
        Status.from_map({**STATUS, "members": 3}, where="status")


@dataclass(frozen=True)
class Shown:
    key: str
    value: Any
    text: str
    source: str


def test_config_rows() -> None:
    rows = config_rows([Shown("a.b", 2.0, "2s", "default"), Shown("c", [1], "1", "flag")])
    assert rows.to_result() == [
        {"key": "a.b", "value": 2.0, "text": "2s", "source": "default"},
        {"key": "c", "value": [1], "text": "1", "source": "flag"},
    ]
    assert ConfigRow("k", None, "", "file").to_map()["value"] is None
