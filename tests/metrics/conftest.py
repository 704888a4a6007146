import pytest

from tests.backups.conftest import backup_row, volume_with_files  # noqa: F401  (shared fixtures)


@pytest.fixture
def scrape(client, settings):
    """scrape() -> {(name, frozenset(labels.items())): value} from /metrics, with a token."""
    from prometheus_client.parser import text_string_to_metric_families

    settings.METRICS_TOKEN = "metrics-token-for-tests"

    def get() -> dict:
        response = client.get("/metrics", headers={"Authorization": "Bearer metrics-token-for-tests"})
        assert response.status_code == 200, response.content
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(response.content.decode()) for s in family.samples}

    return get


def value(samples: dict, name: str, **labels):
    return samples.get((name, frozenset(labels.items())))
