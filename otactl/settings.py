"""Where otactl finds the server, its CA and the token: flags, then environment, then the
config file that `otactl login` writes (0600, under the user's config directory)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from otactl.errors import OtactlError

DEFAULT_URL = "https://localhost:8444"
# The bundle `manage.py pqc_pki init` writes, relative to the server's checkout.
DEFAULT_CA = Path("var/pki/ca-bundle.pem")


def config_path() -> Path:
    if os.environ.get("OTACTL_CONFIG"):
        return Path(os.environ["OTACTL_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "otactl" / "config.json"


def read_config() -> dict[str, str]:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise OtactlError(f"cannot read {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def write_config(data: dict[str, str]) -> Path:
    """Replace the config file; it holds a token, so only its owner may read it."""
    path = config_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
        os.chmod(tmp, 0o600)
        tmp.replace(path)
    except OSError as exc:
        raise OtactlError(f"cannot write {path}: {exc}") from None
    return path


@dataclass(frozen=True)
class Target:
    """The console to talk to and how to trust it."""

    host: str
    port: int
    ca: Path
    token: str

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"


def parse_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port or 443
    except ValueError:
        raise OtactlError(f"--url: {url!r} has a port that is not a number") from None
    if parts.scheme != "https" or not parts.hostname:
        raise OtactlError(f"--url: {url!r} is not an https://host:port URL")
    return parts.hostname, port


def resolve(*, url: str | None, ca: str | None, token: str | None = None) -> Target:
    stored = read_config()
    chosen_url = url or os.environ.get("OTACTL_URL") or stored.get("url") or DEFAULT_URL
    chosen_ca = ca or os.environ.get("OTACTL_CA") or stored.get("ca") or str(DEFAULT_CA)
    chosen_token = token or os.environ.get("OTACTL_TOKEN") or stored.get("token") or ""
    host, port = parse_url(chosen_url)
    return Target(host=host, port=port, ca=Path(chosen_ca), token=chosen_token)
