"""Thin API views: parse, call one service or selector, render."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated, NotFound, Throttled
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ContextUser
from accounts.metrics import LOGINS, REFRESHES
from accounts.selectors import session_list, session_of_user
from accounts.serializers import (
    LoginInputSerializer,
    LoginOutputSerializer,
    LogoutInputSerializer,
    RefreshInputSerializer,
    SessionOutputSerializer,
    UserContextSerializer,
)
from accounts.services import LoginFailed, auth_login, auth_logout
from accounts.sessions import EndReason, IssuedSession, RefreshRefused, session_refresh, sessions_end
from accounts.throttling import LoginThrottled, client_address, refresh_attempt_reserve
from accounts.tokens import TokenClaims
from cachemgmt.serializers import DetailSerializer
from project.negotiation import JSON

_UNAUTHORIZED = OpenApiResponse(DetailSerializer, description="Missing, malformed, expired or revoked token.")
# Answers carrying a token or a context are never stored by a browser or a proxy.
_NO_STORE = {"Cache-Control": "no-store"}


def _issued_body(issued: IssuedSession) -> dict[str, Any]:
    return {
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "refresh_token": issued.refresh_token,
        "refresh_expires_in": issued.refresh_expires_in,
        "session_id": issued.session_id,
        "context": issued.context.public,
    }


def _bearer_claims(request: Request) -> TokenClaims:
    claims = request.auth
    if not isinstance(claims, TokenClaims):  # an admin browser session: no token session to act on
        raise AuthenticationFailed("Bearer token required.", code="not_authenticated")
    return claims


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
        data = serializer.validated_data
        try:
            issued = auth_login(
                username=data["username"],
                password=data["password"],
                client_address=client_address(request),
                device=data["device"].strip() or request.META.get("HTTP_USER_AGENT", "")[:1000],
            )
        except LoginThrottled as exc:
            LOGINS.labels("throttled").inc()
            raise Throttled(wait=exc.retry_after, detail="Too many failed login attempts.") from None
        except LoginFailed as exc:
            LOGINS.labels("failed").inc()
            raise AuthenticationFailed(str(exc), code="invalid_credentials") from None
        LOGINS.labels("succeeded").inc()
        return Response(_issued_body(issued), headers=_NO_STORE)

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class RefreshApi(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="auth_refresh",
        request=RefreshInputSerializer,
        responses={
            200: LoginOutputSerializer,
            400: OpenApiResponse(description="Malformed body (field errors)."),
            401: OpenApiResponse(
                DetailSerializer,
                description="Unknown, expired or retired refresh token (code refresh_invalid); a retired one "
                "presented again after the leeway ends its session (code refresh_reused).",
            ),
            429: OpenApiResponse(DetailSerializer, description="Too many failed refreshes; see Retry-After."),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = RefreshInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            attempt = refresh_attempt_reserve(address=client_address(request))
        except LoginThrottled as exc:
            REFRESHES.labels("throttled").inc()
            raise Throttled(wait=exc.retry_after, detail="Too many failed refreshes.") from None
        try:
            issued = session_refresh(refresh_token=serializer.validated_data["refresh_token"])
        except RefreshRefused as exc:
            REFRESHES.labels(exc.code).inc()
            raise AuthenticationFailed(str(exc), code=exc.code) from None
        attempt.succeeded()
        REFRESHES.labels("succeeded").inc()
        return Response(_issued_body(issued), headers=_NO_STORE)

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class SessionListApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="auth_sessions",
        responses={200: SessionOutputSerializer(many=True), 401: _UNAUTHORIZED},
    )
    def get(self, request: Request) -> Response:
        claims = _bearer_claims(request)
        sessions = session_list(user_id=claims.user_id, token_version=claims.token_version)
        body = [
            {
                "id": str(session.pk),
                "device": session.device,
                "ip": session.ip,
                "created_at": session.created_at,
                "last_used_at": session.last_used_at,
                "expires_at": session.expires_at,
                "current": str(session.pk) == claims.session_id,
            }
            for session in sessions
        ]
        return Response(SessionOutputSerializer(body, many=True).data, headers=_NO_STORE)


class SessionEndApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="auth_session_end",
        responses={
            204: OpenApiResponse(description="The session and its access tokens ended."),
            401: _UNAUTHORIZED,
            404: OpenApiResponse(DetailSerializer, description="No such session of yours."),
        },
    )
    def delete(self, request: Request, session_id: str) -> Response:
        claims = _bearer_claims(request)
        session = session_of_user(user_id=claims.user_id, session_id=session_id)
        if session is None:
            raise NotFound("No such session.")
        sessions_end(user_id=claims.user_id, session_ids=[str(session.pk)], reason=EndReason.USER)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="auth_logout",
        request=LogoutInputSerializer,
        responses={
            204: OpenApiResponse(
                description="The current session (with all, every session of the user) and its tokens ended."
            ),
            400: OpenApiResponse(description="Malformed body (field errors)."),
            401: _UNAUTHORIZED,
        },
    )
    def post(self, request: Request) -> Response:
        serializer = LogoutInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        auth_logout(claims=_bearer_claims(request), everywhere=serializer.validated_data["all"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="me", responses={200: UserContextSerializer, 401: _UNAUTHORIZED})
    def get(self, request: Request) -> HttpResponseBase:
        user = request.user
        if not isinstance(user, ContextUser):
            raise NotAuthenticated()
        if request.accepted_media_type == JSON and type(request.accepted_renderer) is JSONRenderer:
            # Plain JSON asked for (no indent or other parameter): the context's body, rendered
            # once per context, with the headers DRF's rendering would give it.
            return HttpResponse(user.context.public_json(), content_type=JSON, headers=_NO_STORE)
        return Response(user.context.public, headers=_NO_STORE)
