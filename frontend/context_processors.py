"""Template context shared by every page."""
from django.http import HttpRequest

from core.roles import roles_of


def roles(request: HttpRequest) -> dict:
    return {"roles": roles_of(request.user)}
