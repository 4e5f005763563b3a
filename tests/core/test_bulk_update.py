"""Writing many rows' values in one statement, on either engine."""

import pytest
from django.contrib.auth import get_user_model

from reviewapp.core.bulk import rows_update

pytestmark = pytest.mark.django_db


def test_every_row_gets_its_own_values_past_the_engines_parameter_limit():
    User = get_user_model()
    User.objects.bulk_create([User(username=f"u{n}") for n in range(600)])
    users = list(User.objects.order_by("pk"))
    written = rows_update(
        User,
        [u.pk for u in users],
        {"first_name": [f"F{n}" for n in range(600)], "last_name": [f"L{n}" for n in range(600)]},
    )
    assert written == 600
    assert list(User.objects.order_by("pk").values_list("first_name", "last_name"))[::199] == [
        ("F0", "L0"),
        ("F199", "L199"),
        ("F398", "L398"),
        ("F597", "L597"),
    ]


def test_only_rows_that_still_hold_the_condition_are_written():
    User = get_user_model()
    kept = User.objects.create(username="kept", is_active=True)
    changed = User.objects.create(username="changed-meanwhile", is_active=False)
    written = rows_update(
        User,
        [kept.pk, changed.pk],
        {"first_name": ["new", "new"]},
        only_where={"is_active": True},
    )
    assert written == 1
    assert dict(User.objects.values_list("username", "first_name")) == {
        "kept": "new",
        "changed-meanwhile": "",
    }
