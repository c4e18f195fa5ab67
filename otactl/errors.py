from __future__ import annotations


class OtactlError(Exception):
    """Ends the command with this one line on stderr and exit status `status`."""

    def __init__(self, message: str, *, status: int = 1) -> None:
        super().__init__(message)
        self.status = status
