"""Operator token endpoints: log in with a password for a token, log out one or all tokens."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.urls import path
from drf_spectacular.utils import extend_schema
from knox.settings import knox_settings
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, Throttled
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from core import auth_schema  # noqa: F401  (registers the token scheme with the schema)
from core.auth import OperatorTokenAuthentication
from core.tokens import create_token, revoke_all_tokens, revoke_token


class LoginThrottle(AnonRateThrottle):
    """Token logins per client address, at OTA_TOKEN_LOGIN_THROTTLE (read on every request)."""

    scope = "token_login"

    def get_rate(self) -> str:
        return settings.OTA_TOKEN_LOGIN_THROTTLE

    def allow_request(self, request: Any, view: Any) -> bool:
        # The rate may change at run time (tests, settings reload); parse it each time.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)


class LoginRefused(APIException):
    """401 for a wrong username or password (DRF would make AuthenticationFailed a 403 here,
    as this endpoint has no authentication scheme to name in WWW-Authenticate)."""

    status_code = status.HTTP_401_UNAUTHORIZED
    default_code = "authentication_failed"
    default_detail = "username or password is wrong"


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    expiry = serializers.DateTimeField(allow_null=True)


class LoginView(APIView):
    """Exchange a username and password for an API token (shown once)."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginThrottle]

    @extend_schema(request=LoginSerializer, responses={200: TokenSerializer}, tags=["auth"])
    def post(self, request: Request) -> Response:
        credentials = LoginSerializer(data=request.data)
        credentials.is_valid(raise_exception=True)
        user = authenticate(request._request, **credentials.validated_data)
        if getattr(request._request, "axes_locked_out", False):
            raise Throttled(
                detail="too many failed logins; try again later",
                wait=settings.AXES_COOLOFF_TIME.total_seconds(),
            )
        if user is None:
            raise LoginRefused()
        token, plain = create_token(user, actor=user, lifetime=knox_settings.TOKEN_TTL)
        return Response(TokenSerializer({"token": plain, "expiry": token.expiry}).data)


class LogoutView(APIView):
    """Revoke the token this request came with."""

    authentication_classes = [OperatorTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={204: None}, tags=["auth"])
    def post(self, request: Request) -> Response:
        revoke_token(request.auth, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllView(APIView):
    """Revoke every token of the user this request's token belongs to."""

    authentication_classes = [OperatorTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={204: None},
        tags=["auth"],
        description="Revokes all the caller's tokens.",
    )
    def post(self, request: Request) -> Response:
        revoke_all_tokens(request.user, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


app_name = "auth-api"
urlpatterns = [
    path("auth/login", LoginView.as_view(), name="login"),
    path("auth/logout", LogoutView.as_view(), name="logout"),
    path("auth/logout-all", LogoutAllView.as_view(), name="logout-all"),
]
