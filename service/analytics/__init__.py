"""Questions about a time window: coverage, compliance, presence, who was near, reports."""
