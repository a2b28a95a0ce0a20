-- Date and time arithmetic and functions on timestamp, timestamptz and date columns.
-- Run with `psql -X -q -A -t -v ON_ERROR_STOP=0`: every statement runs even if one fails (the
-- test fails on any ERROR), and the test compares every output line.
SET TimeZone = 'UTC';
CREATE TABLE stamps (
    id      integer PRIMARY KEY,
    ts      timestamp NOT NULL,
    tstz    timestamptz NOT NULL,
    d       date NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
);
INSERT INTO stamps (id, ts, tstz, d) VALUES
    (1, '2024-01-31 10:00:00', '2024-01-31 10:00:00-05', '2024-02-28'),
    (2, '2023-12-31 23:59:59.5', '2024-03-10 00:00:00+00', '2024-03-01');
SELECT 'date-arith', id, d + 1, d - 1, d - date '2024-01-01' FROM stamps ORDER BY id;
SELECT 'interval', id, ts + interval '1 day 2 hours', tstz - interval '30 minutes', ts + interval '1 month'
  FROM stamps ORDER BY id;
SELECT 'extract', id, extract(year FROM ts)::int, extract(month FROM d)::int, extract(hour FROM tstz)::int
  FROM stamps ORDER BY id;
SELECT 'trunc', id, date_trunc('month', ts), date_trunc('hour', tstz) FROM stamps ORDER BY id;
SELECT 'casts', id, ts::date, tstz::date, d::timestamp FROM stamps ORDER BY id;
SELECT 'now', count(*) FROM stamps WHERE created > now() - interval '1 hour' AND created <= now();
SELECT 'diff', tstz - ts FROM stamps WHERE id = 1;
SELECT 'between', id FROM stamps WHERE ts BETWEEN '2024-01-01' AND '2024-02-01' ORDER BY id;
