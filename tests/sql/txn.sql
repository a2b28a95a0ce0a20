-- Transactions: BEGIN / COMMIT / ROLLBACK, savepoints, several statements on one line and, with
-- `\;`, several statements in one simple-protocol Query message. Run with
-- `psql -X -q -A -t -v ON_ERROR_STOP=1`; the test compares every output line.
CREATE TABLE acct (id integer PRIMARY KEY, bal integer NOT NULL);

BEGIN;
INSERT INTO acct VALUES (1, 100);
INSERT INTO acct VALUES (2, 50);
COMMIT;
SELECT 'committed', id, bal FROM acct ORDER BY id;

BEGIN;
UPDATE acct SET bal = bal - 30 WHERE id = 1;
UPDATE acct SET bal = bal + 30 WHERE id = 2;
SELECT 'in-tx', id, bal FROM acct ORDER BY id;
ROLLBACK;
SELECT 'rolled-back', id, bal FROM acct ORDER BY id;

START TRANSACTION;
INSERT INTO acct VALUES (3, 7);
SAVEPOINT s1;
INSERT INTO acct VALUES (4, 8);
SELECT 'before-rb', count(*) FROM acct;
ROLLBACK TO SAVEPOINT s1;
INSERT INTO acct VALUES (5, 9);
SAVEPOINT s2;
UPDATE acct SET bal = 0 WHERE id = 5;
RELEASE SAVEPOINT s2;
SAVEPOINT s3;
DELETE FROM acct WHERE id = 1;
ROLLBACK TO s3;
COMMIT;
SELECT 'savepoints', id, bal FROM acct ORDER BY id;

INSERT INTO acct VALUES (6, 1); UPDATE acct SET bal = bal + 1 WHERE id = 6; SELECT 'same-line', bal FROM acct WHERE id = 6;
BEGIN; INSERT INTO acct VALUES (7, 1); ROLLBACK; SELECT 'same-line-rb', count(*) FROM acct WHERE id = 7;
INSERT INTO acct VALUES (8, 2) \; UPDATE acct SET bal = bal * 10 WHERE id = 8 \; SELECT 'one-query', id, bal FROM acct WHERE id = 8;
BEGIN \; INSERT INTO acct VALUES (9, 3) \; COMMIT;
SELECT 'one-query-commit', id, bal FROM acct WHERE id = 9;

BEGIN;
DELETE FROM acct;
SELECT 'deleted-in-tx', count(*) FROM acct;
ROLLBACK;
SELECT 'total', count(*), sum(bal) FROM acct;
