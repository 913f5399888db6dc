"""Patrol routes, geofences and units: what is patrolled and by whom, and their geometry index."""
