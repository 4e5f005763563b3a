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
