from __future__ import annotations

from django.urls import path

from webhooks.api import views

app_name = "webhooks-api"

urlpatterns = [
    path("webhooks/endpoints", views.EndpointListView.as_view(), name="endpoint-list"),
    path("webhooks/endpoints/<int:pk>", views.EndpointDetailView.as_view(), name="endpoint"),
    path("webhooks/deliveries", views.DeliveryListView.as_view(), name="delivery-list"),
    path(
        "webhooks/deliveries/<int:pk>/replay",
        views.DeliveryReplayView.as_view(),
        name="delivery-replay",
    ),
]
