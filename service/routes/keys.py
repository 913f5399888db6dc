"""HTTP routes for API keys."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy import select

from service import auth
from service.errors import BODY_ERRORS, COMMON_ERRORS, error_responses
from service.fields import Id
from service.routes.deps import AdminDep, KeysDep, StoreDep
from service.schemas import KeyCreate, KeyCreated, KeyPublic
from service.store.models import ApiKey

router = APIRouter(prefix="/api/v1/keys", tags=["keys"], responses=error_responses(*COMMON_ERRORS))


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(*BODY_ERRORS, 404))
def create_key(data: KeyCreate, store: StoreDep, _: AdminDep) -> KeyCreated:
    """Issue a key; the secret is in this response only."""
    with store.write() as session:
        row, key = auth.create_key(session, role=data.role, name=data.name, unit_id=data.unit_id)
        return KeyCreated(
            **KeyPublic.model_validate(row, from_attributes=True).model_dump(), key=key
        )


@router.get("")
def read_keys(store: StoreDep, _: AdminDep) -> list[KeyPublic]:
    """Issued keys (without secrets)."""
    with store.read() as session:
        rows = session.scalars(select(ApiKey).order_by(ApiKey.id))
        return [KeyPublic.model_validate(r, from_attributes=True) for r in rows]


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404))
def revoke_key(key_id: Id, store: StoreDep, keys: KeysDep, _: AdminDep) -> None:
    """Revoke a key."""
    with store.write() as session:
        auth.revoke_key(session, key_id)
    keys.clear()
