from __future__ import annotations

import contextlib

import pytest
from OpenSSL import SSL

from pqc.catalogue import build_policy, load_catalogue
from pqc.client import ClientCredentials
from pqc.pki import FleetPki
from pqc.tests.conftest import VIN_A, FleetMaterial
from pqc.tls import (
    RevocationList,
    TlsConfigError,
    build_client_context,
    build_server_context,
    expect_hostname,
    session_info,
    vehicle_tls_identity,
)

CATALOGUE = load_catalogue()


def _handshake(client: SSL.Connection, server: SSL.Connection) -> None:
    """Shuttle records between two memory-BIO connections until both finish or one fails."""
    for _ in range(20):
        finished = 0
        for side, peer in ((client, server), (server, client)):
            try:
                side.do_handshake()
                finished += 1
            except SSL.WantReadError:
                pass
            with contextlib.suppress(SSL.WantReadError):
                peer.bio_write(side.bio_read(1 << 20))
        if finished == 2:
            # TLS 1.3 servers judge the client certificate after the client has finished:
            # one round of application data shows whether the server accepted it.
            client.send(b"ping")
            server.bio_write(client.bio_read(1 << 20))
            assert server.recv(4) == b"ping"
            return
    raise AssertionError("handshake did not finish")


def _pair(server_ctx: SSL.Context, config, credentials: ClientCredentials, host: str = "localhost"):
    client_ctx = build_client_context(
        config=config, cert_path=credentials.cert, key_path=credentials.key, ca_path=credentials.ca
    )
    server = SSL.Connection(server_ctx, None)
    server.set_accept_state()
    client = SSL.Connection(client_ctx, None)
    client.set_connect_state()
    expect_hostname(client, host)
    return client, server


@pytest.fixture(scope="module")
def server_ctx(fleet: FleetMaterial) -> SSL.Context:
    return build_server_context(
        pki=fleet.pki,
        policy=build_policy(allow_classical=False),
        require_client_cert=True,
        revocation=RevocationList(fleet.pki),
    )


@pytest.mark.parametrize(
    "config", [c for c in CATALOGUE if not c.classical], ids=lambda c: f"{c.id}-{c.name}"
)
def test_one_context_serves_every_configuration(server_ctx, fleet: FleetMaterial, config) -> None:
    client, server = _pair(server_ctx, config, fleet.credentials[(VIN_A, config.signature)])
    _handshake(client, server)

    seen_by_client = session_info(client, server_side=False)
    assert seen_by_client.group == config.group
    assert seen_by_client.peer_key_type == config.signature
    identity = vehicle_tls_identity(server)
    assert identity is not None
    assert identity["vin"] == VIN_A
    assert identity["group"] == config.group
    assert identity["signature_algorithm"] == config.signature_algorithm
    assert identity["version"] == "TLSv1.3"


def test_classical_group_is_not_offered_by_the_default_policy(server_ctx, fleet) -> None:
    classical = next(c for c in CATALOGUE if c.classical)
    client, server = _pair(server_ctx, classical, fleet.credentials[(VIN_A, "ecdsa-p256")])
    with pytest.raises(SSL.Error):
        _handshake(client, server)


def test_wrong_server_name_fails_verification(server_ctx, fleet) -> None:
    client, server = _pair(server_ctx, CATALOGUE[1], fleet.credentials[(VIN_A, "ecdsa-p256")],
                           host="ota.elsewhere.example")  # fmt: skip
    with pytest.raises(SSL.Error):
        _handshake(client, server)


def test_revocation_list_notices_a_new_crl_without_restart(fleet: FleetMaterial) -> None:
    credentials = fleet.issue(VIN_A, name="tls-revoke")
    revocation = RevocationList(fleet.pki)
    serial = fleet.serial_of(credentials)
    assert not revocation.is_revoked(serial)

    fleet.pki.revoke(serial)

    assert revocation.is_revoked(serial)


def test_missing_server_certificate_is_reported(tmp_path) -> None:
    pki = FleetPki(tmp_path / "pki")
    pki.init(families=["ecdsa-p256"])
    with pytest.raises(TlsConfigError, match="ml-dsa-65"):
        build_server_context(pki=pki, policy=build_policy(accept=[4]), require_client_cert=True)


def test_server_keys_load_with_the_passphrase(tmp_path) -> None:
    pki = FleetPki(tmp_path / "pki", passphrase=b"s3cret")
    pki.init(families=["ecdsa-p256", "ml-dsa-65"])
    ctx = build_server_context(
        pki=pki, policy=build_policy(accept=[1, 4]), require_client_cert=False
    )
    assert ctx is not None
    with pytest.raises(TlsConfigError, match="private key"):
        build_server_context(
            pki=FleetPki(tmp_path / "pki", passphrase=b"wrong"),
            policy=build_policy(accept=[1]),
            require_client_cert=False,
        )


def test_fleet_certificate_without_a_vin_subject_is_refused(server_ctx, fleet, tmp_path) -> None:
    import datetime

    from cryptography import x509 as cx509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from pqc.pki import cert_to_pem, generate_key, key_to_pem, utcnow

    key = generate_key("ecdsa-p256")
    cert, ca = fleet.pki._sign_leaf(
        family="ecdsa-p256",
        subject=cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "diagnostic-laptop")]),
        public_key=key.public_key(),
        extensions=[(cx509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
        not_before=utcnow() - datetime.timedelta(minutes=1),
        not_after=utcnow() + datetime.timedelta(days=1),
    )
    (tmp_path / "c.crt").write_bytes(cert_to_pem(cert, ca))
    (tmp_path / "c.key").write_bytes(key_to_pem(key, None))
    credentials = ClientCredentials(
        ca=fleet.pki.ca_bundle_path, cert=tmp_path / "c.crt", key=tmp_path / "c.key"
    )
    client, server = _pair(server_ctx, CATALOGUE[1], credentials)
    with pytest.raises(SSL.Error):
        _handshake(client, server)
    assert vehicle_tls_identity(server) is None
