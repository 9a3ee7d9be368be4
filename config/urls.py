"""URL map: admin, REST API (+ OpenAPI schema and docs), protected media, browser pages."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core.login_throttle import ThrottledLoginView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", ThrottledLoginView.as_view(template_name="frontend/login.html"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/policy/", include("policytrain.urls")),
    path("api/reward/", include("rewardtrain.urls")),
    path("api/jobs/", include("jobs.urls")),
    path("api/dashboard/", include("frontend.api_urls")),
    path("api/", include("annotation.api.urls")),
    path("", include("annotation.media_urls")),
    path("", include("frontend.urls")),
]
