"""An Admin moves a volume to another host from its page and watches the transfer's three
steps to the end without reloading. Real browser, real engines, real workers."""

from __future__ import annotations

import pytest

from hosts.models import Host, Transfer
from tests import dockercli
from tests.conftest import wait_for
from volumes.services import mirror_sync

pytestmark = [pytest.mark.browser, pytest.mark.engine, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_an_admin_moves_a_volume_from_its_page(page, login, extra_engine_e1, host_workers, celery_worker):
    from hosts.services import host_save

    source = dockercli.create_volume()
    dockercli.fill_volume(source, "echo hello > /data/hello.txt && mkdir /data/d && echo x > /data/d/x")
    mirror_sync()
    host_save(name="e1", actor_name="test", **extra_engine_e1.host_fields())
    host_workers("e1", watcher=False)
    wait_for(lambda: Host.objects.get(name="e1").online, timeout=30, message="e1's heartbeat")
    target = f"{source}-b"
    try:
        login("Admin")
        page.goto(f"/volumes/{source}/")
        page.click('a[data-action="transfer"]')
        page.wait_for_url(f"**/volumes/{source}/transfer/")
        assert page.input_value('input[name="target_name"]') == source
        page.select_option('select[name="target_host"]', "e1")
        page.fill('input[name="target_name"]', target)
        page.check('input[name="remove_source"]')
        page.click("#transfer-form button[type=submit]")
        page.wait_for_url("**/transfers/*/")
        page.evaluate("window.__sameDocument = true")

        page.locator('#transfer-status[data-phase="done"]').wait_for(timeout=180_000)
        assert page.evaluate("window.__sameDocument") is True  # followed by htmx polling, not reloaded
        for step in ("1", "2", "3"):
            assert page.get_attribute(f'.transfer-step[data-step="{step}"]', "data-step-status") == "succeeded"
        assert page.get_attribute("#transfer-new-volume a", "href") == f"/volumes/e1:{target}/"
        transfer = Transfer.objects.get()
        assert transfer.remove_source and transfer.created_by.username.startswith("admin")
        assert extra_engine_e1.run("cat /data/hello.txt /data/d/x", volume=target) == "hello\nx\n"
        assert not dockercli.volume_exists(source)
    finally:
        if extra_engine_e1.volume_exists(target):
            extra_engine_e1.client.volumes.get(target).remove(force=True)
