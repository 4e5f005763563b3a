"""The request id of the work in progress, for logs: set by the middleware from X-Request-ID
(or a fresh one), carried into Celery tasks in a message header."""

import contextvars
import re
import uuid

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
HEADER = "X-Request-ID"
CELERY_HEADER = "request_id"
# An incoming id is honoured when it is a plausible token; anything else (too long, control
# characters, spaces) could forge or split log lines, so it is replaced.
_VALID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


def request_id_clean(raw: str | None) -> str:
    if raw and _VALID.match(raw):
        return raw
    return uuid.uuid4().hex


def celery_hooks_connect() -> None:
    from celery import signals

    signals.before_task_publish.connect(_publish_with_request_id, weak=False)
    signals.task_prerun.connect(_task_prerun, weak=False)
    signals.task_postrun.connect(_task_postrun, weak=False)


def _publish_with_request_id(sender=None, headers=None, **kwargs) -> None:
    current = request_id_var.get()
    if current and headers is not None:
        headers[CELERY_HEADER] = current


_task_tokens: dict[str, contextvars.Token] = {}


def _task_prerun(task_id=None, task=None, **kwargs) -> None:
    incoming = getattr(task.request, CELERY_HEADER, None) if task is not None else None
    if incoming is None and task is not None:
        incoming = (getattr(task.request, "headers", None) or {}).get(CELERY_HEADER)
    if incoming:
        _task_tokens[task_id] = request_id_var.set(request_id_clean(incoming))


def _task_postrun(task_id=None, **kwargs) -> None:
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        request_id_var.reset(token)
