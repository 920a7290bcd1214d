"""Rendering and sending of what customers receive: emails now, SMS and letters through adapters."""
