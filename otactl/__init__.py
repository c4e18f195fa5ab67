"""otactl: the operator's command-line client of the OTA server, over PQC-TLS."""
