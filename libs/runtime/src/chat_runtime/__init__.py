"""Plumbing every service shares: bus, worker runner, settings, logging, stores, clock."""
