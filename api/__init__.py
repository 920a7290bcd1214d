"""The HTTP API for clients, the customer's pages, and the dev outbox."""
