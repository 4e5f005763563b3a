"""An account, a use case or a model version that history refers to is never deleted: the
admin does not offer it, and a delete from anywhere else is refused before anything goes."""

import pytest
from django.contrib.auth import get_user_model
from django.db.models import ProtectedError

from deployments.models import ModelVersion, UseCase
from reviewapp.core.append_only import HistoryKept, history_kept_by
from reviewapp.core.roles import Role
from reviewapp.reviews.models import Decision, Item
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.factories import classifier_bytes, make_use_case, make_user, register_model, send_items

pytestmark = pytest.mark.django_db


def _history():
    """A use case with a model and an item a reviewer decided."""
    manager = make_user(Role.MANAGER)
    reviewer = make_user(Role.REVIEWER)
    use_case = make_use_case(actor=manager, members=[reviewer], level="assisted")
    version = register_model(use_case, classifier_bytes())
    send_items(use_case, [1])
    task = review_task_claim(use_case=use_case, user=reviewer)
    review_task_decide(task=task, user=reviewer, label="office")
    return manager, reviewer, use_case, version


def _staff_admin(client):
    admin_user = make_user(Role.ADMIN)
    admin_user.is_staff = admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    return admin_user


def test_deleting_what_history_refers_to_is_refused_and_nothing_goes():
    manager, reviewer, use_case, version = _history()
    for target in (reviewer, manager, use_case, version):
        # Protected keys (decisions) refuse during collection; the rest say what history.
        with pytest.raises(ProtectedError):
            target.delete()
    assert get_user_model().objects.filter(pk__in=[reviewer.pk, manager.pk]).count() == 2
    assert UseCase.objects.filter(pk=use_case.pk).exists()
    assert ModelVersion.objects.filter(pk=version.pk).exists()
    assert Decision.objects.count() == 1 and Item.objects.count() == 1
    assert "decisions" in history_kept_by(reviewer)
    assert "items" in history_kept_by(use_case)
    unused = register_model(use_case, classifier_bytes(seed=1), version="v2")
    with pytest.raises(HistoryKept, match=r"has history \(.*model version events"):
        unused.delete()  # it never scored, but its registration is on record


def test_an_account_without_history_can_still_be_deleted():
    newcomer = make_user(Role.REVIEWER)
    assert history_kept_by(newcomer) == []
    newcomer.delete()
    assert not get_user_model().objects.filter(pk=newcomer.pk).exists()


def test_the_admin_offers_no_delete_for_rows_with_history(client):
    _, reviewer, use_case, version = _history()
    _staff_admin(client)
    newcomer = make_user(Role.REVIEWER)
    pages = {
        f"/admin/auth/user/{reviewer.pk}/change/": f"/admin/auth/user/{reviewer.pk}/delete/",
        f"/admin/deployments/usecase/{use_case.pk}/change/": (
            f"/admin/deployments/usecase/{use_case.pk}/delete/"
        ),
        f"/admin/deployments/modelversion/{version.pk}/change/": (
            f"/admin/deployments/modelversion/{version.pk}/delete/"
        ),
    }
    for change, delete in pages.items():
        page = client.get(change)
        assert page.status_code == 200, change
        assert delete not in page.content.decode()
        assert client.post(delete, {"post": "yes"}).status_code == 403
    # "Delete selected" lists the account as one it may not delete, and deletes nothing.
    bulk = client.post(
        "/admin/auth/user/",
        {"action": "delete_selected", "_selected_action": [reviewer.pk], "post": "yes"},
    )
    assert bulk.status_code == 200
    assert "permission to delete" in bulk.content.decode()
    assert get_user_model().objects.filter(pk=reviewer.pk).exists()
    # One without history is still offered.
    page = client.get(f"/admin/auth/user/{newcomer.pk}/change/").content.decode()
    assert f"/admin/auth/user/{newcomer.pk}/delete/" in page
