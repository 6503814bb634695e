from django.urls import path

from . import views

urlpatterns = [
    path("", views.catalogue, name="catalogue"),
    path("datasets/<slug:slug>/", views.dataset_detail, name="dataset-detail"),
]
