"""The one error map: database refusals of a request's data are 4xx, never 500."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import DataError, IntegrityError

from service.errors import add_exception_handlers


def test_database_refusals_that_slip_past_validation_are_client_errors() -> None:
    app = FastAPI()
    add_exception_handlers(app)

    @app.get("/data")
    def data() -> None:
        raise DataError("INSERT ...", {}, Exception("value too long for type varchar(40)"))

    @app.get("/integrity")
    def integrity() -> None:
        raise IntegrityError("INSERT ...", {}, Exception("duplicate key value"))

    with TestClient(app) as client:
        r = client.get("/data")
        assert r.status_code == 422
        assert r.json() == {"detail": "the database refused a value: value too long for type "
                            "varchar(40)"}  # fmt: skip
        r = client.get("/integrity")
        assert r.status_code == 409 and "duplicate key value" in r.json()["detail"]
