"""The reference vehicle: REST over PQC-TLS and MQTT through the TLS front (`python -m simulator`).

`simulator.reference.ReferenceVehicle` assembles it: `simulator.https` (keep-alive HTTPS with
resumable Range downloads), `simulator.ota` (the update agent), `simulator.vehicle` (MQTT:
presence, telemetry, control, desired state, UDS relay) and `simulator.ecus` (the ECUs).
"""
