"""Authentication: the mutual-TLS identity a vehicle arrives with, operators by hashed API tokens.

The REST authentication of vehicles (which needs the vehicle records) is
`vehicles.api.authentication.VehicleTLSAuthentication`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from axes.backends import AxesStandaloneBackend
from django.utils import timezone
from knox import auth as knox_auth

# Key of the TLS identity in a WSGI/test request's META. Header-borne values always arrive
# as HTTP_*, so no client can forge this key; over ASGI the identity is in scope["ota_tls"].
TLS_META_KEY = "ota.tls"


@dataclass(frozen=True)
class VehicleIdentity:
    """A vehicle authenticated by its client certificate."""

    vin: str
    tls: dict[str, Any]
    vehicle: Any = None  # vehicles.Vehicle, or None before registration

    @property
    def is_authenticated(self) -> bool:
        return True


class VehicleUser:
    """Stands in for request.user when a vehicle calls; it has no operator rights."""

    is_authenticated = True
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, identity: VehicleIdentity) -> None:
        self.identity = identity
        self.username = f"vehicle:{identity.vin}"

    def __str__(self) -> str:
        return self.username

    @property
    def groups(self) -> Any:
        from django.contrib.auth.models import Group

        return Group.objects.none()


def tls_info_of(request: Any) -> dict[str, Any] | None:
    """The TLS details of the connection a request came on, if it came on mutual TLS."""
    django_request = getattr(request, "_request", request)
    scope = getattr(django_request, "scope", None)
    info = scope.get("ota_tls") if isinstance(scope, dict) else None
    if info is None:
        info = django_request.META.get(TLS_META_KEY)
    return info if isinstance(info, dict) else None


class OperatorTokenAuthentication(knox_auth.TokenAuthentication):
    """`Authorization: Token <token>` for operators; tokens are kept as SHA-512 digests.

    An expired token is refused but not deleted here: tokens end only through core.tokens,
    which audits it.
    """

    def _cleanup_token(self, auth_token: Any) -> bool:
        return auth_token.expiry is not None and auth_token.expiry <= timezone.now()


class LoginLockoutBackend(AxesStandaloneBackend):
    """Refuses logins from a client locked out after repeated failures (django-axes).

    A login without a request (management commands, in-process checks) has no client address
    to count failures against, so it is left to the other backends.
    """

    def authenticate(self, request: Any, *args: Any, **kwargs: Any) -> None:
        if request is None:
            return None
        return super().authenticate(request, *args, **kwargs)
