import pytest

from reviewapp.core.roles import Role
from tests.factories import make_user


@pytest.fixture
def people(db):
    return {
        "caller": make_user(Role.INTEGRATION),
        "alice": make_user(Role.REVIEWER, "alice"),
        "bob": make_user(Role.REVIEWER, "bob"),
        "manager": make_user(Role.MANAGER),
    }
