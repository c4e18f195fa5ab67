"""Telematics: vehicle MQTT messages to the domain services, and the bridge that carries them.

It sits above the domain apps (vehicles, ota, diagnostics) whose services it calls; core.mqtt
keeps the transport-neutral parts (connection, broker, publisher, topics, schemas).
"""
