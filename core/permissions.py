"""Role checks for API views (roles are groups; see core.roles), shared by every app's API."""
from rest_framework.permissions import BasePermission

from core.roles import ANNOTATOR, CURATOR, SCIENTIST, has_role


class _RolePermission(BasePermission):
    roles: tuple[str, ...] = ()
    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and has_role(request.user, *self.roles))


class IsAnnotator(_RolePermission):
    roles = (ANNOTATOR,)


class IsCurator(_RolePermission):
    roles = (CURATOR,)


class IsStaffRole(_RolePermission):
    """Curators and scientists: everything except annotating as someone else."""

    roles = (CURATOR, SCIENTIST)


class IsAnyRole(_RolePermission):
    roles = (ANNOTATOR, CURATOR, SCIENTIST)


class IsScientist(_RolePermission):
    """Scientists only: deciding which model serves is theirs."""

    roles = (SCIENTIST,)
