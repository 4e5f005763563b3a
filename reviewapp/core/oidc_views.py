"""Single sign-on views: the provider's sign-in and callback (404 while OIDC is off), the page
for someone the provider knows but the app does not, and signing out (locally, then at the
provider when it has an end-session endpoint)."""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import logout
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.views.decorators.http import require_POST
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView


def _enabled_only(view):
    def wrapped(request, *args, **kwargs):
        if not settings.OIDC_ENABLED:
            raise Http404("Single sign-on is not configured.")
        return view(request, *args, **kwargs)

    return wrapped


oidc_sign_in = _enabled_only(OIDCAuthenticationRequestView.as_view())
oidc_callback = _enabled_only(OIDCAuthenticationCallbackView.as_view())


def oidc_refused(request):
    return render(
        request,
        "core/sign_in_refused.html",
        {"provider": settings.OIDC_PROVIDER_NAME},
        status=403,
    )


@require_POST
def sign_out(request):
    logout(request)
    after = request.build_absolute_uri(resolve_url(settings.LOGOUT_REDIRECT_URL))
    if settings.OIDC_ENABLED and settings.OIDC_OP_LOGOUT_ENDPOINT:
        query = urlencode(
            {"client_id": settings.OIDC_RP_CLIENT_ID, "post_logout_redirect_uri": after}
        )
        return HttpResponseRedirect(f"{settings.OIDC_OP_LOGOUT_ENDPOINT}?{query}")
    return HttpResponseRedirect(after)
