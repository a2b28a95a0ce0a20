-- DDL with the common Postgres types, defaults and constraints, then insert / select / update /
-- delete and casts. Run by mycelium/tests/it/clients.rs with `psql -X -q -A -t -v ON_ERROR_STOP=1`;
-- the test compares every output line, so each SELECT starts with a label.
SET TimeZone = 'UTC';

CREATE TABLE items (
    id          serial PRIMARY KEY,
    sku         varchar(8) NOT NULL UNIQUE,
    name        text NOT NULL,
    qty         integer NOT NULL DEFAULT 0,
    total       bigint,
    in_stock    boolean NOT NULL DEFAULT true,
    weight      double precision,
    price       numeric(10,2),
    made_at     timestamp,
    sold_at     timestamptz,
    best_before date,
    blob        bytea,
    attrs       jsonb,
    uid         uuid,
    note        text DEFAULT 'none',
    created_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO items (sku, name, qty, total, in_stock, weight, price, made_at, sold_at, best_before, blob, attrs, uid)
VALUES ('A-1', 'apple', 10, 9000000000, true, 0.25, 12.5, '2024-01-02 03:04:05', '2024-01-02 03:04:05+02',
        '2024-12-31', '\xdeadbeef', '{"color": "red", "tags": ["fruit", "fresh"]}',
        'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11');
INSERT INTO items (sku, name) VALUES ('B-2', 'bread');
INSERT INTO items (sku, name, qty, price, weight) VALUES ('C-3', 'cheese', 3, 7.999, -1.5e-3);

SELECT 'row', id, sku, name, qty, total, in_stock, weight, price, made_at, sold_at, best_before,
       blob, attrs, uid, note
  FROM items WHERE sku = 'A-1';
SELECT 'defaults', id, qty, total IS NULL, in_stock, note, price IS NULL, attrs IS NULL,
       created_at <= now(), created_at > '2020-01-01 00:00:00+00'
  FROM items WHERE sku = 'B-2';
SELECT 'numeric', price, price * 2, qty * price, weight FROM items WHERE sku = 'C-3';
SELECT 'where', name FROM items WHERE qty > 2 AND price < 10 ORDER BY id;
SELECT 'json', attrs ->> 'color', attrs -> 'tags' ->> 1, attrs -> 'tags' FROM items WHERE sku = 'A-1';
SELECT 'bytea', length(blob), blob = '\xDEADBEEF'::bytea FROM items WHERE sku = 'A-1';
SELECT 'dates', made_at::date, sold_at::date, best_before > '2024-06-01', made_at < sold_at
  FROM items WHERE sku = 'A-1';
SELECT 'casts', '1'::int, '1'::int + 1, CAST('42' AS bigint), '2.5'::double precision * 2,
       'true'::boolean, 12::text || 'x', '2024-02-29'::date, 3.7::int, '7.125'::numeric(10,2),
       '{"b":1,"a":[true,null]}'::jsonb;

UPDATE items SET qty = qty + 5, note = 'restocked' WHERE sku = 'A-1';
UPDATE items SET in_stock = false WHERE qty = 0;
DELETE FROM items WHERE sku = 'C-3';
SELECT 'after', sku, qty, in_stock, note FROM items ORDER BY id;
SELECT 'count', count(*), sum(qty), min(name), max(total) FROM items;

INSERT INTO items (sku, name, qty) VALUES ('D-4', 'dates', 1);
SELECT 'serial', id FROM items WHERE sku = 'D-4';

CREATE TABLE events (id bigserial PRIMARY KEY, kind text NOT NULL, at date DEFAULT '2000-01-01');
INSERT INTO events (kind) VALUES ('start');
INSERT INTO events (kind, at) VALUES ('stop', '2030-06-15');
INSERT INTO events (id, kind) VALUES (10000000000, 'far');
SELECT 'bigserial', id, kind, at FROM events ORDER BY id;
SELECT 'group', in_stock, count(*), sum(qty) FROM items GROUP BY in_stock ORDER BY in_stock;
SELECT 'limit', sku FROM items ORDER BY qty DESC, sku LIMIT 2 OFFSET 1;
SELECT 'nulls', coalesce(note, 'x'), total IS NULL, nullif(qty, 1) IS NULL FROM items WHERE sku = 'D-4';

DROP TABLE items;
CREATE TABLE items (id integer PRIMARY KEY);
SELECT 'recreated', count(*) FROM items;
DROP TABLE IF EXISTS items;
DROP TABLE IF EXISTS items;
