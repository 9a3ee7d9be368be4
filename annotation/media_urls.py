from django.urls import re_path

from .media_views import protected_media

urlpatterns = [re_path(r"^media/(?P<path>.+)$", protected_media, name="media")]
