"""Workflows: one durable journey per contact and campaign."""
