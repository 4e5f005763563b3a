"""The automation policy as pure Python: frozen dataclasses in, a routing decision out.

Nothing here imports Django, reads the clock or does I/O (``tests/deployments/test_policy_purity``
checks it), so every routing rule can be tested exhaustively and a replay routes the same way.
"""

from deployments.policy.buckets import BUCKETS, Buckets, item_buckets
from deployments.policy.outputs import ModelOutput, NullOutput, assess_output
from deployments.policy.routing import (
    Level,
    PolicySpec,
    Route,
    RoutingDecision,
    TaskReason,
    TaskSpec,
    consults_model,
    route,
)

__all__ = [
    "BUCKETS",
    "Buckets",
    "Level",
    "ModelOutput",
    "NullOutput",
    "PolicySpec",
    "Route",
    "RoutingDecision",
    "TaskReason",
    "TaskSpec",
    "assess_output",
    "consults_model",
    "item_buckets",
    "route",
]
