"""Request and response shapes of the accounts API."""

from __future__ import annotations

from rest_framework import serializers


class LoginInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150, trim_whitespace=False)
    password = serializers.CharField(max_length=1024, trim_whitespace=False, style={"input_type": "password"})
    device = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")

    def validate_username(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("This field may not be blank.")
        if "\x00" in value:
            raise serializers.ValidationError("Null characters are not allowed.")
        return value


class _StringField(serializers.CharField):
    """A string as sent: a number or a boolean is refused, not turned into text."""

    def to_internal_value(self, data: object) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class RefreshInputSerializer(serializers.Serializer):
    refresh_token = _StringField(max_length=128, trim_whitespace=False)

    def validate_refresh_token(self, value: str) -> str:
        if not value.isascii() or not value.isprintable():
            raise serializers.ValidationError("Not a refresh token.")
        return value


class LogoutInputSerializer(serializers.Serializer):
    all = serializers.BooleanField(required=False, default=False)


class SessionOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    device = serializers.CharField()
    ip = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    current = serializers.BooleanField()


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.CharField()
    display_name = serializers.CharField()
    is_staff = serializers.BooleanField()
    is_superuser = serializers.BooleanField()


class OrganizationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    slug = serializers.CharField()
    name = serializers.CharField()


class RoleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class ZoneSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()


class UserContextSerializer(serializers.Serializer):
    """Documents the context JSON (the view returns the cached dict as it is)."""

    user = UserSerializer()
    organization = OrganizationSerializer(allow_null=True)
    role = RoleSerializer(allow_null=True)
    permissions = serializers.ListField(child=serializers.CharField())
    zones = ZoneSerializer(many=True)
    zones_status = serializers.ChoiceField(choices=["ready", "stale", "pending"])
    version = serializers.CharField()


class LoginOutputSerializer(serializers.Serializer):
    access_token = serializers.CharField()
    token_type = serializers.CharField()
    expires_in = serializers.IntegerField()
    refresh_token = serializers.CharField()
    refresh_expires_in = serializers.IntegerField()
    session_id = serializers.CharField()
    context = UserContextSerializer()  # type: ignore[assignment]  # a field, popped by DRF's metaclass
