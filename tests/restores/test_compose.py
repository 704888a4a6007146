"""The Compose deployment shares the upload folder between web (writes) and worker (imports)."""

from tests.test_deployment import _compose_config


def test_uploads_are_shared_by_web_and_worker_while_backups_stay_read_only_for_web():
    import yaml

    services = yaml.safe_load(_compose_config())["services"]

    def mounts(name):  # "source:target[:mode]" as docker-compose (v1) prints them
        return {spec.split(":")[1]: spec for spec in services[name]["volumes"] if isinstance(spec, str)}

    for name in ("web", "worker"):
        assert mounts(name)["/var/lib/cargohold/uploads"] in (
            "uploads:/var/lib/cargohold/uploads", "uploads:/var/lib/cargohold/uploads:rw"), name
        assert services[name]["environment"]["UPLOAD_DIR"] == "/var/lib/cargohold/uploads"
    assert mounts("web")["/var/lib/cargohold/backups"].endswith(":ro")
