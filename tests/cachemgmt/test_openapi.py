"""The OpenAPI schema documents every endpoint, and the API conforms to it under generated requests."""

from __future__ import annotations

import io

import pytest
import schemathesis
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, Phase, given, settings

from accounts.models import User
from tests.factories import UserFactory
from tests.support.tokens import access_token

pytestmark = pytest.mark.django_db(transaction=True)

COMMON = {"503", "406"}
WITH_BODY = COMMON | {"413", "415"}
DOCUMENTED = {
    "/api/auth/login": {"post": {"200", "400", "401", "429"} | WITH_BODY},
    "/api/auth/refresh": {"post": {"200", "400", "401", "429"} | WITH_BODY},
    "/api/auth/sessions": {"get": {"200", "401"} | COMMON},
    "/api/auth/sessions/{session_id}": {"delete": {"204", "401", "404"} | COMMON},
    "/api/auth/logout": {"post": {"204", "400", "401"} | WITH_BODY},
    "/api/me": {"get": {"200", "401"} | COMMON},
    "/api/admin/cache/stats": {"get": {"200", "401", "403"} | COMMON},
    "/api/admin/cache/clear": {"post": {"200", "400", "401", "403"} | WITH_BODY},
    "/api/admin/zones/sync": {"post": {"200", "202", "401", "403"} | COMMON},
    "/health": {"get": {"200", "503"}},
    "/health/live": {"get": {"200"}},
}


def test_schema_documents_every_endpoint_with_its_error_responses(client):
    response = client.get("/api/schema/?format=json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    for path, operations in DOCUMENTED.items():
        assert path in schema["paths"], path
        for method, statuses in operations.items():
            documented = set(schema["paths"][path][method]["responses"])
            assert statuses <= documented, (path, method, documented)
    assert schema["paths"]["/api/me"]["get"]["responses"]["503"]["headers"]["Retry-After"]["schema"] == {
        "type": "integer"
    }
    assert set(schema["components"]["schemas"]["Detail"]["properties"]) == {"detail", "code"}
    login_400 = schema["paths"]["/api/auth/login"]["post"]["responses"]["400"]["content"]["application/json"]
    assert len(login_400["schema"]["oneOf"]) == 2  # field errors, or one error
    sync = schema["paths"]["/api/admin/zones/sync"]["post"]["responses"]["200"]["content"]["application/json"]
    assert len(schema["components"]["schemas"][sync["schema"]["$ref"].rsplit("/", 1)[1]]["properties"]) == 17
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }


def test_schema_generation_has_no_warnings():
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=io.StringIO())


def fuzz(headers_for_case) -> None:
    """Generated requests (valid and invalid) against every operation: no 5xx, no schema violation."""
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    strategy = schema.as_strategy(schemathesis.GenerationMode.POSITIVE) | schema.as_strategy(
        schemathesis.GenerationMode.NEGATIVE
    )

    # A schema-valid body can still name a user that does not exist (400): acceptance of
    # valid data depends on the database, which no schema expresses. Every other check runs.
    excluded = [schemathesis.checks.positive_data_acceptance]

    @settings(
        max_examples=120,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case) -> None:
        case.call_and_validate(headers=headers_for_case(), excluded_checks=excluded)

    check()


def test_api_conforms_to_its_schema_for_anonymous_callers():
    UserFactory(username="alice")
    fuzz(lambda: {})


def test_api_conforms_to_its_schema_for_staff(broker_drained):
    staff = UserFactory(is_staff=True)

    def staff_headers() -> dict[str, str]:
        # A generated logout may end every session of the user: a new session per case.
        token = access_token(User.objects.get(pk=staff.pk))
        return {"Authorization": f"Bearer {token}"}

    fuzz(staff_headers)
