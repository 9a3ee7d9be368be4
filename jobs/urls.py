"""/api/jobs/: the jobs domain's endpoints (jobs/api.py)."""
from django.urls import path

from . import api

urlpatterns = [
    path("<int:pk>/cancel/", api.JobCancelApi.as_view(), name="api-job-cancel"),
    path("<int:pk>/resume/", api.JobResumeApi.as_view(), name="api-job-resume"),
]
