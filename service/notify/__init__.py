"""What follows a commit: the live stream (Server-Sent Events) and webhook deliveries."""
