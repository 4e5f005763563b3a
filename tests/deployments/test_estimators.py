import pytest

from deployments.ml.loading import model_cache
from deployments.models import ModelVersion
from deployments.services.estimators import champions_warm, estimator_cached
from tests.factories import constant_classifier_bytes, make_use_case, register_model

pytestmark = pytest.mark.django_db


def test_champions_warm_loads_every_champion_with_an_artifact_once():
    first, second = make_use_case(), make_use_case()
    register_model(first, constant_classifier_bytes("office"))
    register_model(second, constant_classifier_bytes("travel"))
    champions = list(ModelVersion.objects.filter(role=ModelVersion.Role.CHAMPION))
    assert len(champions) == 2
    model_cache.clear()
    assert champions_warm() == 2
    assert all(estimator_cached(champion) is not None for champion in champions)
    assert champions_warm() == 0  # already in this process's cache


def test_a_gunicorn_worker_loads_its_champions_and_views_before_serving(monkeypatch):
    """Before its first request, not on a thread beside it (two threads importing the same
    libraries at once made a request fail), telling the master it is alive after each
    champion."""
    from reviewapp.monitoring import gunicorn

    for n in range(3):
        register_model(make_use_case(), constant_classifier_bytes("office"), version=f"v{n}")
    model_cache.clear()

    class Worker:
        notified = 0

        def notify(self):
            self.notified += 1

    worker = Worker()
    gunicorn.champions_warm_before_serving(worker)
    assert worker.notified == 3
    champions = ModelVersion.objects.filter(role=ModelVersion.Role.CHAMPION)
    assert all(estimator_cached(champion) is not None for champion in champions)
