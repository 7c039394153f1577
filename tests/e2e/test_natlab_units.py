"""The NAT lab's pure parts, no root needed: names, rules, codecs, the CLI's surface."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest
from aioice import stun
from holepunch_devtools import natlab
from holepunch_devtools.natlab import (
    Impairment,
    Lab,
    LabError,
    LabSpec,
    NatKind,
    NatSpec,
    delay_queue,
    iptables_rules,
    mapped_address,
    netem_arguments,
    new_prefix,
    nfqueue_rules,
    validate_prefix,
)
from holepunch_devtools.natlab.topology import prefix_owner_pid

REPO = Path(__file__).resolve().parents[2]


def test_prefix_is_unique_per_run_and_names_its_owner() -> None:
    prefix = new_prefix()
    assert prefix_owner_pid(prefix) == os.getpid()
    assert prefix_owner_pid("hp-lab") is None
    assert new_prefix() != prefix
    lab = Lab.create(LabSpec(nats=(NatSpec(NatKind.EIM),) * 9), prefix)
    assert lab.ns("host9") == f"{prefix}-host9"
    assert len(lab.namespaces) == 19 and len(set(lab.namespaces)) == 19


@pytest.mark.parametrize("bad", ["lab", "hp-", "hp-a/b", "hp-UPPER", "hp-x y", "hp-" + "a" * 40])
def test_prefix_validation(bad: str) -> None:
    with pytest.raises(ValueError):
        validate_prefix(bad)


def test_unknown_host_names_are_refused() -> None:
    lab = Lab.create(LabSpec(nats=(NatSpec(NatKind.EIM), NatSpec(NatKind.FULL_CONE))))
    for bad in ("nat3", "host0", "router", "pub2", "../x"):
        with pytest.raises(LabError):
            lab.ns(bad)


def test_eim_rules_masquerade_into_a_port_range_and_drop_unsolicited() -> None:
    rules = iptables_rules(NatKind.EIM, 1, None)
    assert "-A POSTROUTING -o wan -p udp -j MASQUERADE --to-ports 21000-21999\n" in rules
    assert "--random" not in rules
    assert "-A INPUT -i wan -m conntrack --ctstate NEW -j DROP" in rules
    assert "-A FORWARD -i wan -m conntrack --ctstate NEW -j DROP" in rules


def test_symmetric_rules_randomise_every_flow() -> None:
    rules = iptables_rules(NatKind.SYMMETRIC, 2, (40000, 40099))
    assert "-p udp -j MASQUERADE --to-ports 40000-40099 --random-fully" in rules
    assert "--ctstate NEW -j DROP" in rules


def test_full_cone_is_one_to_one_nat_without_filtering() -> None:
    rules = iptables_rules(NatKind.FULL_CONE, 3, None)
    assert "-A PREROUTING -i wan -d 198.51.100.103 -j DNAT --to-destination 10.0.3.2" in rules
    assert "-A POSTROUTING -o wan -s 10.0.3.2 -j SNAT --to-source 198.51.100.103" in rules
    assert "DROP" not in rules and "--to-ports" not in rules


def test_expected_classification_per_kind() -> None:
    assert NatKind.EIM.expected_mapping == "endpoint_independent"
    assert NatKind.FULL_CONE.expected_mapping == "endpoint_independent"
    assert NatKind.SYMMETRIC.expected_mapping == "endpoint_dependent"


def test_impairment_as_netem_and_as_netfilter() -> None:
    impairment = Impairment(delay_ms=25, loss_pct=10)
    assert netem_arguments(impairment) == ["netem", "delay", "25ms", "loss", "10%"]
    rules = nfqueue_rules(impairment)
    for chain, direction in (("PREROUTING", "-i"), ("POSTROUTING", "-o")):
        assert (
            f"-A {chain} {direction} wan -m statistic --mode random --probability 0.1000 -j DROP"
            in rules
        )
        assert f"-A {chain} {direction} wan -j NFQUEUE --queue-num 0" in rules
    assert "NFQUEUE" not in nfqueue_rules(Impairment(loss_pct=5))
    assert not Impairment().active
    with pytest.raises(ValueError):
        Impairment(loss_pct=100)


def test_spec_round_trips_through_the_state_file_format() -> None:
    spec = LabSpec(
        nats=(
            NatSpec(NatKind.EIM, (30000, 30999), 5, Impairment(25, 10)),
            NatSpec(NatKind.FULL_CONE),
        ),
        start_rendezvous=False,
    )
    assert LabSpec.from_json(spec.to_json()) == spec


def test_mapped_address_reads_xor_mapped_address() -> None:
    request, transaction_id = natlab.binding_request()
    parsed = stun.parse_message(request)
    assert parsed.message_method == stun.Method.BINDING and parsed.transaction_id == transaction_id
    response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=transaction_id)
    response.attributes["XOR-MAPPED-ADDRESS"] = ("198.51.100.101", 21042)
    assert mapped_address(bytes(response), transaction_id) == ("198.51.100.101", 21042)
    assert mapped_address(bytes(response), b"x" * 12) is None
    assert mapped_address(b"garbage", transaction_id) is None
    assert mapped_address(request, transaction_id) is None  # a request, not a response
    failure = stun.Message(stun.Method.BINDING, stun.Class.ERROR, transaction_id=transaction_id)
    failure.attributes["ERROR-CODE"] = (400, "Bad Request")
    assert mapped_address(bytes(failure), transaction_id) is None


def test_nfqueue_packet_ids_are_read_from_netlink_messages() -> None:
    def packet(packet_id: int, seq: int) -> bytes:
        header = struct.pack("!IHB", packet_id, 0x0800, 1)  # id, hw protocol, hook
        attributes = delay_queue.netlink_attribute(9, b"\x01\x02\x03")
        attributes += delay_queue.netlink_attribute(1, header)
        return delay_queue.nfqueue_message(delay_queue.NFQNL_MSG_PACKET, 0, attributes, 0, seq)

    assert list(delay_queue.packet_ids(packet(7, 1) + packet(8, 2))) == [7, 8]


def test_cli_help_names_every_command() -> None:
    result = subprocess.run(
        [str(REPO / "scripts" / "natlab"), "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    for command in ("up", "down", "status", "exec"):
        assert command in result.stdout
    assert "delay-queue" not in result.stdout  # internal
