from __future__ import annotations

from django.core.cache import cache

from conftest import vehicle_api_client
from vehicles.api.access import VehicleRateThrottle


def test_vehicle_requests_are_throttled_per_vin(
    monkeypatch, vehicle, other_vehicle, viewer_client
) -> None:
    cache.clear()
    monkeypatch.setattr(VehicleRateThrottle, "THROTTLE_RATES", {"vehicle": "2/minute"})
    client = vehicle_api_client(vehicle.vin)
    statuses = [client.get(f"/api/v1/vehicles/{vehicle.vin}").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    # Another vehicle has its own budget, and operators are not limited by the vehicle scope.
    other = vehicle_api_client(other_vehicle.vin)
    assert other.get(f"/api/v1/vehicles/{other_vehicle.vin}").status_code == 200
    for _ in range(3):
        assert viewer_client.get(f"/api/v1/vehicles/{vehicle.vin}").status_code == 200
    cache.clear()
