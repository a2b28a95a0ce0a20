-- RETURNING and ON CONFLICT. Run with `psql -X -q -A -t -v ON_ERROR_STOP=1`: only result rows
-- are printed, and the test compares every line.
CREATE TABLE kv (k text PRIMARY KEY, v integer NOT NULL, hits integer NOT NULL DEFAULT 1);

INSERT INTO kv (k, v) VALUES ('a', 1) RETURNING 'ins', k, v, hits;
INSERT INTO kv (k, v) VALUES ('b', 2) RETURNING *;
INSERT INTO kv (k, v) VALUES ('a', 10)
    ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v, hits = kv.hits + 1
    RETURNING 'upd', k, v, hits;
INSERT INTO kv AS t (k, v) VALUES ('a', 20)
    ON CONFLICT (k) DO UPDATE SET v = t.v + EXCLUDED.v, hits = t.hits + 1
    RETURNING 'upd2', k, v, hits;
INSERT INTO kv (k, v) VALUES ('b', 99) ON CONFLICT DO NOTHING RETURNING 'nothing', k;
INSERT INTO kv (k, v) VALUES ('b', 98) ON CONFLICT (k) DO NOTHING RETURNING 'nothing2', k;
INSERT INTO kv (k, v) VALUES ('c', 3) ON CONFLICT (k) DO NOTHING RETURNING 'new', k, v;
UPDATE kv SET v = v * 100 WHERE k = 'c' RETURNING 'updret', k, v, v + 1 AS next;
DELETE FROM kv WHERE k = 'b' RETURNING 'delret', k, v, hits;
SELECT 'kv', k, v, hits FROM kv ORDER BY k;

CREATE TABLE users (
    id    bigserial PRIMARY KEY,
    email varchar(64) NOT NULL UNIQUE,
    name  text NOT NULL,
    seen  integer NOT NULL DEFAULT 0
);
INSERT INTO users (email, name) VALUES ('ann@example.com', 'Ann'), ('bob@example.com', 'Bob')
    RETURNING 'users', id, email, name, seen;
INSERT INTO users (email, name) VALUES ('ann@example.com', 'Annie')
    ON CONFLICT (email) DO UPDATE SET name = EXCLUDED.name, seen = users.seen + 1
    RETURNING 'byemail', id, email, name, seen;
INSERT INTO users (email, name) VALUES ('bob@example.com', 'Robert')
    ON CONFLICT (email) DO UPDATE SET name = EXCLUDED.name WHERE users.seen > 0
    RETURNING 'guarded', id;
SELECT 'final', email, name, seen FROM users ORDER BY email;
SELECT 'total', count(*) FROM users;
