"""The introduction policy and worker tags, pure: parsing, defaults, decisions, and what
the handler does with them (no sockets)."""

from __future__ import annotations

import pytest
from holepunch_env import ConfigError
from holepunch_protocol import (
    AuthMode,
    ConnectRequest,
    ErrorCode,
    ErrorMessage,
    ListPeers,
    MappingBehaviour,
    PeerEntry,
    Peers,
    ProtocolError,
    UpdateUdpEndpoint,
    decode_client_message,
    decode_server_message,
    encode_message,
    parse_tags,
)
from holepunch_rendezvous.config import RendezvousConfig
from holepunch_rendezvous.handler import handle_message, introduce
from holepunch_rendezvous.policy import (
    ALLOW_ALL,
    ANY,
    DENY_ALL,
    PolicyError,
    parse_policy,
    peers_page,
    policy_for,
)
from holepunch_rendezvous.punch_sessions import PunchSessionTable
from holepunch_rendezvous.registry import Registry, WorkerRecord
from holepunch_worker.config import ConfigError as WorkerConfigError
from holepunch_worker.config import load_config

# ---------------------------------------------------------------- tags


def test_tags_are_sorted_without_repeats_and_blank_is_untagged() -> None:
    assert parse_tags(" gpu, team-a ,gpu,,") == ("gpu", "team-a")
    assert parse_tags(None) == parse_tags("") == parse_tags(" , ") == ()


@pytest.mark.parametrize(
    "text", ["Team-A", "-lead", "a b", "x" * 33, "tag!", ",".join(f"t{i}" for i in range(17))]
)
def test_malformed_tags_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_tags(text)


def test_worker_tags_go_in_the_registration_url_and_old_urls_are_unchanged() -> None:
    base = {"RENDEZVOUS_SERVICE_URL": "https://r.example", "WORKER_ID": "w1"}
    assert load_config(base).rendezvous_url == "wss://r.example/ws/register/w1"
    tagged = load_config({**base, "WORKER_TAGS": "team-a, gpu"})
    assert tagged.tags == ("gpu", "team-a")
    assert tagged.rendezvous_url == "wss://r.example/ws/register/w1?tags=gpu,team-a"
    with pytest.raises(WorkerConfigError, match="WORKER_TAGS"):
        load_config({**base, "WORKER_TAGS": "Team A"})


# ---------------------------------------------------------------- the policy text


def test_rule_forms() -> None:
    assert parse_policy("team-a") == {("team-a", "team-a")}
    assert parse_policy("a->b") == {("a", "b")}
    assert parse_policy("a<->b") == {("a", "b"), ("b", "a")}
    assert parse_policy(" * ") == {(ANY, ANY)}
    assert parse_policy("*->gpu, ops->*") == {(ANY, "gpu"), ("ops", ANY)}
    assert parse_policy("a, a->b,") == {("a", "a"), ("a", "b")}


@pytest.mark.parametrize("text", ["", " , ", "a->", "->b", "A->b", "a->b->c", "a=>b", "a;b"])
def test_unreadable_policies_say_what_is_wrong(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text)


def test_a_rule_is_read_from_the_side_that_asks() -> None:
    policy = policy_for(AuthMode.TOKEN, "team-a, team-a->gpu")
    assert policy.allows(["team-a"], ["team-a"])
    assert policy.allows(["team-a"], ["gpu"])
    assert not policy.allows(["gpu"], ["team-a"])  # one way only
    assert not policy.allows(["gpu"], ["gpu"])
    assert not policy.allows([], ["team-a"])  # untagged workers match only *
    assert not policy.allows(["team-a"], [])
    assert policy.allows(["gpu", "team-a"], ["gpu"])  # any of the initiator's tags


def test_star_matches_every_worker_including_untagged_ones() -> None:
    policy = policy_for(AuthMode.TOKEN, "*->gpu, ops->*")
    assert policy.allows([], ["gpu"]) and policy.allows(["x"], ["gpu"])
    assert policy.allows(["ops"], []) and not policy.allows([], [])


def test_defaults_allow_all_only_under_auth_mode_none() -> None:
    none = policy_for(AuthMode.NONE, None)
    assert none.rules == ALLOW_ALL.rules and none.allows([], [])
    for mode in (AuthMode.TOKEN, AuthMode.IAM):
        default = policy_for(mode, None)
        assert default.rules == DENY_ALL.rules and not default.allows(["a"], ["a"])
        assert default.declarable is None  # tags are accepted; they reach no one
    assert not policy_for(AuthMode.NONE, "team-a").allows([], [])  # a policy replaces it


def test_declarable_tags_default_to_those_the_policy_names() -> None:
    policy = policy_for(AuthMode.TOKEN, "team-a, *->gpu")
    assert policy.declarable == {"team-a", "gpu"}
    assert policy.undeclarable(("gpu", "root", "team-a", "zz")) == ("root", "zz")
    assert policy_for(AuthMode.TOKEN, "*").declarable is None
    explicit = policy_for(AuthMode.TOKEN, "team-a", "team-a, spare")
    assert explicit.undeclarable(("spare",)) == ()
    assert policy_for(AuthMode.TOKEN, "team-a", "*").declarable is None
    assert policy_for(AuthMode.NONE, None, "only").undeclarable(("other",)) == ("other",)
    with pytest.raises(PolicyError):
        policy_for(AuthMode.TOKEN, "team-a", "Bad Tag")


def test_config_reads_and_validates_both_settings() -> None:
    config = RendezvousConfig.from_env(
        {
            "AUTH_MODE": "none",
            "INTRODUCTION_POLICY": "team-a<->team-b",
            "ALLOWED_WORKER_TAGS": "team-a,team-b,spare",
        }
    )
    assert config.introduction_policy == "team-a<->team-b"
    assert config.allowed_worker_tags == "team-a,team-b,spare"
    assert RendezvousConfig.from_env({"AUTH_MODE": "none"}).introduction_policy is None
    for name, value in (("INTRODUCTION_POLICY", "a=>b"), ("ALLOWED_WORKER_TAGS", "UP")):
        with pytest.raises(ConfigError, match=name):
            RendezvousConfig.from_env({"AUTH_MODE": "none", name: value})


# ---------------------------------------------------------------- the handler


def registry_of(**tags: tuple[str, ...]) -> Registry:
    registry = Registry()
    for number, (worker_id, worker_tags) in enumerate(sorted(tags.items()), start=1):
        registry.add(WorkerRecord(worker_id, number, "127.0.0.1", 5000, 0.0, tags=worker_tags))
        update = UpdateUdpEndpoint(
            "203.0.113.1", 4000 + number, MappingBehaviour.ENDPOINT_INDEPENDENT
        )
        registry.update_udp_endpoint(worker_id, number, update, 0.0)
    return registry


def test_an_introduction_outside_the_policy_is_refused_with_nothing_delivered() -> None:
    registry = registry_of(a=("team-a",), b=("team-b",))
    sessions = PunchSessionTable()
    policy = policy_for(AuthMode.TOKEN, "team-a, team-b")
    outcome = handle_message(registry, sessions, "a", 1, ConnectRequest("b"), 1.0, policy=policy)
    assert isinstance(outcome.reply, ErrorMessage) and outcome.reply.code == "not_allowed"
    assert outcome.deliveries == () and outcome.created_session is None
    assert outcome.changed_record is None and len(sessions) == 0
    assert outcome.event is not None and outcome.event.name == "introduction_rejected"
    assert outcome.event.fields["tags"] == ["team-a"]
    assert outcome.event.fields["peer_tags"] == ["team-b"]


def test_the_policy_is_checked_before_the_peers_state_is_told() -> None:
    registry = registry_of(a=("team-a",))
    registry.connect("b", 9, None, None, 0.0)  # no endpoint, no tags
    policy = policy_for(AuthMode.TOKEN, "team-a")
    outcome = introduce(registry, PunchSessionTable(), "a", "b", 1.0, policy)
    assert isinstance(outcome.reply, ErrorMessage) and outcome.reply.code == "not_allowed"


def test_without_a_policy_argument_the_operator_introduces_anyone() -> None:
    registry = registry_of(a=("team-a",), b=("team-b",))
    outcome = introduce(registry, PunchSessionTable(), "a", "b", 1.0)
    assert len(outcome.deliveries) == 2 and outcome.created_session is not None


def test_peers_page_lists_allowed_peers_only_and_never_the_asker() -> None:
    registry = registry_of(a=("team-a",), a2=("team-a",), b=("team-b",), u=())
    asker = registry.get("a")
    assert asker is not None
    policy = policy_for(AuthMode.TOKEN, "team-a")
    answer = peers_page(policy, asker, registry.page())
    assert answer == Peers(
        (PeerEntry("a2", ("team-a",), MappingBehaviour.ENDPOINT_INDEPENDENT),), None
    )
    first = peers_page(policy, asker, registry.page(limit=2))
    assert first.peers[0].worker_id == "a2" and first.next_cursor == "a2"
    rest = peers_page(policy, asker, registry.page(limit=2, cursor="a2"))
    assert rest == Peers((), None)  # b and u scanned, neither allowed
    everyone = peers_page(ALLOW_ALL, asker, registry.page())
    assert [peer.worker_id for peer in everyone.peers] == ["a2", "b", "u"]


def test_list_peers_through_the_handler_keeps_the_request_id() -> None:
    registry = registry_of(a=("x",), b=("x",))
    outcome = handle_message(
        registry, PunchSessionTable(), "a", 1, ListPeers(request_id=5), 0.0, policy=DENY_ALL
    )
    assert outcome.reply == Peers((), None, request_id=5)


# ---------------------------------------------------------------- the wire


def test_list_peers_and_peers_round_trip() -> None:
    request = ListPeers(limit=10, cursor="w-9", request_id=3)
    assert decode_client_message(encode_message(request)) == request
    assert decode_client_message('{"type":"list_peers"}') == ListPeers()
    answer = Peers((PeerEntry("w1", ("a", "b"), None),), "w1", request_id=3)
    assert decode_server_message(encode_message(answer)) == answer


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"list_peers","limit":0}',
        '{"type":"list_peers","limit":1001}',
        '{"type":"list_peers","limit":true}',
        '{"type":"list_peers","limit":"5"}',
        '{"type":"list_peers","cursor":"bad id"}',
        '{"type":"list_peers","request_id":-1}',
    ],
)
def test_bad_list_peers_is_refused(frame: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        decode_client_message(frame)
    assert raised.value.code is ErrorCode.INVALID_FIELD
