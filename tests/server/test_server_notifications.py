"""Notifications of ended runs: a real webhook receiver and a real SMTP server get each
ended top-level run once; secrets stay out of the server's log."""

from __future__ import annotations

import asyncio
import pytest

from tests.server.conftest import FLOW_ONLY, ME, make_run, start_server_process, until
from tests.server.receivers import smtp_receiver, webhook_receiver
from tests.waiting import stop

WEBHOOK_TOKEN = "hook-tok-9f3Kq2"


@pytest.fixture
def webhook():
    with webhook_receiver(path=f"/services/{WEBHOOK_TOKEN}") as receiver:
        yield receiver


@pytest.fixture
def smtp():
    with smtp_receiver() as receiver:
        yield receiver


@pytest.fixture
def notify_settings() -> dict:
    """More FlowApp settings of the test server (parametrize to change them)."""
    return {}


@pytest.fixture
def flow_config(flow_config, webhook, smtp, notify_settings):
    return {
        **flow_config,
        "notify_webhook_url": f"{webhook.url}?token={WEBHOOK_TOKEN}",
        "notify_email_to": ["ana@example.org", "bo@example.org"],
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
        "smtp_username": smtp.username,
        "smtp_password": smtp.password,
        "smtp_from": "flow@example.org",
        "notify_interval": 0.1,
        **notify_settings,
    }


async def test_each_ended_top_level_run_is_posted_and_mailed_once(
    api, store, owner, webhook, smtp, jp_serverapp
):
    make_run(store, owner, "A", kind="batch", name="nightly-train", notebook="/srv/nb/train.ipynb")
    make_run(store, owner, "A1", kind="notebook", parent_id="A")
    store.finish_run("A1", owner, "FAILED", error="cell 2 failed")  # a child: its batch speaks for it
    store.finish_run("A", owner, "FAILED", error="1 of 1 notebook runs failed")
    store.pin("A")  # a change after the end brings A through the feed again
    make_run(store, owner, "G", kind="graph")  # a kind not in notify_kinds
    store.finish_run("G", owner, "SUCCESS")
    make_run(store, owner, "C", kind="api", name="adhoc")
    store.finish_run("C", owner, "SUCCESS")

    # C ended last, so once its POST is in, every earlier change has been looked at.
    posts = [await webhook.next_post(), await webhook.next_post()]
    assert [body["run"]["id"] for _, _, body in posts] == ["A", "C"]
    path, headers, body = posts[0]
    assert path == f"/services/{WEBHOOK_TOKEN}?token={WEBHOOK_TOKEN}"
    assert headers["Content-Type"] == "application/json"
    ended = store.get_run("A")["ended_at"].isoformat()
    assert body == {
        "event": "run.ended",
        "run": {"id": "A", "name": "nightly-train", "kind": "batch", "status": "FAILED",
                "error": "1 of 1 notebook runs failed", "notebook": "/srv/nb/train.ipynb",
                "schedule_id": None, "ended_at": ended},
        "url": f"{jp_serverapp.connection_url}lab?flow-run=A",
    }
    assert webhook.posts.empty()

    mails = [await smtp.next_message(), await smtp.next_message()]
    assert [m["Subject"] for m in mails] == ["[jupyter_flow] batch run nightly-train failed",
                                             "[jupyter_flow] api run adhoc succeeded"]
    assert mails[0]["To"] == "ana@example.org, bo@example.org" and mails[0]["From"] == "flow@example.org"
    text = mails[0].get_content()
    assert "1 of 1 notebook runs failed" in text and f"{jp_serverapp.connection_url}lab?flow-run=A" in text
    assert smtp.logins == [smtp.username, smtp.username]


async def test_a_run_name_with_line_breaks_is_still_mailed_on_one_subject_line(api, store, owner, smtp):
    # A name is free text (jf.run(name=...), a notebook's file name); CR/LF in it used to make
    # EmailMessage refuse the Subject, and the run's mail was silently dropped.
    make_run(store, owner, "CRLF", kind="api", name="nightly\r\nBcc: eve@example.org\n\rX-Evil: 1")
    store.finish_run("CRLF", owner, "FAILED", error="boom")
    mail = await smtp.next_message()
    assert mail["Subject"] == "[jupyter_flow] api run nightly Bcc: eve@example.org X-Evil: 1 failed"
    assert mail["Bcc"] is None and mail["X-Evil"] is None
    assert mail["To"] == "ana@example.org, bo@example.org"
    assert "boom" in mail.get_content()


@pytest.mark.timeout(120)
def test_failing_hooks_are_logged_without_secrets_and_later_runs_still_go_out(flow_home, tmp_path, monkeypatch):
    db_url = f"sqlite:///{flow_home / 'flow.db'}"
    password = "smtp-pw-Zq81x"
    with webhook_receiver(path=f"/services/{WEBHOOK_TOKEN}") as webhook, \
            smtp_receiver(password=password, refuse_sessions=1) as smtp:
        webhook.statuses.append(500)  # the first POST is refused
        monkeypatch.setenv("JUPYTER_FLOW_SMTP_PASSWORD", password)  # the documented way to keep it off argv
        server = start_server_process(
            tmp_path, db_url, str(flow_home / "artifacts"), *FLOW_ONLY,
            f"--FlowApp.notify_webhook_url={webhook.url}?token={WEBHOOK_TOKEN}",
            "--FlowApp.notify_email_to=ana@example.org", f"--FlowApp.smtp_host={smtp.host}",
            f"--FlowApp.smtp_port={smtp.port}", f"--FlowApp.smtp_username={smtp.username}",
            "--FlowApp.notify_interval=0.1",
        )
        try:
            assert server.wait_for_api()[0] == 200
            from jupyter_flow.store import Store

            with Store(db_url) as store:
                owner = store.register_owner(user=ME, host="lab", pid=4242)
                for run_id in ("R1", "R2"):
                    make_run(store, owner, run_id, kind="cell", name=f"cell-{run_id}")
                    store.finish_run(run_id, owner, "SUCCESS")
            async def deliveries():
                return ([(await webhook.next_post())[2]["run"]["id"] for _ in range(2)],
                        [(await smtp.next_message())["Subject"] for _ in range(1)])

            posted, mailed = asyncio.run(deliveries())
            assert posted == ["R1", "R2"]  # R1's POST got a 500, and R2's still went out
            assert mailed == ["[jupyter_flow] cell run cell-R2 succeeded"]  # R1's login was refused
        finally:
            stop(server.proc)
    log = server.log_text()
    assert "refused the notification of run R1: HTTP 500" in log, log[-3000:]
    assert "could not be e-mailed" in log and "SMTPAuthenticationError" in log, log[-3000:]
    assert f"http://127.0.0.1:{webhook.url.split(':')[2].split('/')[0]}" in log
    assert WEBHOOK_TOKEN not in log and password not in log
    assert "Traceback" not in log, log[-4000:]


class RecordingNotifier:
    """A site's own notifier, plugged in by dotted name like any traitlets ``Type``."""

    def __init__(self, **settings):
        self.settings = settings
        self.events = []

    def notify(self, event: dict) -> None:
        self.events.append(event)


@pytest.mark.parametrize("notify_settings", [{
    "notifier_class": f"{__name__}.RecordingNotifier", "notify_statuses": ["FAILED"],
    "notify_lab_url": "https://hub.example.org/user/ana/"}])
async def test_the_notifier_is_swappable_and_statuses_filter(api, store, owner, jp_serverapp, webhook):
    watcher = jp_serverapp.extension_manager.extension_points["jupyter_flow"].app.run_end_watcher
    notifier = watcher.notifier
    assert isinstance(notifier, RecordingNotifier)
    assert notifier.settings["webhook_url"].startswith(webhook.url) and notifier.settings["email_to"]
    for run_id, status in (("OK", "SUCCESS"), ("BAD", "FAILED")):
        make_run(store, owner, run_id, kind="notebook")
        store.finish_run(run_id, owner, status)
    await until(lambda: notifier.events, what="a call of the notifier")
    assert [(e["run"]["id"], e["url"]) for e in notifier.events] == [
        ("BAD", "https://hub.example.org/user/ana/lab?flow-run=BAD")]
    assert webhook.posts.empty()  # the swapped-in notifier replaced the default one
