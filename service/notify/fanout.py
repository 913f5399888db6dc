"""What follows a commit that stored pings or events: webhooks, live-stream wake-ups."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.metrics import count_events
from service.notify import webhooks
from service.notify.stream import Broker, notify
from service.store.models import Event as EventRow


class Fanout:
    """Hooks the writer and the scheduler call, in the transaction and after its commit."""

    def __init__(self, broker: Broker, dispatcher: webhooks.WebhookDispatcher) -> None:
        self.broker = broker
        self.dispatcher = dispatcher

    def in_transaction(self, session: Session, events: list[EventRow]) -> None:
        """Queue webhook deliveries and notify other workers, atomically with the data."""
        if events:
            webhooks.enqueue(session, events)
        notify(session)

    def after_commit(self, events: list[EventRow]) -> None:
        """Wake this worker's stream clients and, if events were stored, the dispatcher."""
        self.broker.wake()
        if events:
            count_events(event.type for event in events)
            self.dispatcher.wake()
