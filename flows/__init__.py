"""Prefect flows: thin wiring over plain functions that tests call directly."""
