-- jsonb operators and functions. Run with `psql -X -q -A -t -v ON_ERROR_STOP=0`: every statement
-- runs even if one fails (the test fails on any ERROR), and the test compares every output line.
CREATE TABLE docs (id integer PRIMARY KEY, body jsonb NOT NULL);
INSERT INTO docs VALUES
    (1, '{"name": "ann", "tags": ["a", "b"], "age": 31, "addr": {"city": "Oslo"}}'),
    (2, '{"name": "bob", "tags": [], "age": null}'),
    (3, '[1, "two", 3.5]');
SELECT 'arrow', id, body -> 'name', body ->> 'name', body -> 'addr' ->> 'city' FROM docs WHERE id < 3 ORDER BY id;
SELECT 'path', body #>> '{addr,city}', body #> '{tags,1}' FROM docs WHERE id = 1;
SELECT 'index', body -> 1, body ->> 2 FROM docs WHERE id = 3;
SELECT 'exists', id FROM docs WHERE body ? 'addr' ORDER BY id;
SELECT 'contains', id FROM docs WHERE body @> '{"name": "bob"}' ORDER BY id;
SELECT 'typeof', id, jsonb_typeof(body), jsonb_typeof(body -> 'age') FROM docs ORDER BY id;
SELECT 'length', jsonb_array_length(body -> 'tags') FROM docs WHERE id = 1;
SELECT 'build', jsonb_build_object('k', 1, 'v', 'x'), '{"a": 1}'::jsonb || '{"b": 2}'::jsonb;
SELECT 'eq', '{"a": 1, "b": 2}'::jsonb = '{"b": 2, "a": 1}'::jsonb;
UPDATE docs SET body = jsonb_set(body, '{age}', '32') WHERE id = 1;
SELECT 'set', body ->> 'age' FROM docs WHERE id = 1;
