"""Mapping-behaviour classification from several STUN answers: pure, no I/O.

Binding requests sent from one socket to servers on different IP addresses report the
same mapped address when the NAT's mapping is endpoint-independent (RFC 4787 EIM) and
different ones when it depends on the destination ("symmetric" NAT, where direct hole
punching fails). Tailscale calls the second case MappingVariesByDestIP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from holepunch_protocol import MappingBehaviour

__all__ = ["StunAnswer", "TransportAddress", "carry_forward_mapping", "classify_mapping"]

TransportAddress = tuple[str, int]


@dataclass(frozen=True, slots=True)
class StunAnswer:
    """One successful binding: which server answered and what mapping it saw."""

    server: TransportAddress  # the resolved address the request went to
    mapped: TransportAddress  # XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS) of the reply


def classify_mapping(answers: Sequence[StunAnswer]) -> MappingBehaviour:
    """Endpoint-dependent as soon as two answers differ; endpoint-independent only when
    servers on at least two IP addresses agree; unknown otherwise.

    Two servers sharing one IP address (different ports) that agree do not rule out an
    address-dependent mapping, so they alone prove nothing.
    """
    if len({answer.mapped for answer in answers}) > 1:
        return MappingBehaviour.ENDPOINT_DEPENDENT
    if len({answer.server[0] for answer in answers}) >= 2:
        return MappingBehaviour.ENDPOINT_INDEPENDENT
    return MappingBehaviour.UNKNOWN


def carry_forward_mapping(
    previous_mapped: TransportAddress | None,
    previous_mapping: MappingBehaviour | None,
    mapped: TransportAddress,
    mapping: MappingBehaviour,
) -> MappingBehaviour:
    """Keep a known classification through a round too thin to classify.

    When a round gets fewer answers (one server lost a packet) and the mapped address is
    the one the classified round saw, nothing contradicts the earlier classification;
    reporting `unknown` would only make the rendezvous flap. A new mapped address is a
    new mapping: then the thin round's `unknown` stands.
    """
    if (
        mapping is MappingBehaviour.UNKNOWN
        and previous_mapping is not None
        and previous_mapping is not MappingBehaviour.UNKNOWN
        and previous_mapped == mapped
    ):
        return previous_mapping
    return mapping
