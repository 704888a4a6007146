"""Job ids are unique within one database only: two Cargohold installations (or two test
runs) on one engine must never remove each other's helper containers of "job 7"."""

import pytest
from django.conf import settings

from tests import dockercli
from volumes import engine

pytestmark = [pytest.mark.engine]


def test_only_this_installations_helpers_of_a_job_are_removed():
    ours = dockercli.run_container(labels=engine.helper_labels("backup", 7))
    theirs = dockercli.run_container(labels={**engine.helper_labels("backup", 7), engine.INSTALL_LABEL: "another"})
    older = dockercli.run_container(labels={engine.HELPER_LABEL: "backup", "cargohold.job": "7"})

    removed = engine.remove_job_helpers(job_id=7)

    alive = set(dockercli.docker("ps", "-aq", "--no-trunc", "--filter", f"label={dockercli.TEST_LABEL}").split())
    ids = {name: dockercli.docker("inspect", "-f", "{{.Id}}", name).strip() for name in (theirs, older)}
    assert removed == 1
    assert ids[theirs] in alive and ids[older] in alive
    assert not any(dockercli.docker("ps", "-aq", "--filter", f"name=^{ours}$").split())


def test_each_installation_has_its_own_id_and_every_helper_carries_it():
    assert settings.INSTALL_ID and engine.helper_labels("x", None)[engine.INSTALL_LABEL] == settings.INSTALL_ID
    assert engine.is_helper_of(engine.helper_labels("restore", 5), {"5"})
    assert not engine.is_helper_of({**engine.helper_labels("restore", 5), engine.INSTALL_LABEL: "other"}, {"5"})
