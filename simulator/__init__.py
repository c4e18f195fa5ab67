"""A reference vehicle that speaks the server's MQTT protocol (docs/PROTOCOL.md)."""
