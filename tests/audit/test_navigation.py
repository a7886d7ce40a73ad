"""Finding the auditors' pages: where each role lands after logging in, who the pages say is
logged in, what a non-auditor is told, and the legal-hold command as the README runs it.

Reproduced before: an operator opening ``/audit/`` got the API's JSON 403; the audit pages
named nobody and had no logout; an auditor landed on ``/admin/``, which did not link to
``/audit/``; ``audit_legal_hold place … --by counsel`` crashed with ``MissingActor``."""

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

from audit.models import AuditEntry, LegalHold
from ledger import ids
from payflow.platform import context
from tests.ledger.conftest import pay

PASSWORD = "pw-for-tests-1"


def user_with(django_user_model, name, *groups, **flags):
    user = django_user_model.objects.create_user(name, password=PASSWORD, is_staff=True, **flags)
    for group in groups:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


def log_in(client, name, **extra):
    return client.post("/admin/login/", {"username": name, "password": PASSWORD, **extra})


@pytest.mark.parametrize(
    ("groups", "superuser", "lands_on"),
    [
        (["auditor"], False, "/audit/"),
        (["operator"], False, "/admin/"),
        (["auditor", "operator"], False, "/admin/"),  # both roles: the admin, linking /audit/
        ([], True, "/admin/"),
    ],
    ids=["auditor", "operator", "both", "superuser"],
)
def test_each_role_lands_on_its_pages_after_logging_in(
    client, django_user_model, groups, superuser, lands_on
):
    user_with(django_user_model, "someone", *groups, is_superuser=superuser)
    response = log_in(client, "someone")
    assert (response.status_code, response["Location"]) == (302, lands_on)
    client.logout()
    # the login page's form sends the admin index as next when nothing was asked for
    assert 'name="next" value="/admin/"' in client.get("/admin/login/").content.decode()
    assert log_in(client, "someone", next="/admin/")["Location"] == lands_on


def test_a_page_the_auditor_asked_for_is_where_the_login_goes(client, django_user_model):
    user_with(django_user_model, "alice", "auditor")
    response = log_in(client, "alice", next="/admin/ledger/transaction/")
    assert response["Location"] == "/admin/ledger/transaction/"
    client.logout()
    response = client.get("/audit/checkpoints")  # the login page remembers it
    assert response["Location"] == "/admin/login/?next=/audit/checkpoints"
    assert log_in(client, "alice", next="/audit/checkpoints")["Location"] == "/audit/checkpoints"


def test_the_audit_pages_say_who_is_logged_in_and_let_them_out(client, django_user_model):
    user_with(django_user_model, "alice", "auditor")
    log_in(client, "alice")
    page = client.get("/audit/").content.decode()
    assert 'Logged in as <strong id="logged-in-as">alice</strong>' in page
    assert 'action="/admin/logout/"' in page
    assert client.post("/admin/logout/").status_code == 200
    assert client.get("/audit/").status_code == 302  # logged out


def test_the_admin_links_to_the_audit_pages_for_auditors_only(client, django_user_model):
    user_with(django_user_model, "alice", "auditor")
    user_with(django_user_model, "olga", "operator")
    log_in(client, "alice")
    assert 'href="/audit/" id="audit-link"' in client.get("/admin/").content.decode()
    client.logout()
    log_in(client, "olga")
    assert 'id="audit-link"' not in client.get("/admin/").content.decode()


@pytest.mark.parametrize("path", ["/audit/", "/audit/export", "/audit/checkpoints"])
def test_a_non_auditor_gets_a_page_that_says_why(client, django_user_model, path):
    user_with(django_user_model, "olga", "operator")
    log_in(client, "olga")
    response = client.get(path)
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "<h1>Auditors only</h1>" in page
    assert "<strong>olga</strong> is not one" in page
    assert 'Logged in as <strong id="logged-in-as">olga</strong>' in page


def test_the_legal_hold_command_names_its_actor_and_takes_public_ids(merchant, capsys):
    payment = pay(merchant)
    public = ids.encode("payment", payment.pk)
    with context.replaced(context.AuditContext()):  # as from a shell: nobody is bound
        call_command(
            "audit_legal_hold", "place", "--object", public, "--reason", "case 7", "--by", "counsel"
        )
        hold = LegalHold.objects.get()
        assert (hold.object_type, hold.object_id) == ("ledger.transaction", str(payment.pk))
        call_command(
            "audit_legal_hold",
            "place",
            "--merchant",
            ids.encode("merchant", merchant.pk),
            "--reason",
            "case 8",
            "--by",
            "counsel",
        )
        call_command("audit_legal_hold", "release", str(hold.id), "--by", "counsel")
    actors = AuditEntry.objects.filter(object_type="audit.legalhold").values_list(
        "event_type", "actor_type", "actor_id"
    )
    assert sorted(actors) == [
        ("audit.legal_hold_placed", "system", "command:counsel"),
        ("audit.legal_hold_placed", "system", "command:counsel"),
        ("audit.legal_hold_released", "system", "command:counsel"),
    ]
    assert f"placed on ledger.transaction {payment.pk}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("target", "says"),
    [
        (["--object", "pay_" + "0" * 32], "no object has that id"),
        (["--object", "4111111111111111"], "no object has that id"),
        (["--merchant", "acct_" + "1" * 32], "nothing is recorded of that object"),
        (["--merchant", "pay_" + "1" * 32], "no object has that id"),
        (["--object", "ledger.transaction", "not-an-id"], "nothing is recorded"),
        (["--object", "ledger.transaction", "4111111111111111"], "nothing is recorded"),
        (["--object", "a", "b", "c"], "takes a public id, or a type and an id"),
    ],
)
def test_the_legal_hold_command_refuses_what_names_nothing(db, target, says):
    with pytest.raises(CommandError, match=says) as refused:
        call_command("audit_legal_hold", "place", *target, "--reason", "x", "--by", "counsel")
    assert "4111111111111111" not in str(refused.value)
    assert not LegalHold.objects.exists()


@pytest.mark.parametrize("command", ["audit_archive", "audit_retention_purge"])
@pytest.mark.parametrize("moment", ["4111111111111111", "2027-13-01T00:00:00+00:00"])
def test_a_rehearsal_time_that_is_not_one_is_refused_without_echoing_it(db, command, moment):
    with pytest.raises(CommandError, match="--as-of must be an ISO 8601 date and time") as refused:
        call_command(command, "--as-of", moment)
    assert moment not in str(refused.value)


@pytest.mark.parametrize(
    "option",
    [["--app-user", "x';DROP DATABASE payflow;--"], ["--host", "%' IDENTIFIED BY 'x"],
     ["--sequencer-user", ""]],
)  # fmt: skip
def test_the_grants_command_refuses_names_it_would_have_to_quote(db, option):
    with pytest.raises(CommandError, match="must be"):
        call_command("audit_grants", *option)
