"""Scripts that register the flows with a self-hosted Prefect server."""
