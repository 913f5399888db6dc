"""Pure geometry: projections, validation, route corridors, geofences and coverage."""
