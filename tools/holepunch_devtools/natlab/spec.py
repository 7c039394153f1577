"""What a lab is made of: its NATs, their kind, port range, timeouts and impairment."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from holepunch_devtools.natlab.topology import MAX_NATS

__all__ = ["Impairment", "LabSpec", "NatKind", "NatSpec"]


class NatKind(enum.StrEnum):
    EIM = "eim"  # endpoint-independent mapping, port-restricted filtering
    SYMMETRIC = "symmetric"  # endpoint-dependent mapping
    FULL_CONE = "fullcone"  # 1:1 static NAT: EIM and endpoint-independent filtering

    @property
    def expected_mapping(self) -> str:
        """The worker's classification for this kind (holepunch_protocol.MappingBehaviour)."""
        return "endpoint_dependent" if self is NatKind.SYMMETRIC else "endpoint_independent"


@dataclass(frozen=True, slots=True)
class Impairment:
    """Added on a NAT's wan link, in each direction: 25 ms each way is a 50 ms RTT."""

    delay_ms: int = 0
    loss_pct: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.delay_ms <= 10_000:
            raise ValueError("delay_ms must be in 0..10000")
        if not 0.0 <= self.loss_pct < 100.0:
            raise ValueError("loss_pct must be in 0..100 (exclusive)")

    @property
    def active(self) -> bool:
        return self.delay_ms > 0 or self.loss_pct > 0


@dataclass(frozen=True, slots=True)
class NatSpec:
    kind: NatKind
    # Public UDP ports the NAT maps to (eim, symmetric); None: 20000+1000*i..+999.
    # Ignored for fullcone, which preserves ports.
    port_range: tuple[int, int] | None = None
    # nf_conntrack_udp_timeout(_stream) in the router's namespace; None: kernel default.
    udp_timeout_sec: int | None = None
    impairment: Impairment = Impairment()

    def __post_init__(self) -> None:
        if self.port_range is not None:
            low, high = self.port_range
            if not 1024 <= low <= high <= 65535:
                raise ValueError("port_range must satisfy 1024 <= low <= high <= 65535")
        if self.udp_timeout_sec is not None and not 1 <= self.udp_timeout_sec <= 3600:
            raise ValueError("udp_timeout_sec must be in 1..3600")


@dataclass(frozen=True, slots=True)
class LabSpec:
    nats: tuple[NatSpec, ...]
    start_coturn: bool = True
    start_rendezvous: bool = True

    def __post_init__(self) -> None:
        if not 1 <= len(self.nats) <= MAX_NATS:
            raise ValueError(f"a lab has 1..{MAX_NATS} NATs")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LabSpec:
        nats = []
        for nat in data["nats"]:
            port_range = nat.get("port_range")
            nats.append(
                NatSpec(
                    kind=NatKind(nat["kind"]),
                    port_range=None if port_range is None else (port_range[0], port_range[1]),
                    udp_timeout_sec=nat.get("udp_timeout_sec"),
                    impairment=Impairment(**nat.get("impairment", {})),
                )
            )
        return cls(
            nats=tuple(nats),
            start_coturn=bool(data.get("start_coturn", True)),
            start_rendezvous=bool(data.get("start_rendezvous", True)),
        )
