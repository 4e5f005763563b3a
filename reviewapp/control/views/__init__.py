"""The control room's pages: the spectrum overview, the policy editor and its history,
guardrails, ramp plans, model versions and their comparison, backtests.

Function views; with htmx they render a ``{% partialdef %}`` of the page, without it the whole
page, and every action also works as a plain POST followed by a redirect.
"""
