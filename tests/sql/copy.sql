-- COPY through psql's \copy: text and CSV formats, from the script itself (stdin) and back to
-- stdout. Run with `psql -X -q -A -t -v ON_ERROR_STOP=1`; the test compares every output line.
-- The text-format data rows below are separated by real tab characters.
CREATE TABLE people (id integer PRIMARY KEY, name text, score numeric(6,2), joined date, active boolean);

\copy people from stdin
1	ann	10.50	2024-01-01	t
2	bob	\N	2024-02-01	f
3	back\\slash	7.25	\N	t
4	tab\there	0	2024-03-01	f
\.
SELECT 'text', id, name, score, joined, active FROM people WHERE id < 4 ORDER BY id;
SELECT 'tab', position(E'\t' IN name), length(name) FROM people WHERE id = 4;

\copy people (id, name, score, joined, active) from stdin with (format csv, header true)
id,name,score,joined,active
5,"dee, jr",1.5,2024-04-01,true
6,"say ""hi""",,2024-05-01,false
7,,2,,
\.
SELECT 'csv', id, name, score, joined IS NULL, active, name IS NULL FROM people WHERE id >= 5 ORDER BY id;
SELECT 'count', count(*), sum(score) FROM people;

\echo copy-out-text
\copy (SELECT id, name, score, joined, active FROM people WHERE id <= 4 ORDER BY id) to stdout
\echo copy-out-csv
\copy (SELECT id, name, score, active FROM people WHERE id >= 5 ORDER BY id) to stdout with (format csv, header true)
\echo copy-out-end
