"""schemathesis against a live server: every operation of the OpenAPI schema, with generated
input, as an Admin. Each answer must not be a 5xx and must match the schema (status code,
content type, headers, body).

Safe by construction: the jobs the operations create are recorded but never sent to a
worker (enqueueing is a no-op in this test), and the seeded objects are refused by the
services (a gone volume, a backup still queued, a policy that selects nothing): whatever
the generator sends, no engine work starts. Bounded: 10 examples per operation
(CARGOHOLD_FUZZ_EXAMPLES=200 for a longer hunt).
"""

import json
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


def _openapi() -> dict:
    """The schema /api/schema/ serves, generated in this process (Django is set up at collection)."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


schema = schemathesis.openapi.from_dict(_openapi())


@pytest.fixture
def fuzz_target(live_server, token_for, monkeypatch):
    from django.utils import timezone

    from jobs import tasks
    from policies.models import BackupPolicy
    from tests.api.conftest import backup_row, mirror_volume

    monkeypatch.setattr(tasks.run_job, "apply_async", lambda *args, **kwargs: None)
    mirror_volume("fuzz-gone", gone_since=timezone.now(), size_bytes=1024)
    backup_row(volume_name="fuzz-gone", status="queued")
    BackupPolicy.objects.create(name="fuzz", selector_kind="names", selector_value="no-such-volume",
                                cron="0 2 * * *")
    _, raw = token_for("Admin")
    return live_server.url, {"Authorization": f"Bearer {raw}"}


@pytest.mark.django_db(transaction=True)
@schema.parametrize()
@settings(max_examples=int(os.environ.get("CARGOHOLD_FUZZ_EXAMPLES", "10")), deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_every_operation_answers_within_its_schema(case, fuzz_target):
    base_url, headers = fuzz_target
    response = case.call(base_url=base_url, headers=headers, timeout=30)
    case.validate_response(response, checks=CHECKS)


def test_the_fuzz_covers_every_operation():
    """A new endpoint is fuzzed without anyone remembering to add it."""
    operations = {(op.method.upper(), op.path) for op in (result.ok() for result in schema.get_all_operations())}
    assert ("POST", "/api/v1/backups/") in operations and ("GET", "/api/v1/audit/") in operations
    assert ("GET", "/api/v1/hosts/") in operations and ("GET", "/api/v1/jobs/") in operations
    assert len(operations) == 22
