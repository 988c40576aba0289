"""Thin API views: parse, call one service or selector, render."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated, Throttled
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ContextUser
from accounts.serializers import (
    LoginInputSerializer,
    LoginOutputSerializer,
    LogoutInputSerializer,
    UserContextSerializer,
)
from accounts.services import LoginFailed, auth_login, auth_logout
from accounts.throttling import LoginThrottled, client_address
from accounts.tokens import TokenClaims
from cachemgmt.serializers import DetailSerializer

_UNAUTHORIZED = OpenApiResponse(DetailSerializer, description="Missing, malformed, expired or revoked token.")


class LoginApi(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="auth_login",
        request=LoginInputSerializer,
        responses={
            200: LoginOutputSerializer,
            400: OpenApiResponse(description="Malformed body (field errors)."),
            401: OpenApiResponse(DetailSerializer, description="Wrong credentials or inactive user."),
            429: OpenApiResponse(DetailSerializer, description="Too many failures; see Retry-After."),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = LoginInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            result = auth_login(
                username=serializer.validated_data["username"],
                password=serializer.validated_data["password"],
                client_address=client_address(request),
            )
        except LoginThrottled as exc:
            raise Throttled(wait=exc.retry_after, detail="Too many failed login attempts.") from None
        except LoginFailed as exc:
            raise AuthenticationFailed(str(exc)) from None
        return Response(
            {
                "access_token": result.access_token,
                "token_type": "Bearer",
                "expires_in": result.expires_in,
                "context": result.context.public,
            }
        )

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class LogoutApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="auth_logout",
        request=LogoutInputSerializer,
        responses={
            204: OpenApiResponse(description="The token (with all, every token of the user) no longer works."),
            400: OpenApiResponse(description="Malformed body (field errors)."),
            401: _UNAUTHORIZED,
        },
    )
    def post(self, request: Request) -> Response:
        serializer = LogoutInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        claims = request.auth
        if not isinstance(claims, TokenClaims):  # not a bearer token: nothing to revoke here
            raise AuthenticationFailed("Bearer token required.")
        auth_logout(claims=claims, everywhere=serializer.validated_data["all"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="me", responses={200: UserContextSerializer, 401: _UNAUTHORIZED})
    def get(self, request: Request) -> Response:
        user = request.user
        if not isinstance(user, ContextUser):
            raise NotAuthenticated()
        return Response(user.context.public)
