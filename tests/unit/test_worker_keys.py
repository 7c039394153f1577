"""Worker keys without sockets: the wire encoding, the challenge and its proof, the
worker_id bindings, and the worker's key file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from holepunch_env import ConfigError
from holepunch_protocol import (
    NONCE_BYTES,
    PUBLIC_KEY_BYTES,
    REGISTRATION_DOMAIN,
    AuthChallenge,
    AuthMode,
    AuthProof,
    CloseCode,
    ErrorCode,
    ErrorMessage,
    MappingBehaviour,
    PeerIntroduction,
    PeerRole,
    ProtocolError,
    b64url_decode,
    b64url_encode,
    decode_client_message,
    decode_server_message,
    encode_message,
    key_fingerprint,
    registration_message,
)
from holepunch_rendezvous.app import Rendezvous
from holepunch_rendezvous.auth import WorkerOwnership
from holepunch_rendezvous.config import RendezvousConfig
from holepunch_rendezvous.handler import handle_text_frame
from holepunch_rendezvous.identity import (
    IdentityRefusal,
    KeyBindings,
    VerifiedKey,
    announced_key,
    new_challenge,
    verify_proof,
)
from holepunch_rendezvous.punch_sessions import PunchSessionTable
from holepunch_rendezvous.registry import Registry, UdpEndpoint, WorkerRecord
from holepunch_rendezvous.store import MemoryStore, decode_record, encode_record
from holepunch_worker.config import load_config
from holepunch_worker.identity import WorkerKey
from holepunch_worker.punch import PunchSessions, PunchTimings

NONCE = bytes(range(NONCE_BYTES))


def proof_for(key: WorkerKey, nonce: bytes, worker_id: str) -> AuthProof:
    return key.prove(AuthChallenge(nonce=b64url_encode(nonce)), worker_id)


# --- the wire ------------------------------------------------------------------------------


def test_base64url_is_unpadded_and_exact_in_length() -> None:
    data = os.urandom(PUBLIC_KEY_BYTES)
    text = b64url_encode(data)
    assert "=" not in text and len(text) == 43
    assert b64url_decode(text, PUBLIC_KEY_BYTES) == data
    for wrong in (text[:-1], text + "AA", "!" * 43, "é" * 43):
        with pytest.raises(ValueError):
            b64url_decode(wrong, PUBLIC_KEY_BYTES)
    # Only the canonical spelling: the last character's two unused bits must be zero.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = text[:-1] + alphabet[alphabet.index(text[-1]) ^ 1]
    with pytest.raises(ValueError):
        b64url_decode(twin, PUBLIC_KEY_BYTES)


def test_the_signed_message_binds_domain_nonce_and_worker_id() -> None:
    message = registration_message(NONCE, "w1")
    assert message == REGISTRATION_DOMAIN + NONCE + b"w1"
    assert registration_message(NONCE, "w2") != message
    assert key_fingerprint(b"\0" * 32) == "66687aadf862bd77"


def test_auth_messages_round_trip_and_refuse_bad_fields() -> None:
    key = WorkerKey.generate()
    proof = proof_for(key, NONCE, "w1")
    assert decode_client_message(encode_message(proof)) == proof
    challenge = AuthChallenge(nonce=b64url_encode(NONCE))
    assert decode_server_message(encode_message(challenge)) == challenge
    for frame in (
        '{"type":"auth_proof","public_key":"abc","signature":"' + "A" * 86 + '"}',
        '{"type":"auth_proof","public_key":"' + key.public_key + '"}',
        '{"type":"auth_challenge","nonce":"' + "A" * 42 + '"}',
    ):
        with pytest.raises(ProtocolError) as error:
            decode_client_message(frame) if "proof" in frame else decode_server_message(frame)
        assert error.value.code in (ErrorCode.INVALID_FIELD, ErrorCode.MISSING_FIELD)


def test_introductions_carry_the_peer_key_or_null() -> None:
    fields = {
        "session_id": "0" * 32,
        "peer_id": "w2",
        "peer_udp_ip": "203.0.113.9",
        "peer_udp_port": 4000,
        "peer_mapping": None,
        "secret": "1" * 64,
        "role": PeerRole.INITIATOR,
    }
    key = WorkerKey.generate().public_key
    keyed = PeerIntroduction(**fields, peer_public_key=key)  # type: ignore[arg-type]
    keyless = PeerIntroduction(**fields)  # type: ignore[arg-type]
    assert decode_server_message(encode_message(keyed)) == keyed
    assert keyless.to_fields()["peer_public_key"] is None
    assert decode_server_message(encode_message(keyless)) == keyless
    # A frame of the original design (no such field) still decodes.
    original = encode_message(keyless).replace(',"peer_public_key":null', "")
    assert "peer_public_key" not in original
    assert decode_server_message(original) == keyless


# --- the challenge and its proof -----------------------------------------------------------


def test_a_proof_for_this_challenge_and_worker_id_is_verified() -> None:
    key = WorkerKey.generate()
    challenge = new_challenge("w1", key.public_key, NONCE)
    verified = verify_proof(challenge, proof_for(key, NONCE, "w1"))
    assert verified == VerifiedKey(key.public_key)
    assert isinstance(verified, VerifiedKey) and verified.fingerprint == key.fingerprint


def test_every_other_proof_is_refused() -> None:
    key, other = WorkerKey.generate(), WorkerKey.generate()
    challenge = new_challenge("w1", key.public_key, NONCE)
    stale_nonce = bytes(NONCE_BYTES)
    forged = AuthProof(key.public_key, proof_for(other, NONCE, "w1").signature)
    for proof in (
        proof_for(key, stale_nonce, "w1"),  # replayed from another connection's challenge
        proof_for(key, NONCE, "w2"),  # made for another worker_id
        proof_for(other, NONCE, "w1"),  # another key than the one announced
        forged,  # the announced key with someone else's signature
    ):
        refusal = verify_proof(challenge, proof)
        assert isinstance(refusal, IdentityRefusal)
        assert refusal.error.code is ErrorCode.KEY_PROOF_INVALID
        assert refusal.close_code is CloseCode.UNAUTHENTICATED


def test_every_challenge_has_a_fresh_nonce() -> None:
    nonces = {new_challenge("w1", "k").nonce for _ in range(1000)}
    assert len(nonces) == 1000 and all(len(nonce) == NONCE_BYTES for nonce in nonces)


def test_the_announced_key_is_checked_before_any_challenge() -> None:
    key = WorkerKey.generate()
    assert announced_key(None) is None
    assert announced_key(key.public_key) == key.public_key
    assert announced_key(key.public_key + "=") == key.public_key
    refusal = announced_key("not a key")
    assert isinstance(refusal, IdentityRefusal)
    assert refusal.error.code is ErrorCode.KEY_PROOF_INVALID


# --- bindings ------------------------------------------------------------------------------


def test_the_first_key_claims_a_worker_id_and_another_is_refused() -> None:
    bindings = KeyBindings(ttl=60)
    assert bindings.admit("w1", "key-a", now=0)
    assert bindings.admit("w1", "key-a", now=1)  # reconnecting with the same key
    assert not bindings.admit("w1", "key-b", now=2)
    assert bindings.bound_key("w1", now=2) == "key-a"


def test_a_keyless_worker_binds_nothing_and_never_takes_a_bound_id() -> None:
    bindings = KeyBindings(ttl=60)
    assert bindings.admit("w1", None, now=0)
    assert len(bindings) == 0
    assert bindings.admit("w1", "key-a", now=1)
    assert not bindings.admit("w1", None, now=2)


def test_a_binding_lasts_while_connected_then_ttl_after_the_key_left() -> None:
    bindings = KeyBindings(ttl=60)
    bindings.admit("w1", "key-a", now=0)
    assert not bindings.admit("w1", "key-b", now=10_000)  # connected: no expiry
    bindings.left("w1", "key-b", now=10_000)  # not its key: changes nothing
    assert bindings.bound_key("w1", now=20_000) == "key-a"
    bindings.left("w1", "key-a", now=20_000)
    assert not bindings.admit("w1", "key-b", now=20_059)
    assert bindings.admit("w1", "key-a", now=20_030)  # back in time: kept for good again
    bindings.left("w1", "key-a", now=20_040)
    assert bindings.admit("w1", "key-b", now=20_100)  # lapsed: a new key claims it


def test_lapsed_bindings_do_not_pile_up() -> None:
    bindings = KeyBindings(ttl=1)
    for number in range(5000):
        bindings.admit(f"w{number}", "key", now=number)
        bindings.left(f"w{number}", "key", now=number)
    assert len(bindings) <= 1024
    assert bindings.bound_key("w4999", now=4999.5) == "key"


def test_an_operator_release_frees_the_id_at_once() -> None:
    bindings = KeyBindings(ttl=60)
    bindings.admit("w1", "key-a", now=0)
    assert bindings.release("w1", now=1) == "key-a"
    assert bindings.release("w1", now=1) is None
    assert bindings.admit("w1", "key-b", now=2)


# --- the worker's key ----------------------------------------------------------------------


def test_a_generated_key_is_new_for_each_process_and_shows_only_public_parts() -> None:
    first, second = WorkerKey.generate(), WorkerKey.generate()
    assert first.public_key != second.public_key
    assert len(b64url_decode(first.public_key, PUBLIC_KEY_BYTES)) == PUBLIC_KEY_BYTES
    assert repr(first) == f"WorkerKey(fingerprint={first.fingerprint!r})"


def test_the_key_file_may_be_pem_or_a_raw_seed(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    (tmp_path / "key.pem").write_bytes(pem)
    (tmp_path / "key.seed").write_bytes(seed)
    from_pem = WorkerKey.from_file(str(tmp_path / "key.pem"))
    from_seed = WorkerKey.from_file(str(tmp_path / "key.seed"))
    assert from_pem.public_key == from_seed.public_key
    challenge = new_challenge("w1", from_pem.public_key, NONCE)
    assert isinstance(verify_proof(challenge, proof_for(from_seed, NONCE, "w1")), VerifiedKey)


def test_an_unreadable_or_malformed_key_file_is_a_config_error(tmp_path: Path) -> None:
    ec_key = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cases = {
        "missing": None,
        "short": b"\1" * 31,
        "garbage": b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
        "ec": ec_key,
        "huge": b"\0" * 20_000,
    }
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(ConfigError) as error:
            WorkerKey.from_file(str(tmp_path / name))
        assert error.value.variable == "WORKER_KEY_FILE", name


def test_the_worker_config_loads_its_key(tmp_path: Path) -> None:
    seed = os.urandom(32)
    (tmp_path / "seed").write_bytes(seed)
    env = {"WORKER_ID": "w1", "RENDEZVOUS_SERVICE_URL": "http://127.0.0.1:1"}
    expected = WorkerKey(Ed25519PrivateKey.from_private_bytes(seed)).public_key
    assert load_config({**env, "WORKER_KEY_FILE": str(tmp_path / "seed")}).key.public_key == (
        expected
    )
    assert load_config(env).key.public_key != load_config(env).key.public_key
    with pytest.raises(ConfigError):
        load_config({**env, "WORKER_KEY_FILE": str(tmp_path / "absent")})


# --- the rendezvous's use of keys ----------------------------------------------------------


def registry_of(**keys: str | None) -> Registry:
    registry = Registry()
    for number, (worker_id, key) in enumerate(keys.items(), start=1):
        record = WorkerRecord(worker_id, number, "127.0.0.1", 50000 + number, 0.0)
        record.public_key = key
        record.udp_endpoint = UdpEndpoint("203.0.113.1", 4000 + number)
        registry.add(record)
    return registry


def test_introductions_name_each_sides_key() -> None:
    key = WorkerKey.generate().public_key
    registry = registry_of(keyed=key, old=None)
    frame = '{"type":"connect_request","peer_id":"old"}'
    outcome = handle_text_frame(registry, PunchSessionTable(), "keyed", 1, frame, now=1.0)
    told = {delivery.worker_id: delivery.message for delivery in outcome.deliveries}
    to_keyed, to_old = told["keyed"], told["old"]
    assert isinstance(to_keyed, PeerIntroduction) and isinstance(to_old, PeerIntroduction)
    assert (to_keyed.peer_public_key, to_old.peer_public_key) == (None, key)


def test_a_proof_after_registration_is_refused_and_changes_nothing() -> None:
    key = WorkerKey.generate()
    registry = registry_of(keyed=key.public_key)
    proof = encode_message(proof_for(key, NONCE, "keyed"))
    outcome = handle_text_frame(registry, PunchSessionTable(), "keyed", 1, proof, now=1.0)
    assert isinstance(outcome.reply, ErrorMessage)
    assert outcome.reply.code == ErrorCode.KEY_PROOF_INVALID
    assert outcome.changed_record is None and not outcome.deliveries
    record = registry.get("keyed")
    assert record is not None and record.public_key == key.public_key


def test_records_carry_their_key_through_the_shared_store() -> None:
    record = WorkerRecord("w1", 7, "127.0.0.1", 1, 0.0)
    record.public_key = WorkerKey.generate().public_key
    decoded = decode_record("w1", encode_record(record))
    assert decoded is not None and decoded.public_key == record.public_key
    keyless = decode_record("w2", encode_record(WorkerRecord("w2", 8, None, None, 0.0)))
    assert keyless is not None and keyless.public_key is None


async def test_the_memory_store_binds_releases_and_lets_bindings_lapse() -> None:
    now = [0.0]
    store = MemoryStore(Registry(), WorkerOwnership(), lambda: now[0], KeyBindings(ttl=60))
    assert await store.admit_key("w1", "key-a")
    assert not await store.admit_key("w1", "key-b")
    assert not await store.admit_key("w1", None)
    await store.key_left("w1", "key-a")
    now[0] = 61.0
    assert await store.admit_key("w1", "key-b")
    assert await store.release_key("w1") == "key-b"
    assert await store.release_key("w1") is None
    # The rendezvous's store keeps bindings as long as its configuration says.
    configured = Rendezvous(RendezvousConfig(key_binding_ttl_sec=5.0))
    assert configured.store.bindings.ttl == 5.0


def test_keyless_workers_follow_auth_mode_unless_set() -> None:
    base = {"AUTH_MODE": "none"}
    token = {"AUTH_MODE": "token", "RENDEZVOUS_TOKEN": "t" * 16}
    assert RendezvousConfig.from_env(base).keyless_allowed
    assert not RendezvousConfig.from_env(token).keyless_allowed
    assert not RendezvousConfig.from_env({"AUTH_MODE": "iam"}).keyless_allowed
    assert RendezvousConfig.from_env({**token, "ALLOW_KEYLESS_WORKERS": "1"}).keyless_allowed
    assert not RendezvousConfig.from_env({**base, "ALLOW_KEYLESS_WORKERS": "0"}).keyless_allowed
    assert RendezvousConfig(auth_mode=AuthMode.TOKEN, allow_keyless_workers=True).keyless_allowed
    assert (
        RendezvousConfig.from_env({**base, "KEY_BINDING_TTL_SEC": "30"}).key_binding_ttl_sec == 30
    )
    with pytest.raises(ConfigError) as error:
        RendezvousConfig.from_env({**base, "ALLOW_KEYLESS_WORKERS": "maybe"})
    assert error.value.variable == "ALLOW_KEYLESS_WORKERS"


def test_the_worker_keeps_the_peer_key_on_its_punch_session() -> None:
    key = WorkerKey.generate().public_key
    intro = PeerIntroduction(
        session_id="ab" * 16,
        peer_id="w2",
        peer_udp_ip="203.0.113.9",
        peer_udp_port=4000,
        peer_mapping=MappingBehaviour.ENDPOINT_INDEPENDENT,
        secret="cd" * 32,
        role=PeerRole.INITIATOR,
        peer_public_key=key,
    )
    sessions = PunchSessions(PunchTimings())
    sessions.introduce(intro, now=0.0)
    session = sessions.for_peer("w2")
    assert session is not None and session.peer_public_key == key
    assert session.status(0.0)["peer_public_key"] == key
