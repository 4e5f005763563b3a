"""The API tokens page: make (the key is shown once), list and revoke tokens; admins also
make service accounts and manage their tokens.

Each action is a form POST answered with a redirect; a new key travels once, through the
session, to the page the redirect lands on.
"""

from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_naive, make_aware
from django.views.decorators.http import require_GET, require_POST

from reviewapp.core.api import EVERYONE
from reviewapp.core.errors import InvalidInput, NotFound
from reviewapp.core.pages import page
from reviewapp.core.roles import Role, has_role
from reviewapp.core.tokens import (
    api_token_create,
    api_token_revoke,
    api_tokens_visible_to,
    service_accounts,
)

KEY_SESSION_KEY = "tokens:key-once"


def _see_other(url: str) -> HttpResponseRedirect:
    response = HttpResponseRedirect(url)
    response.status_code = 303
    return response


def _page(request, *, errors=None, form=None, status=200):
    tokens = api_tokens_visible_to(request.user)
    is_admin = has_role(request.user, Role.ADMIN)
    return render(
        request,
        "core/tokens.html",
        {
            "own": [t for t in tokens if t.user_id == request.user.pk],
            "service": [t for t in tokens if t.user_id != request.user.pk],
            "accounts": service_accounts() if is_admin else [],
            "is_admin": is_admin,
            "errors": errors or {},
            "form": form or {},
            "key_once": request.session.pop(KEY_SESSION_KEY, None),
        },
        status=status,
    )


@page(roles=EVERYONE)
@require_GET
def tokens(request):
    return _page(request)


@page(roles=EVERYONE)
@require_POST
def token_create(request):
    form = {
        "name": request.POST.get("name", ""),
        "expires_at": request.POST.get("expires_at", ""),
        "service_account": request.POST.get("service_account", ""),
    }
    expires_at = None
    if form["expires_at"]:
        expires_at = parse_datetime(form["expires_at"])
        if expires_at is None:
            return _page(
                request,
                errors={"expires_at": ["a date and time, e.g. 2027-01-31T18:00"]},
                form=form,
                status=422,
            )
        if is_naive(expires_at):
            expires_at = make_aware(expires_at)
    try:
        token, key = api_token_create(
            user=request.user,
            name=form["name"],
            expires_at=expires_at,
            service_account=form["service_account"].strip() or None,
        )
    except InvalidInput as exc:
        return _page(request, errors=exc.detail, form=form, status=422)
    request.session[KEY_SESSION_KEY] = {"name": token.name, "user": token.user.username, "key": key}
    return _see_other(reverse("api-tokens-page"))


@page(roles=EVERYONE)
@require_POST
def token_revoke(request, token_id: int):
    try:
        api_token_revoke(user=request.user, token_id=token_id)
    except NotFound:
        messages.error(request, "No such token.")
    else:
        messages.success(request, "Token revoked: it no longer signs anyone in.")
    return _see_other(reverse("api-tokens-page"))
