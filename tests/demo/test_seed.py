"""The demo seeding that `make demo` runs, at a small size: every page has data to show."""

import pytest
from django.contrib.auth import authenticate

from deployments.models import ModelVersion, UseCase
from reviewapp.core.roles import user_roles
from reviewapp.demo.seed import USERS, demo_seed
from reviewapp.reviews.models import Decision, Disagreement, Item, ReviewTask

pytestmark = pytest.mark.django_db


def test_a_small_demo_has_users_use_cases_models_history_and_work_waiting():
    passwords = demo_seed(days=2, per_day=30, log=lambda *_: None)
    for username, role in USERS:
        user = authenticate(username=username, password=passwords[username])
        assert user is not None and role in user_roles(user), username
    assert set(UseCase.objects.values_list("slug", flat=True)) == {
        "digits",
        "breast-cancer",
        "diabetes-progression",
    }
    for use_case in UseCase.objects.all():
        assert ModelVersion.objects.filter(use_case=use_case, role="champion").exists()
        assert Item.objects.filter(use_case=use_case).count() >= 20
    assert Decision.objects.exists() and Disagreement.objects.exists()
    assert ReviewTask.objects.filter(state="open").exists()  # today's queue has work
    # Seeding again keeps the data and only resets the users.
    again = demo_seed(days=2, per_day=30, log=lambda *_: None)
    assert set(again) == set(passwords)
    assert UseCase.objects.count() == 3
