"""Mapping classification from several STUN answers."""

from __future__ import annotations

from holepunch_protocol import MappingBehaviour
from holepunch_worker.mapping import StunAnswer, carry_forward_mapping, classify_mapping

PUBLIC = ("203.0.113.7", 40000)


def test_no_answer_and_one_answer_are_unknown() -> None:
    assert classify_mapping([]) is MappingBehaviour.UNKNOWN
    assert (
        classify_mapping([StunAnswer(("198.51.100.1", 3478), PUBLIC)]) is MappingBehaviour.UNKNOWN
    )


def test_agreeing_servers_on_two_addresses_mean_endpoint_independent() -> None:
    answers = [
        StunAnswer(("198.51.100.1", 3478), PUBLIC),
        StunAnswer(("198.51.100.2", 3478), PUBLIC),
    ]
    assert classify_mapping(answers) is MappingBehaviour.ENDPOINT_INDEPENDENT


def test_differing_answers_mean_endpoint_dependent() -> None:
    answers = [
        StunAnswer(("198.51.100.1", 3478), PUBLIC),
        StunAnswer(("198.51.100.2", 3478), ("203.0.113.7", 40001)),
    ]
    assert classify_mapping(answers) is MappingBehaviour.ENDPOINT_DEPENDENT
    # Different ports on one server address already prove a dependent mapping.
    same_ip = [
        StunAnswer(("198.51.100.1", 3478), PUBLIC),
        StunAnswer(("198.51.100.1", 3479), ("203.0.113.8", 40000)),
    ]
    assert classify_mapping(same_ip) is MappingBehaviour.ENDPOINT_DEPENDENT


def test_agreeing_answers_from_one_server_address_prove_nothing() -> None:
    answers = [
        StunAnswer(("198.51.100.1", 3478), PUBLIC),
        StunAnswer(("198.51.100.1", 3479), PUBLIC),
    ]
    assert classify_mapping(answers) is MappingBehaviour.UNKNOWN


def test_a_thin_round_keeps_the_known_classification_of_the_same_mapping() -> None:
    eim = MappingBehaviour.ENDPOINT_INDEPENDENT
    unknown = MappingBehaviour.UNKNOWN
    assert carry_forward_mapping(PUBLIC, eim, PUBLIC, unknown) is eim
    # A new mapped address is a new mapping: nothing is known about it yet.
    assert carry_forward_mapping(PUBLIC, eim, ("203.0.113.7", 40002), unknown) is unknown
    # A full round always wins over the past.
    dependent = MappingBehaviour.ENDPOINT_DEPENDENT
    assert carry_forward_mapping(PUBLIC, eim, PUBLIC, dependent) is dependent
    assert carry_forward_mapping(None, None, PUBLIC, unknown) is unknown
