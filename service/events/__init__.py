"""Live per-unit events: geofence, route, stop, speed and connectivity transitions."""

from service.events.machine import Event, FenceRef, Fix, Params, RouteRef, UnitMachine

__all__ = ["Event", "FenceRef", "Fix", "Params", "RouteRef", "UnitMachine"]
