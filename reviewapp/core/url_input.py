"""The URL's share of the hostile-input rules (``reviewapp.core.json_input`` has the body's):
a path or query parameter holding NUL or an unpaired surrogate is a 400 naming it, before any
view looks it up in a database that would refuse it (PostgreSQL takes no NUL in text)."""

from django.http import HttpRequest, HttpResponse, JsonResponse

from reviewapp.core.errors import error_body, excerpt
from reviewapp.core.json_input import text_problem


def url_problems(request: HttpRequest) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    if problem := text_problem(request.path):
        problems["path"] = [problem]
    for name, values in request.GET.lists():
        if problem := text_problem(name):
            problems[excerpt(name)] = [f"parameter name {problem}"]
            continue
        for value in values:
            if problem := text_problem(value):
                problems[name] = [problem]
    return problems


class UnstorableUrlTextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        problems = url_problems(request)
        if problems:
            return JsonResponse(error_body(problems, code="invalid"), status=400)
        return self.get_response(request)
