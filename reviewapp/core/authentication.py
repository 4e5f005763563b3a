"""How API callers prove who they are.

``Authorization: Token <key>`` (DRF's form) and ``Authorization: Bearer <key>`` (what OpenAPI
client generators and most HTTP tools send) are the same credential: the scheme's name is
matched case-insensitively, as RFC 9110 says.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

SCHEMES = (b"token", b"bearer")


class TokenOrBearerAuthentication(authentication.TokenAuthentication):
    def authenticate(self, request):
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].lower() not in SCHEMES:
            return None  # no credentials, or another scheme (sessions answer after this)
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: send 'Bearer <token>' or 'Token <token>'."
            )
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        return self.authenticate_credentials(key)

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class TokenOrBearerScheme(OpenApiAuthenticationExtension):
    """The schema declares the standard HTTP bearer scheme, so generated clients send
    ``Authorization: Bearer <token>`` as they do by default."""

    target_class = TokenOrBearerAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token: 'Authorization: Bearer <token>' ('Token <token>' "
            "is accepted too).",
        }
