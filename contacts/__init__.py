"""The contact registry: persons and companies, their addresses, contact points, identification
media, uniqueness rules, imports, audit trail and GDPR duties."""
