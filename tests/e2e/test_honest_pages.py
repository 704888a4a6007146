"""Pages that tell the truth and keys that do what they say, in a browser: a backup's
buttons appear on its page when it ends; Enter in the New volume form's name field submits
the form and applies no preset; a restore into a new volume leaves Compose's labels out
unless ticked; a page's polls never take the flash message meant for another page."""

import json

import pytest

from jobs.models import Job
from tests import dockercli
from tests.restores.conftest import run_backup_now
from volumes.services import mirror_sync

pytestmark = [pytest.mark.browser, pytest.mark.engine, pytest.mark.django_db(transaction=True)]


@pytest.fixture(params=[1440, 390], ids=["1440px", "390px"], autouse=True)
def _width(page, request):
    """Every test here at a desktop's and a phone's width (issue 14: items 1-3 at both)."""
    page.set_viewport_size({"width": request.param, "height": 900})


@pytest.mark.worker
def test_a_backups_buttons_appear_on_its_page_when_it_ends(page, login, celery_worker):
    volume = dockercli.create_volume()
    dockercli.fill_volume(volume, "head -c 3000000 /dev/urandom > /data/blob.bin")
    mirror_sync()
    login("Admin")
    page.goto(f"/volumes/{volume}/")
    page.click("form.backup-now button[type=submit]")
    page.wait_for_url("**/backups/*/")
    page.evaluate("window.__sameDocument = true")
    page.locator('#backup-facts[data-status="succeeded"]').wait_for(timeout=60_000)
    actions = page.locator("#backup-status .page-head .actions")
    for text in ("Download", "Restore", "Verify", "Delete"):
        actions.locator(f"text={text}").first.wait_for(timeout=5_000)
    assert page.evaluate("window.__sameDocument") is True  # no reload
    assert page.locator('#backup-status .job[data-job-status="succeeded"]').count() == 1
    assert "bytes," not in page.inner_text(".job-result")  # sizes in binary units: "… into 2.9 MiB"
    assert "MiB" in page.inner_text(".job-result")
    page.click("#backup-manifest summary")
    manifest = page.inner_text("[data-manifest]")
    assert json.loads(manifest)["volume"]["name"] == volume  # JSON, not Python's repr


@pytest.mark.worker
def test_enter_in_the_name_field_creates_the_volume_and_applies_no_preset(page, login, celery_worker):
    name = dockercli.unique_name("enter")
    login("Admin")
    page.goto("/volumes/new/")
    page.fill("input[name=name]", name)
    page.press("input[name=name]", "Enter")
    page.wait_for_url(f"**/volumes/{name}/", timeout=30_000)
    assert json.loads(dockercli.docker("volume", "inspect", name))[0]["Options"] in (None, {})
    assert Job.objects.get(kind="volume_create", target=name).status == Job.Status.SUCCEEDED


def test_enter_never_fills_the_tmpfs_preset(page, login):
    login("Admin")
    page.goto("/volumes/new/")
    page.route("**/volumes/new/", lambda route: route.abort() if route.request.method == "POST" else route.continue_())
    page.fill("input[name=name]", "x-will-not-be-made")
    page.press("input[name=name]", "Enter")
    page.wait_for_timeout(300)
    values = page.eval_on_selector_all("table[data-rows=opt] input[name=opt_value]", "els => els.map(e => e.value)")
    assert "tmpfs" not in values and page.input_value("select[name=driver]") == "local"


def test_a_restore_into_a_new_volume_leaves_compose_labels_out_unless_ticked(page, login, settings, tmp_path):
    settings.BACKUP_ROOT = tmp_path / "backups"
    labels = {"com.docker.compose.project": "shop", "com.docker.compose.volume": "db", "tier": "db"}
    volume = dockercli.create_volume(labels=labels)
    mirror_sync()
    backup = run_backup_now(volume)
    login("Operator")
    page.goto(f"/backups/{backup.pk}/restore/")
    box = page.locator("input[name=copy_compose_labels]")
    assert not box.is_checked()
    assert "join the Compose project" in page.inner_text("#restore-new-form")
    keys = page.eval_on_selector_all("table[data-rows=label] input[name=label_key]", "els => els.map(e => e.value)")
    assert "tier" in keys and not any(k.startswith("com.docker.compose.") for k in keys)


def test_a_pages_polls_leave_the_flash_message_meant_for_another_page(page, login):
    from backups.models import Backup

    running = Job.objects.create(kind="backup", target="shop_db", status=Job.Status.RUNNING)
    backup = Backup.objects.create(volume_name="shop_db", job=running)
    other = Job.objects.create(kind="volume_create", target="elsewhere", status=Job.Status.RUNNING)
    login("Admin")
    page.goto(f"/backups/{backup.pk}/")  # polls its region every 2 s while its backup runs
    polls = []
    page.on("request", lambda r: polls.append(r.headers.get("x-cargohold-poll"))
            if r.url.endswith(f"/backups/{backup.pk}/") and r.headers.get("hx-request") else None)
    # Whatever a poll swaps in is seen, even if the next poll swaps it out again.
    page.evaluate("""() => { window.__saw = false; new MutationObserver(() => {
        if (document.querySelector('main').innerText.includes('Cancel requested')) window.__saw = true;
    }).observe(document.querySelector('main'), {childList: true, subtree: true}); }""")

    # Another tab cancels another job: its message is for the page that answer opens.
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    answer = page.context.request.post(f"/jobs/{other.pk}/cancel/", form={"next": f"/jobs/{other.pk}/"},
                                       headers={"X-CSRFToken": csrf}, max_redirects=0)
    assert answer.status == 302
    page.wait_for_timeout(4500)  # two polls at least

    assert page.evaluate("window.__saw") is False  # the backup's page never showed it
    other_tab = page.context.new_page()
    other_tab.goto(f"/jobs/{other.pk}/")
    assert f"Cancel requested for create volume job #{other.pk}" in other_tab.inner_text(".messages")
    assert polls and all(p == "1" for p in polls)  # the region's polls say they are polls


@pytest.mark.worker
def test_a_restores_job_card_and_its_details_agree_at_every_poll(page, login, celery_worker):
    volume = dockercli.create_volume()
    dockercli.fill_volume(volume, "head -c 3000000 /dev/urandom > /data/blob.bin")
    mirror_sync()
    backup = run_backup_now(volume)
    login("Operator")
    page.goto(f"/backups/{backup.pk}/restore/")
    page.fill("input[name=name]", dockercli.unique_name("copy"))
    page.click("#restore-new-form button[type=submit]")
    page.wait_for_url("**/restores/*/")
    page.evaluate("""() => { window.__pairs = []; const note = () => {
        const card = document.querySelector('#restore-status .job'), facts = document.querySelector('#restore-facts');
        if (card && facts) window.__pairs.push([card.dataset.jobStatus, facts.dataset.status]); };
        note(); document.body.addEventListener('htmx:afterSettle', note); }""")
    page.locator('#restore-facts[data-status="succeeded"]').wait_for(timeout=60_000)
    pairs = page.evaluate("window.__pairs")
    assert pairs and all(card == facts for card, facts in pairs), pairs
    assert pairs[-1] == ["succeeded", "succeeded"]
