"""The statistics behind every figure and guardrail, as pure Python: sample sizes and intervals
(``evidence``), and the sequential test a rate guardrail runs (``sequential``).

Like ``deployments.policy``, nothing here imports Django, reads the clock or does I/O
(``tests/deployments/test_policy_purity`` checks it), so the template filters, the dashboards
and the routing policy's guardrails all read the same numbers.
"""
