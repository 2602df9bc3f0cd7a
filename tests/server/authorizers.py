"""Authorizers the tests plug in with ``ServerApp.authorizer_class``."""

from jupyter_server.auth import Authorizer


class AdminAuthorizer(Authorizer):
    """Grants everything, including the jupyter_flow ``admin`` action."""

    def is_authorized(self, handler, user, action, resource) -> bool:
        return True


class NoAdminAuthorizer(Authorizer):
    """Grants read and write but not ``admin``."""

    def is_authorized(self, handler, user, action, resource) -> bool:
        return action != "admin"


class ReadOnlyAuthorizer(Authorizer):
    """Grants only reading: cancel (a write) is refused before any handler code runs."""

    def is_authorized(self, handler, user, action, resource) -> bool:
        return action == "read"
