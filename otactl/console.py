"""HTTPS requests to the console listener over PQC-TLS, with answers turned into data or
one-line errors."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode

from OpenSSL import SSL

from otactl.errors import OtactlError
from otactl.settings import Target
from pqc.client import (
    ClientCredentials,
    HttpResponse,
    TlsRefused,
    https_request,
    open_connection,
    read_response_head,
)

# Hybrid ML-KEM-768 + X25519: the post-quantum group every console listener offers.
GROUP = "X25519MLKEM768"
TIMEOUT_SECONDS = 30.0
NOT_LOGGED_IN = "not logged in, or the token expired or was revoked: run otactl login"


def _tls_reason(exc: Exception) -> str:
    """The last OpenSSL reason in the message ('certificate verify failed'), else all of it."""
    reasons = re.findall(r"'([^']+)'\)\]", str(exc))
    return reasons[-1] if reasons else str(exc)


class Console:
    def __init__(self, target: Target) -> None:
        self.target = target

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        authenticated: bool = True,
    ) -> HttpResponse:
        self._check_ready(authenticated=authenticated)
        all_headers = {"Accept": "application/json", **(headers or {})}
        if authenticated:
            all_headers["Authorization"] = f"Token {self.target.token}"
        if query:
            path = f"{path}?{urlencode({k: v for k, v in query.items() if v is not None})}"
        with self._one_line_errors():
            response = https_request(
                self.target.host,
                self.target.port,
                method,
                f"/api/v1/{path}",
                json=json_body,
                body=body,
                headers=all_headers,
                **self._connect_options(),
            )
        if response.status >= 400:
            raise OtactlError(_error_line(response, authenticated=authenticated))
        return response

    def _check_ready(self, *, authenticated: bool) -> None:
        if authenticated and not self.target.token:
            raise OtactlError(NOT_LOGGED_IN)
        if not self.target.ca.is_file():
            raise OtactlError(
                f"CA bundle {self.target.ca} not found: pass --ca or set OTACTL_CA "
                "(the server's var/pki/ca-bundle.pem)"
            )

    def _connect_options(self) -> dict[str, Any]:
        return {
            "groups": [GROUP],
            "credentials": ClientCredentials(ca=self.target.ca),
            "server_hostname": self.target.host,
            "timeout": TIMEOUT_SECONDS,
        }

    @contextlib.contextmanager
    def _one_line_errors(self) -> Iterator[None]:
        try:
            yield
        except SSL.Error as exc:
            # Raised while loading the CA bundle, before any connection.
            raise OtactlError(
                f"CA bundle {self.target.ca} is not usable: {_tls_reason(exc)}"
            ) from None
        except TlsRefused as exc:
            raise OtactlError(f"TLS with {self.target.url} failed: {_tls_reason(exc)}") from None
        except (ValueError, IndexError):
            # The TLS peer is not an HTTP server (a status line that does not parse).
            raise OtactlError(f"{self.target.url} did not answer in HTTP") from None
        except TimeoutError:
            raise OtactlError(f"{self.target.url} did not answer within {TIMEOUT_SECONDS:.0f} s")
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise OtactlError(f"cannot connect to {self.target.url}: {reason}") from None

    def download(self, path: str, fh: BinaryIO) -> int:
        """Stream a GET's body into `fh` as it arrives; the number of bytes written."""
        self._check_ready(authenticated=True)
        head = (
            f"GET /api/v1/{path} HTTP/1.1\r\nHost: {self.target.host}\r\n"
            f"Authorization: Token {self.target.token}\r\nConnection: close\r\n\r\n"
        )
        with self._one_line_errors():
            conn = open_connection(self.target.host, self.target.port, **self._connect_options())
            with conn:
                conn.sendall(head.encode("iso-8859-1"))
                status, headers, received = read_response_head(conn)
                if status >= 400:
                    while chunk := conn.recv():
                        received += chunk
                    answer = HttpResponse(status=status, headers=headers, body=received)
                    raise OtactlError(_error_line(answer, authenticated=True))
                expected = int(headers.get("content-length", "-1"))
                written = 0
                while received:
                    fh.write(received)
                    written += len(received)
                    received = conn.recv()
        if expected >= 0 and written != expected:
            raise OtactlError(f"the download stopped after {written} of {expected} bytes")
        return written

    def get(self, path: str, **query: Any) -> Any:
        return _json(self.request("GET", path, query=query))

    def post(self, path: str, payload: Any = None) -> Any:
        return _json(self.request("POST", path, json_body=payload if payload is not None else {}))

    def upload(self, path: str, fields: dict[str, str], file: Path) -> Any:
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise OtactlError(f"cannot read {file}: {exc.strerror or exc}") from None
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in fields.items()
        ]
        head = (
            "".join(parts) + f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{file.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        payload = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
        content_type = f"multipart/form-data; boundary={boundary}"
        response = self.request("POST", path, body=payload, headers={"Content-Type": content_type})
        return _json(response)


def _json(response: HttpResponse) -> Any:
    if not response.body:
        return None
    try:
        return response.json()
    except ValueError:
        raise OtactlError(f"HTTP {response.status}: the answer is not JSON") from None


def _error_line(response: HttpResponse, *, authenticated: bool) -> str:
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        error = {}
    if response.status == 401 and authenticated:
        return NOT_LOGGED_IN
    message = error.get("message") or f"the server answered HTTP {response.status}"
    fields = error.get("fields") or {}
    if fields:
        message = "; ".join(
            f"{name}: {' '.join(map(str, problems)) if isinstance(problems, list) else problems}"
            for name, problems in fields.items()
        )
    if response.status == 429 and response.headers.get("retry-after"):
        message += f" (retry after {response.headers['retry-after']} s)"
    return f"HTTP {response.status}: {message}"


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
