-- psql's meta-commands, which read the pg_catalog: \dt lists tables, \d describes one.
-- Run with `psql -X -q -A -t -v ON_ERROR_STOP=1`; the test compares every output line.
CREATE TABLE accounts (
    id         serial PRIMARY KEY,
    owner      varchar(32) NOT NULL UNIQUE,
    balance    numeric(10,2) NOT NULL DEFAULT 0,
    opened     timestamptz,
    flags      jsonb
);
CREATE TABLE notes (id bigint PRIMARY KEY, body text);
\echo dt
\dt
\echo d-accounts
\d accounts
\echo d-notes
\d notes
\echo dplus-notes
\d+ notes
\echo end
