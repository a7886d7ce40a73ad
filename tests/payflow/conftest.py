import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group

from payflow.roles import roles_apply

PASSWORD = "correct-horse-battery-9"


def _staff(django_user_model, username, group=None, **extra):
    user = django_user_model.objects.create_user(
        username, password=PASSWORD, is_staff=True, **extra
    )
    if group:
        # The groups come from the migration payflow.0003_roles; a transactional test's
        # flush empties them, so they are put back the way the migration does it.
        if not Group.objects.filter(name=group).exists():
            roles_apply(django_apps)
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def operator(db, django_user_model):
    return _staff(django_user_model, "olivia", "operator")


@pytest.fixture
def auditor(db, django_user_model):
    return _staff(django_user_model, "alice", "auditor")


@pytest.fixture
def superuser(db, django_user_model):
    return _staff(django_user_model, "root", is_superuser=True)
