"""What every page view shares: who may open it, and domain errors as HTTP answers.

``@page(roles=...)`` sends anonymous visitors to the login page (a whole-page redirect, even from
an htmx request), answers 403 to a signed-in user whose roles are not listed, and turns a
``NotFound`` raised by a selector or service into 404 (a use case the user is not a member of
looks exactly like one that does not exist).
"""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django_htmx.http import HttpResponseClientRedirect

from reviewapp.core.errors import NotFound
from reviewapp.core.roles import Role, user_roles


def page(*, roles: frozenset[Role]) -> Callable:
    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                if getattr(request, "htmx", False):
                    # A swap would put the login form inside the page: load it whole instead,
                    # coming back to the page the user was on.
                    back = request.htmx.current_url_abs_path or request.get_full_path()
                    return HttpResponseClientRedirect(redirect_to_login(back).url)
                return redirect_to_login(request.get_full_path())
            if not user_roles(request.user) & roles:
                raise PermissionDenied("Your role does not allow this page.")
            try:
                return view(request, *args, **kwargs)
            except NotFound as missing:
                raise Http404(str(missing.detail)) from missing

        wrapped.allowed_roles = roles
        return wrapped

    return decorator
