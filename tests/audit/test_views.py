"""Auditor pages: who may see them, and what they show."""

import pytest
from django.contrib.auth.models import Group

from audit.checkpoints import audit_checkpoint_create
from tests.ledger.conftest import pay


def login(client, django_user_model, name, group=None):
    user = django_user_model.objects.create_user(name, password="pw-for-tests-1", is_staff=True)
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    client.force_login(user)
    return user


PAGES = ["/audit/", "/audit/checkpoints", "/audit/export", "/audit/public-key.pem"]


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitors_are_sent_to_log_in(client, db, path):
    response = client.get(path)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


@pytest.mark.parametrize("path", PAGES)
def test_operators_and_other_staff_get_403(client, django_user_model, path):
    login(client, django_user_model, "ops", group="operator")
    assert client.get(path).status_code == 403


def test_an_api_key_gives_no_access_to_auditor_pages(client, merchant):
    from ledger.services.api_keys import api_key_create

    secret = api_key_create(merchant=merchant).secret
    response = client.get("/audit/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 302


def test_an_auditor_sees_lanes_checkpoints_and_a_record_history(
    client, django_user_model, merchant
):
    login(client, django_user_model, "alice", group="auditor")
    payment = pay(merchant)
    checkpoint = audit_checkpoint_create()
    dashboard = client.get("/audit/").content.decode()
    assert "Head of each lane" in dashboard
    assert f"#{checkpoint.number}" in dashboard
    listing = client.get("/audit/checkpoints").content.decode()
    assert f"checkpoint-{checkpoint.number}.json" in listing
    signed = client.get(f"/audit/checkpoints/{checkpoint.number}.json").json()
    assert signed["body"]["number"] == checkpoint.number
    assert client.get("/audit/public-key.pem").content.startswith(b"-----BEGIN PUBLIC KEY-----")
    history = client.get(f"/audit/records/ledger.transaction/{payment.pk}").content.decode()
    assert history.count("contents ✓") == 3
    assert "payment.captured" in history


def test_auditors_cannot_change_anything(client, django_user_model, merchant):
    login(client, django_user_model, "alice", group="auditor")
    assert client.post("/audit/checkpoints").status_code == 405
    assert client.get("/audit/verifications").status_code == 405


def test_an_export_before_any_checkpoint_explains_itself(client, django_user_model, merchant):
    login(client, django_user_model, "alice", group="auditor")
    pay(merchant)
    response = client.get("/audit/export", {"lane": 0, "first_seq": 1, "last_seq": 10})
    assert response.status_code == 409
    assert "no signed checkpoint yet" in response.content.decode()


@pytest.mark.django_db(transaction=True)  # the run is queued on commit, as in production
def test_a_verification_an_auditor_starts_runs_in_their_name(
    client, django_user_model, merchant, monkeypatch
):
    # The run was queued by task name from a process where that name was never registered:
    # Celery then sent it raw, past eager mode and past the audit context's headers.
    from audit import tasks
    from audit.models import VerificationRun
    from payflow.celery import app
    from payflow.platform import context

    seen = []
    execute = tasks.verification_execute

    def spy(**kwargs):
        seen.append(context.current())
        return execute(**kwargs)

    monkeypatch.setattr(tasks, "verification_execute", spy)
    login(client, django_user_model, "alice", group="auditor")
    pay(merchant)
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        response = client.post("/audit/verifications")
    finally:
        app.conf.task_always_eager = eager
    assert response.status_code == 302
    run = VerificationRun.objects.get()
    assert (run.status, run.ok, run.started_by) == ("done", True, "alice")
    assert [(who.actor_label, who.reason) for who in seen] == [
        ("alice", "verification started by an auditor")
    ]
