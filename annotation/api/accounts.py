"""/api/users/: accounts for curators (their annotators) and admins (everyone); and the
guideline preview the dashboard's editor calls."""
from __future__ import annotations

from django.contrib.auth.models import User
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError
from core.permissions import IsCurator
from core.roles import ACCOUNT_ROLES, account_role, may_manage, roles_manageable_by

from ..account_selectors import account_list
from ..guidelines import render_guideline
from ..services.accounts import account_create, account_update, password_reset_send, password_set_link
from .serializers import GuidelineIn
from .serializers_out import HtmlOut


class AssignedCampaignOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()


class UserOut(serializers.ModelSerializer):
    """An account as curators and admins see it; give it users from ``account_selectors`` (or with
    ``assigned_campaigns`` set) and the caller as ``context["by"]``."""

    role = serializers.SerializerMethodField()
    campaigns = AssignedCampaignOut(source="assigned_campaigns", many=True, read_only=True)
    can_manage = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ["id", "username", "email", "first_name", "last_name", "role", "is_active", "last_login",
                  "date_joined", "campaigns", "can_manage"]

    def get_role(self, obj: User) -> str | None:
        return account_role(obj)

    def get_can_manage(self, obj: User) -> bool:
        by = self.context["by"]
        return obj.pk != by.pk and may_manage(by, obj)


class UserListOut(serializers.Serializer):
    users = UserOut(many=True)
    roles_you_can_give = serializers.ListField(child=serializers.ChoiceField(choices=ACCOUNT_ROLES))


class UserIn(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=ACCOUNT_ROLES)
    email = serializers.CharField(max_length=254, required=False, allow_blank=True, default="")
    first_name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
    last_name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
    password = serializers.CharField(max_length=128, required=False, allow_blank=True, default="",
                                     help_text="Leave empty to invite: the answer carries a set-password link.")


class UserPatchIn(serializers.Serializer):
    role = serializers.ChoiceField(choices=ACCOUNT_ROLES, required=False)
    is_active = serializers.BooleanField(required=False)
    email = serializers.CharField(max_length=254, required=False, allow_blank=True)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError("Send at least one of role, is_active, email.")
        return attrs


class PasswordLinkOut(serializers.Serializer):
    set_password_url = serializers.CharField()
    emailed = serializers.BooleanField()


def _user_out(request, user: User) -> dict:
    (user,) = account_list(ids=[user.pk])  # fresh after a write, with roles and campaigns
    return UserOut(user, context={"by": request.user}).data


def _link(request, user: User) -> dict:
    url = request.build_absolute_uri(password_set_link(by=request.user, user=user))
    return {"set_password_url": url, "emailed": password_reset_send(by=request.user, user=user, absolute_link=url)}


class UserListCreateApi(APIView):
    """GET: every account (``?role=``, ``?active=true|false``). POST: create one — curators create
    annotators, admins any role; without a password the answer carries an invitation link."""

    permission_classes = [IsCurator]

    @extend_schema(responses=UserListOut, operation_id="users_list")
    def get(self, request):
        role, active = request.query_params.get("role") or None, request.query_params.get("active")
        if role is not None and role not in ACCOUNT_ROLES:
            raise ApplicationError("Unknown role.", fields={"role": [f"Use one of: {', '.join(ACCOUNT_ROLES)}."]})
        if active not in (None, "", "true", "false"):
            raise ApplicationError("Invalid filter.", fields={"active": ["Use true or false."]})
        users = account_list(role=role, active=None if not active else active == "true")
        return Response({"users": UserOut(users, many=True, context={"by": request.user}).data,
                         "roles_you_can_give": sorted(roles_manageable_by(request.user))})

    @extend_schema(request=UserIn, responses=UserOut)
    def post(self, request):
        data = UserIn(data=request.data)
        data.is_valid(raise_exception=True)
        user = account_create(by=request.user, **data.validated_data)
        body = _user_out(request, user)
        if not data.validated_data["password"]:
            body.update(_link(request, user))
        return Response(body, status=status.HTTP_201_CREATED)


class UserDetailApi(APIView):
    permission_classes = [IsCurator]

    @extend_schema(responses=UserOut)
    def get(self, request, pk: int):
        return Response(_user_out(request, get_object_or_404(User, pk=pk)))

    @extend_schema(request=UserPatchIn, responses=UserOut)
    def patch(self, request, pk: int):
        user = get_object_or_404(User, pk=pk)
        data = UserPatchIn(data=request.data)
        data.is_valid(raise_exception=True)
        account_update(by=request.user, user=user, **data.validated_data)
        return Response(_user_out(request, user))


class UserPasswordResetApi(APIView):
    """A one-time set-password link for the account, e-mailed when it has an address and returned
    so the curator can hand it over."""

    permission_classes = [IsCurator]

    @extend_schema(request=None, responses=PasswordLinkOut)
    def post(self, request, pk: int):
        return Response(_link(request, get_object_or_404(User, pk=pk)))


class GuidelinePreviewApi(APIView):
    """The HTML annotators would see for this Markdown (the same sanitising renderer); nothing is saved."""

    permission_classes = [IsCurator]

    @extend_schema(request=GuidelineIn, responses=HtmlOut)
    def post(self, request):
        data = GuidelineIn(data=request.data)
        data.is_valid(raise_exception=True)
        return Response({"html": render_guideline(data.validated_data["body_markdown"])})
