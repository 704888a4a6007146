"""Transfers of volumes between hosts: the form under the volume, the transfer's page."""

from django.urls import path

from hosts import views_transfers

urlpatterns = [
    path("volumes/<str:name>/transfer/", views_transfers.volume_transfer, name="volume_transfer"),
    path("transfers/", views_transfers.transfer_list, name="transfer_list"),
    path("transfers/<int:transfer_id>/", views_transfers.transfer_detail, name="transfer_detail"),
]
