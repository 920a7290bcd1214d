-- Runs once, when the data volume is first initialised. Later changes to
-- POSTGRES_PASSWORD do not reach the role: use ALTER ROLE for that.
-- Temporal's databases (temporal, temporal_visibility) are created by the
-- temporal-schema service, as in Temporal's official compose files.
\getenv journeys_password JOURNEYS_DB_PASSWORD

CREATE ROLE journeys LOGIN PASSWORD :'journeys_password';
-- Owner of the database, so the app can create tables in its public schema (PostgreSQL 15+).
CREATE DATABASE journeys OWNER journeys;
