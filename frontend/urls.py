from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("annotate/<int:pk>/", views.annotate, name="annotate"),
]
