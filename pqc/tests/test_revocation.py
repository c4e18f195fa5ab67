from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.task import Clock

from pqc.revocation import OpenConnections
from pqc.tests.conftest import FleetMaterial
from pqc.tls import RevocationList

VIN_D = "WVWZZZ1JZXW000004"


@dataclass
class _Transport:
    connected: bool = True


@dataclass
class _Connection:
    """Stands for the TLS protocol of one open connection."""

    transport: _Transport = field(default_factory=_Transport)
    aborted: int = 0

    def abortConnection(self) -> None:  # noqa: N802
        self.aborted += 1
        self.transport.connected = False

    __hash__ = object.__hash__


def _serial(fleet: FleetMaterial, name: str) -> int:
    return fleet.serial_of(fleet.issue(VIN_D, "ecdsa-p256", name=name))


def test_sweep_cuts_connections_of_revoked_serials_only(fleet: FleetMaterial) -> None:
    revoked, kept = _serial(fleet, "sweep-revoked"), _serial(fleet, "sweep-kept")
    connections = OpenConnections(RevocationList(fleet.pki), interval=1, reactor=Clock())
    first, second, other = _Connection(), _Connection(), _Connection()
    connections.track(first, revoked)
    connections.track(second, revoked)
    connections.track(other, kept)
    assert connections.sweep() == 0

    fleet.pki.revoke(revoked)
    assert connections.sweep() == 2
    assert (first.aborted, second.aborted, other.aborted) == (1, 1, 0)
    assert len(connections) == 1


def test_sweep_forgets_closed_connections(fleet: FleetMaterial) -> None:
    connections = OpenConnections(RevocationList(fleet.pki), interval=1, reactor=Clock())
    gone = _Connection(transport=_Transport(connected=False))
    connections.track(gone, _serial(fleet, "sweep-gone"))
    assert connections.sweep() == 0
    assert len(connections) == 0


def test_sweeps_run_every_interval_once_started(fleet: FleetMaterial) -> None:
    clock = Clock()
    serial = _serial(fleet, "sweep-timed")
    connections = OpenConnections(RevocationList(fleet.pki), interval=2, reactor=clock)
    connection = _Connection()
    connections.track(connection, serial)
    connections.start()
    fleet.pki.revoke(serial)
    clock.advance(1.9)
    assert connection.aborted == 0
    clock.advance(0.1)
    assert connection.aborted == 1
    connections.stop()
    assert not clock.getDelayedCalls()


def test_an_unreadable_revocation_list_keeps_connections_and_sweeping(
    fleet: FleetMaterial,
) -> None:
    class Broken(RevocationList):
        def revoked_serials(self) -> frozenset[int]:
            raise OSError("CRL unreadable")

    connections = OpenConnections(Broken(fleet.pki), interval=1, reactor=Clock())
    connection = _Connection()
    connections.track(connection, 1)
    assert connections.sweep() == 0
    assert connection.aborted == 0


def test_a_sweep_looks_at_the_revocation_files_once_however_many_connections(
    fleet: FleetMaterial, monkeypatch
) -> None:
    # A front holding 5,000 vehicles stat()ed the CRL files for each of them at every sweep.
    revocation = RevocationList(fleet.pki)
    looked: list[int] = []
    original = revocation._current_stamp

    def counting() -> tuple:
        looked.append(1)
        return original()

    monkeypatch.setattr(revocation, "_current_stamp", counting)
    connections = OpenConnections(revocation, interval=1, reactor=Clock())
    revoked = _serial(fleet, "sweep-many-revoked")
    victims = [_Connection() for _ in range(3)]
    for serial, connection in enumerate([_Connection() for _ in range(200)], start=10_000):
        connections.track(connection, serial)
    for victim in victims:
        connections.track(victim, revoked)
    fleet.pki.revoke(revoked)

    assert connections.sweep() == 3
    assert len(looked) == 1
    assert [v.aborted for v in victims] == [1, 1, 1]
    assert len(connections) == 200
