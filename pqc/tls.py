from __future__ import annotations

import logging
import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from OpenSSL import SSL, crypto
from OpenSSL._util import ffi, lib

from pqc.catalogue import SIGNATURE_FAMILIES, PqcConfiguration, ServerPolicy
from pqc.pki import VIN_RE, FleetPki, PkiError, common_name, fingerprint, key_family, serial_hex

logger = logging.getLogger(__name__)

# The only cipher suites TLS 1.3 offers that we allow; ChaCha20 helps ECUs without AES-NI.
TLS13_CIPHERSUITES = b"TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256"


class TlsConfigError(RuntimeError):
    """OpenSSL refused a group, signature or credential list; the message says which."""


def _set_groups(ctx: SSL.Context, groups: list[str]) -> None:
    if lib.SSL_CTX_set1_curves_list(ctx._context, ":".join(groups).encode()) != 1:
        raise TlsConfigError(f"groups: OpenSSL rejected {groups}")


def _set_sigalgs(ctx: SSL.Context, sigalgs: list[str]) -> None:
    if lib.SSL_CTX_set1_sigalgs_list(ctx._context, ":".join(sigalgs).encode()) != 1:
        raise TlsConfigError(f"signature algorithms: OpenSSL rejected {sigalgs}")


# OpenSSL's SSL_MODE_NO_AUTO_CHAIN (not exported by pyOpenSSL): do not append CA certificates
# from the trust store to our certificate message. Every peer already holds the fleet roots,
# and an ML-DSA-65 root would add about 5.5 KB to each handshake.
SSL_MODE_NO_AUTO_CHAIN = 0x00000008


def _tls13_only(ctx: SSL.Context) -> None:
    ctx.set_mode(SSL_MODE_NO_AUTO_CHAIN)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_3_VERSION)
    if lib.SSL_CTX_set_ciphersuites(ctx._context, TLS13_CIPHERSUITES) != 1:
        raise TlsConfigError("cipher suites: OpenSSL rejected the TLS 1.3 list")
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)


class RevocationList:
    """Revoked serial numbers from the PKI's CRL files, reloaded when a file changes.

    A `stat()` per handshake is cheap next to the handshake itself, and it lets
    `pqc_pki revoke` (another process) take effect without restarting the listeners.
    """

    def __init__(self, pki: FleetPki) -> None:
        self._pki = pki
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[int, int], ...] = ()
        self._serials: frozenset[int] = frozenset()
        # Plain strings, computed once: this runs on every handshake.
        self._crl_paths = [str(pki.crl_path(family)) for family in pki.families()]

    def _current_stamp(self) -> tuple[tuple[int, int], ...]:
        stamp = []
        for path in self._crl_paths:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                stamp.append((0, 0))
                continue
            stamp.append((st.st_mtime_ns, st.st_size))
        return tuple(stamp)

    def revoked_serials(self) -> frozenset[int]:
        """The revoked serials as the files on disk say now."""
        stamp = self._current_stamp()
        with self._lock:
            if stamp != self._stamp:
                self._serials = frozenset(self._pki.revoked_serials())
                self._stamp = stamp
            return self._serials

    def is_revoked(self, serial: int) -> bool:
        return serial in self.revoked_serials()


def _use_key(ctx: SSL.Context, path: Path, passphrase: bytes | None) -> None:
    # pyOpenSSL cannot convert cryptography's ML-DSA keys, so OpenSSL reads the PEM itself.
    if passphrase:
        ctx.set_passwd_cb(lambda *args: passphrase)
    try:
        ctx.use_privatekey_file(str(path))
    except SSL.Error as exc:
        raise TlsConfigError(f"{path.name}: cannot load private key ({exc})") from None


def _first_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


# X509_V_ERR_* codes the verify callback reports, so the peer gets a precise alert
# ("certificate revoked", "bad certificate") instead of "internal error".
X509_V_ERR_CERT_REVOKED = 23
X509_V_ERR_APPLICATION_VERIFICATION = 50


_NID_COMMON_NAME = 13


def _cn_and_serial(x509_ptr: Any) -> tuple[str, int]:
    """Subject CN and serial of an X509*, read in C: this runs on every vehicle handshake."""
    name = lib.X509_get_subject_name(x509_ptr)
    index = lib.X509_NAME_get_index_by_NID(name, _NID_COMMON_NAME, -1)
    cn = ""
    if index >= 0:
        data = lib.X509_NAME_ENTRY_get_data(lib.X509_NAME_get_entry(name, index))
        raw = ffi.buffer(lib.ASN1_STRING_get0_data(data), lib.ASN1_STRING_length(data))[:]
        cn = raw.decode("utf-8", "replace")
    bn = lib.ASN1_INTEGER_to_BN(lib.X509_get_serialNumber(x509_ptr), ffi.NULL)
    hex_ptr = lib.BN_bn2hex(bn)
    serial = int(ffi.string(hex_ptr), 16)
    lib.OPENSSL_free(hex_ptr)
    lib.BN_free(bn)
    return cn, serial


def client_certificate_error(cn: str, serial: int, revocation: RevocationList | None) -> int:
    """0 if a chain-verified vehicle certificate is acceptable, else an X509_V_ERR code."""
    if not VIN_RE.match(cn):
        logger.warning("refused client certificate without a VIN subject (%r)", cn)
        return X509_V_ERR_APPLICATION_VERIFICATION
    if revocation is not None and revocation.is_revoked(serial):
        logger.warning("refused revoked certificate %s (%s)", serial_hex(serial), cn)
        return X509_V_ERR_CERT_REVOKED
    return 0


def _install_client_verifier(
    ctx: SSL.Context, mode: int, revocation: RevocationList | None
) -> None:
    """Set an OpenSSL verify callback that can report *why* a certificate is refused.

    pyOpenSSL's set_verify() cannot set the X509 error, which turns every refusal into an
    "internal error" alert; this callback talks to OpenSSL through the same cffi bindings.
    """

    def verify(ok: int, store_ctx: Any) -> int:
        try:
            if not ok:
                return 0
            if lib.X509_STORE_CTX_get_error_depth(store_ctx) != 0:
                return 1
            cn, serial = _cn_and_serial(lib.X509_STORE_CTX_get_current_cert(store_ctx))
            error = client_certificate_error(cn, serial, revocation)
            if error:
                lib.X509_STORE_CTX_set_error(store_ctx, error)
                return 0
            return 1
        except Exception:  # an exception must never cross into OpenSSL
            logger.exception("client certificate check failed")
            lib.X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_APPLICATION_VERIFICATION)
            return 0

    callback = ffi.callback("int (*)(int, X509_STORE_CTX *)", verify)
    # The context must keep the callback alive as long as OpenSSL may call it.
    ctx._ota_verify_callback = callback  # type: ignore[attr-defined]
    lib.SSL_CTX_set_verify(ctx._context, mode, callback)


def build_server_context(
    *,
    pki: FleetPki,
    policy: ServerPolicy,
    require_client_cert: bool,
    revocation: RevocationList | None = None,
    families: list[str] | None = None,
) -> SSL.Context:
    """A TLS 1.3 server context offering one certificate per signature family in the policy.

    OpenSSL picks the certificate whose key matches a signature algorithm both sides
    allow, so one listener serves ECDSA and ML-DSA clients alike.
    """
    ctx = SSL.Context(SSL.TLS_METHOD)
    _tls13_only(ctx)
    ctx.set_options(SSL.OP_CIPHER_SERVER_PREFERENCE)
    _set_groups(ctx, policy.groups)
    wanted = families if families is not None else policy.signature_families
    # A certificate loaded for a family outside the policy (the console's ECDSA one for
    # browsers) is only usable if its signature scheme is allowed too.
    extra = [SIGNATURE_FAMILIES[f] for f in wanted]
    _set_sigalgs(ctx, list(dict.fromkeys([*policy.signature_algorithms, *extra])))
    loaded = []
    for family in wanted:
        if not pki.server_cert_path(family).exists():
            raise TlsConfigError(
                f"server certificate for {family} is missing; run `manage.py pqc_pki init`"
            )
        ctx.use_certificate(_first_cert(pki.server_cert_path(family)))
        _use_key(ctx, pki.server_key_path(family), pki.passphrase)
        ctx.check_privatekey()
        loaded.append(family)
    if not loaded:
        raise TlsConfigError("no server certificate to offer")
    if require_client_cert:
        store = ctx.get_cert_store()
        assert store is not None
        cas = pki.ca_certs()
        for ca in cas:
            store.add_cert(crypto.X509.from_cryptography(ca))
        for ca in cas:
            ctx.add_client_ca(ca)
        _install_client_verifier(
            ctx,
            SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT | SSL.VERIFY_CLIENT_ONCE,
            revocation,
        )
        ctx.set_verify_depth(2)
        # No session resumption with client certificates: a resumed session skips the verify
        # callback, so a certificate revoked after the first handshake would still get in.
        # Without the server cache, the (stateful) tickets OpenSSL still sends never resume.
        ctx.set_options(SSL.OP_NO_TICKET)
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    ctx.set_session_id(b"ota-pqc")
    return ctx


def build_client_context(
    *,
    config: PqcConfiguration | None = None,
    groups: list[str] | None = None,
    sigalgs: list[str] | None = None,
    cert_path: Path | None = None,
    key_path: Path | None = None,
    ca_path: Path | None = None,
    passphrase: bytes | None = None,
    verify_server: bool = True,
) -> SSL.Context:
    """A client context restricted to one configuration (or explicit groups and sigalgs)."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    _tls13_only(ctx)
    if config is not None:
        groups = [config.group]
        sigalgs = [config.signature_algorithm]
    if groups:
        _set_groups(ctx, groups)
    if sigalgs:
        _set_sigalgs(ctx, sigalgs)
    if cert_path is not None:
        ctx.use_certificate(_first_cert(cert_path))
        _use_key(ctx, key_path or cert_path, passphrase)
        ctx.check_privatekey()
    if verify_server:
        if ca_path is None:
            raise TlsConfigError("ca: a CA bundle is needed to verify the server")
        ctx.load_verify_locations(str(ca_path))
        ctx.set_verify(SSL.VERIFY_PEER, lambda conn, cert, errnum, depth, ok: bool(ok))
    else:
        ctx.set_verify(SSL.VERIFY_NONE, lambda *args: True)
    return ctx


def expect_hostname(conn: SSL.Connection, host: str) -> None:
    """Send SNI and make the handshake fail unless the server certificate names `host`."""
    param = lib.SSL_get0_param(conn._ssl)
    try:
        import ipaddress

        ipaddress.ip_address(host)
        is_ip = True
    except ValueError:
        is_ip = False
    if is_ip:
        lib.X509_VERIFY_PARAM_set1_ip(param, _ip_bytes(host), len(_ip_bytes(host)))
    else:
        conn.set_tlsext_host_name(host.encode())
        lib.X509_VERIFY_PARAM_set1_host(param, host.encode(), len(host.encode()))


def _ip_bytes(host: str) -> bytes:
    import ipaddress

    return ipaddress.ip_address(host).packed


def negotiated_group(conn: SSL.Connection) -> str | None:
    name = lib.SSL_get0_group_name(conn._ssl)
    return ffi.string(name).decode() if name != ffi.NULL else None


def certificate_family(cert: crypto.X509 | x509.Certificate | None) -> str | None:
    if cert is None:
        return None
    if isinstance(cert, crypto.X509):
        cert = cert.to_cryptography()
    try:
        return key_family(cert.public_key())  # type: ignore[arg-type]
    except PkiError:
        return None


@dataclass(frozen=True)
class TlsSessionInfo:
    """What a finished handshake negotiated, seen from one side."""

    version: str
    cipher: str | None
    group: str | None
    # The signature scheme of the server's certificate: what authenticated the server.
    signature_algorithm: str | None
    peer_key_type: str | None
    own_key_type: str | None
    peer_certificate: x509.Certificate | None


def session_info(conn: SSL.Connection, *, server_side: bool) -> TlsSessionInfo:
    peer = conn.get_peer_certificate(as_cryptography=True)
    own = conn.get_certificate(as_cryptography=True)
    peer_family = certificate_family(peer)
    own_family = certificate_family(own)
    server_family = own_family if server_side else peer_family
    return TlsSessionInfo(
        version=conn.get_protocol_version_name(),
        cipher=conn.get_cipher_name(),
        group=negotiated_group(conn),
        signature_algorithm=SIGNATURE_FAMILIES.get(server_family or ""),
        peer_key_type=peer_family,
        own_key_type=own_family,
        peer_certificate=peer,
    )


# Family of each server certificate, per context and keyed by its X509* address: this runs on
# every vehicle handshake. An address is only unique while its context lives, so the map dies
# with the context; a global one returned a freed context's family for a new certificate that
# reused its address.
_OWN_FAMILY: weakref.WeakKeyDictionary[SSL.Context, dict[int, str | None]] = (
    weakref.WeakKeyDictionary()
)


def _own_family(conn: SSL.Connection) -> str | None:
    pointer = lib.SSL_get_certificate(conn._ssl)
    if pointer == ffi.NULL:
        return None
    key = int(ffi.cast("uintptr_t", pointer))
    families = _OWN_FAMILY.setdefault(conn.get_context(), {})
    if key not in families:
        families[key] = certificate_family(conn.get_certificate(as_cryptography=True))
    return families[key]


class HandshakeRecord:
    """What a vehicle handshake negotiated, captured cheaply on the reactor thread.

    Parsing the client certificate (VIN, fingerprint, key type) waits until someone asks:
    the first HTTP request on the connection, or the worker thread that records the session.
    """

    __slots__ = ("_identity", "_lock", "cipher", "group", "peer", "server_family", "version")

    def __init__(self, conn: SSL.Connection, peer: crypto.X509) -> None:
        self.group = negotiated_group(conn)
        self.version = conn.get_protocol_version_name()
        self.cipher = conn.get_cipher_name()
        self.server_family = _own_family(conn)
        self.peer = peer
        self._identity: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def identity(self) -> dict[str, Any]:
        """The `ota_tls` dict (computed once, from any thread)."""
        with self._lock:
            if self._identity is None:
                cert = self.peer.to_cryptography()
                self._identity = {
                    "vin": common_name(cert),
                    "group": self.group,
                    "signature_algorithm": SIGNATURE_FAMILIES.get(self.server_family or ""),
                    "client_signature_algorithm": SIGNATURE_FAMILIES.get(
                        certificate_family(cert) or ""
                    ),
                    "version": self.version,
                    "cipher": self.cipher,
                    "cert_fingerprint": fingerprint(cert),
                    "cert_serial": serial_hex(cert.serial_number),
                    "cert_not_after": cert.not_valid_after_utc.isoformat(),
                }
            return self._identity


def capture_handshake(conn: SSL.Connection) -> HandshakeRecord | None:
    """A record of a finished handshake with a client certificate, else None."""
    peer = conn.get_peer_certificate()
    return HandshakeRecord(conn, peer) if peer is not None else None


def vehicle_tls_identity(conn: SSL.Connection) -> dict[str, Any] | None:
    """The `ota_tls` dict for a verified vehicle connection, or None without a client cert."""
    record = capture_handshake(conn)
    return record.identity() if record is not None else None
