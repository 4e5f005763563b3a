"""Personal API tokens: made, listed and revoked here; checked by ``ApiTokenAuthentication``.

A key is ``rvt_`` followed by 32 random bytes (URL-safe base64), so a plain SHA-256 digest is
enough to store it: with that much entropy there is nothing to guess, and a fast hash keeps the
lookup to one indexed query per request. Service accounts are users with the ``integration``
role and no password; an admin makes them and manages their tokens.
"""

import hashlib
import secrets
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User as UserType
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from reviewapp.core.compiled import CompiledRead
from reviewapp.core.errors import InvalidInput, NotFound
from reviewapp.core.models import ApiToken
from reviewapp.core.roles import Role, has_role, role_groups_ensure, roles_annotations, roles_read

KEY_PREFIX = "rvt_"
LAST_USED_EVERY = timedelta(minutes=1)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def service_accounts() -> list[UserType]:
    return list(
        get_user_model()
        .objects.filter(groups__name=Role.INTEGRATION.value, is_superuser=False)
        .order_by("username")
    )


def service_account_ensure(*, username: str) -> UserType:
    """The integration user of that name, made (without a password) if it does not exist."""
    username = (username or "").strip()
    if not username or len(username) > 150:
        raise InvalidInput({"service_account": ["a user name of 1 to 150 characters"]})
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    if user is None:
        user = User(username=username)
        user.set_unusable_password()
        user.save()
        user.groups.add(role_groups_ensure()[Role.INTEGRATION])
    elif user.is_superuser or not user.groups.filter(name=Role.INTEGRATION.value).exists():
        raise InvalidInput({"service_account": ["this user is a person, not a service account"]})
    return user


@transaction.atomic
def api_token_create(
    *,
    user: UserType,
    name: str,
    expires_at: datetime | None = None,
    service_account: str | None = None,
    now: datetime | None = None,
) -> tuple[ApiToken, str]:
    """A new token and its key (the only time the key exists outside the caller's hands)."""
    now = now or timezone.now()
    name = (name or "").strip()
    errors = {}
    if not name or len(name) > 100:
        errors["name"] = ["a name of 1 to 100 characters"]
    if expires_at is not None and expires_at <= now:
        errors["expires_at"] = ["must be in the future"]
    if service_account is not None and not has_role(user, Role.ADMIN):
        errors["service_account"] = ["only an admin makes tokens for service accounts"]
    if errors:
        raise InvalidInput(errors)
    owner = service_account_ensure(username=service_account) if service_account else user
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=owner, name=name, prefix=key[:10], digest=key_digest(key), expires_at=expires_at
    )
    return token, key


def api_tokens_visible_to(user: UserType) -> list[ApiToken]:
    """The user's own tokens; an admin also sees every service account's."""
    tokens = ApiToken.objects.filter(user=user)
    if has_role(user, Role.ADMIN):
        tokens = ApiToken.objects.filter(
            Q(user=user) | Q(user__in=[account.pk for account in service_accounts()])
        )
    return list(tokens.select_related("user"))


def api_token_revoke(*, user: UserType, token_id) -> None:
    """Deletes the token: from the next request on, its key answers 401."""
    try:
        token_id = int(token_id)
    except (TypeError, ValueError):
        raise NotFound("no such token") from None
    visible = {token.pk for token in api_tokens_visible_to(user)}
    if token_id not in visible:
        raise NotFound("no such token")
    ApiToken.objects.filter(pk=token_id).delete()


def api_token_public(token: ApiToken, *, key: str | None = None) -> dict:
    body = {
        "id": token.pk,
        "name": token.name,
        "prefix": token.prefix,
        "user": token.user.username,
        "created_at": token.created_at,
        "last_used_at": token.last_used_at,
        "expires_at": token.expires_at,
    }
    if key is not None:
        body["key"] = key
    return body


# Every API request reads its token with the user and their roles: compiled once per process
# (``CompiledRead``); the stand-in is no digest (a digest is hexadecimal).
_TOKEN_READ = CompiledRead(
    lambda digest: (
        ApiToken.objects.select_related("user")
        .annotate(**roles_annotations(ApiToken, "user_id"))
        .filter(digest=digest)[:1]
    ),
    digest="\x00no-such-digest",
)


def api_token_authenticate(key: str, *, now: datetime | None = None) -> UserType:
    now = now or timezone.now()
    token = _TOKEN_READ.first(digest=key_digest(key))
    if token is None or not token.user.is_active:
        raise AuthenticationFailed("Invalid token.")
    if token.expires_at is not None and token.expires_at <= now:
        raise AuthenticationFailed("Token has expired.")
    if token.last_used_at is None or token.last_used_at <= now - LAST_USED_EVERY:
        # At most one UPDATE a minute per token, guarded so concurrent requests do not repeat it.
        ApiToken.objects.filter(pk=token.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_EVERY)
        ).update(last_used_at=now)
    return roles_read(token.user, token)


class ApiTokenAuthentication(TokenAuthentication):
    """``Authorization: Bearer <key>`` or ``Token <key>``: a personal API token (``rvt_…``) or
    a legacy DRF token (``rest_framework.authtoken``), which keeps working until revoked."""

    keywords = (b"bearer", b"token")

    def authenticate(self, request):
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() not in self.keywords:
            return None
        if len(auth) != 2:
            raise AuthenticationFailed("Invalid token header: give one key after the scheme.")
        try:
            key = auth[1].decode()
        except UnicodeError:
            raise AuthenticationFailed("Invalid token header: the key is not text.") from None
        if key.startswith(KEY_PREFIX):
            return api_token_authenticate(key), None
        return self.authenticate_credentials(key)

    def authenticate_credentials(self, key):
        """DRF's own lookup of a legacy token, with the user's roles read in the same query."""
        token = (
            self.get_model()
            .objects.select_related("user")
            .annotate(**roles_annotations(self.get_model(), "user_id"))
            .filter(key=key)
            .first()
        )
        if token is None:
            raise AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        return roles_read(token.user, token), token

    def authenticate_header(self, request):
        return "Bearer"


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """The schema declares the standard HTTP bearer scheme, so clients generated from it send
    ``Authorization: Bearer <key>`` as they do by default."""

    target_class = ApiTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API token (rvt_…) or a DRF token: "
            "'Authorization: Bearer <key>' ('Token <key>' is accepted too).",
        }
