"""HTTP routes for webhooks and their deliveries (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from service.errors import BODY_ERRORS, COMMON_ERRORS, error_responses
from service.fields import BigId, Id
from service.notify import webhooks
from service.notify.targets import parse_allow, targets
from service.routes.deps import AdminDep, SettingsDep, StoreDep

router = APIRouter(
    prefix="/api/v1/webhooks", tags=["webhooks"], responses=error_responses(*COMMON_ERRORS)
)


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(*BODY_ERRORS))
def create_webhook(
    data: webhooks.WebhookCreate, store: StoreDep, settings: SettingsDep, _: AdminDep
) -> webhooks.WebhookCreated:
    """Register a webhook; the response holds its signing secret, shown only this once.

    Loopback, private, link-local and metadata addresses (or names resolving to them) are
    refused with 422 unless allowed by PATROLI_WEBHOOK_ALLOW.
    """
    targets(data.url, parse_allow(settings.webhook_allow))  # before any transaction: DNS
    with store.write() as session:
        return webhooks.create_webhook(session, data)


@router.get("")
def read_webhooks(store: StoreDep, _: AdminDep) -> list[webhooks.WebhookPublic]:
    """List webhooks (without secrets)."""
    with store.read() as session:
        return webhooks.list_webhooks(session)


@router.get("/{webhook_id}", responses=error_responses(404))
def read_webhook(webhook_id: Id, store: StoreDep, _: AdminDep) -> webhooks.WebhookPublic:
    """One webhook (without its secret)."""
    with store.read() as session:
        return webhooks.read_webhook(session, webhook_id)


@router.delete(
    "/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404)
)
def delete_webhook(webhook_id: Id, store: StoreDep, _: AdminDep) -> None:
    """Delete a webhook and its pending and past deliveries."""
    with store.write() as session:
        webhooks.delete_webhook(session, webhook_id)


@router.get("/{webhook_id}/deliveries", responses=error_responses(404))
def read_deliveries(
    webhook_id: Id,
    store: StoreDep,
    _: AdminDep,
    status: Annotated[
        webhooks.DeliveryStatus | None, Query(description="Only this status.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[webhooks.DeliveryOut]:
    """A webhook's deliveries, newest first, each with its attempts."""
    with store.read() as session:
        return webhooks.list_deliveries(session, webhook_id, status, limit)


@router.post("/deliveries/{delivery_id}/redeliver", responses=error_responses(404))
def redeliver(
    delivery_id: BigId, request: Request, store: StoreDep, _: AdminDep
) -> webhooks.DeliveryOut:
    """Send a delivery again (e.g. a dead one) as soon as possible."""
    with store.write() as session:
        result = webhooks.redeliver(session, delivery_id)
    dispatcher = getattr(request.app.state, "webhooks", None)
    if dispatcher is not None:
        dispatcher.wake()
    return result
