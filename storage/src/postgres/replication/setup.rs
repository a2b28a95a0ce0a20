//! The `mycelium` schema's replication tables, the capture triggers and their installation.

use super::PgReplicationError;
use super::db::Db;

/// Tables and view; run with `session_replication_role = replica` so that the DDL event
/// trigger (when it exists already) does not record them.
const TABLES: &str = r"
CREATE SCHEMA IF NOT EXISTS mycelium;
CREATE TABLE IF NOT EXISTS mycelium.shapes (
    id bigserial PRIMARY KEY,
    relid oid NOT NULL,
    schema_name text NOT NULL,
    table_name text NOT NULL,
    columns text[] NOT NULL,
    types oid[] NOT NULL,
    key_columns text[]
);
CREATE INDEX IF NOT EXISTS shapes_relid ON mycelium.shapes (relid, id);
CREATE TABLE IF NOT EXISTS mycelium.changes (
    id bigserial PRIMARY KEY,
    txid bigint NOT NULL,
    shape bigint,
    op text NOT NULL,
    old_row text,
    new_row text,
    ddl text,
    stmt_at timestamptz
);
CREATE INDEX IF NOT EXISTS changes_txid ON mycelium.changes (txid);
CREATE TABLE IF NOT EXISTS mycelium.txn_gids (
    txid bigint PRIMARY KEY,
    gid text NOT NULL
);
CREATE TABLE IF NOT EXISTS mycelium.wal (
    pos bigserial PRIMARY KEY,
    shard_table text NOT NULL,
    shard bigint NOT NULL,
    origin text NOT NULL,
    sequence bigint NOT NULL,
    entry bytea NOT NULL,
    UNIQUE (shard_table, shard, origin, sequence)
);
-- Shipping reads a shard's entries from a position on; without statistics the planner
-- otherwise took all of the shard's entries from the unique index and sorted them.
CREATE INDEX IF NOT EXISTS wal_shard_pos ON mycelium.wal (shard_table, shard, pos);
CREATE TABLE IF NOT EXISTS mycelium.applied (
    shard_table text NOT NULL,
    shard bigint NOT NULL,
    origin text NOT NULL,
    sequence bigint NOT NULL,
    PRIMARY KEY (shard_table, shard, origin)
);
CREATE TABLE IF NOT EXISTS mycelium.wal_truncated (
    shard_table text NOT NULL,
    shard bigint NOT NULL,
    origin text NOT NULL,
    through bigint NOT NULL,
    PRIMARY KEY (shard_table, shard, origin)
);
CREATE TABLE IF NOT EXISTS mycelium.shard_clock (
    shard_table text NOT NULL,
    shard bigint NOT NULL,
    hlc_ms bigint NOT NULL,
    hlc_logical bigint NOT NULL,
    hlc_node text NOT NULL,
    PRIMARY KEY (shard_table, shard)
);
CREATE TABLE IF NOT EXISTS mycelium.row_clocks (
    table_name text NOT NULL,
    key bytea NOT NULL,
    shard_table text NOT NULL,
    shard bigint NOT NULL,
    clock bytea NOT NULL,
    PRIMARY KEY (table_name, key)
);
CREATE INDEX IF NOT EXISTS row_clocks_shard ON mycelium.row_clocks (shard_table, shard);
CREATE TABLE IF NOT EXISTS mycelium.conflicts (
    table_name text NOT NULL,
    key bytea NOT NULL,
    key_text text NOT NULL,
    first_origin text NOT NULL,
    first_sequence bigint NOT NULL,
    first_epoch bigint NOT NULL,
    first_hlc_ms bigint NOT NULL,
    first_hlc_logical bigint NOT NULL,
    second_origin text NOT NULL,
    second_sequence bigint NOT NULL,
    second_epoch bigint NOT NULL,
    second_hlc_ms bigint NOT NULL,
    second_hlc_logical bigint NOT NULL,
    winner text NOT NULL,
    shard_table text NOT NULL,
    shard bigint NOT NULL,
    recorded_at_ms bigint NOT NULL,
    PRIMARY KEY (table_name, key, first_origin, second_origin)
);
DROP VIEW IF EXISTS public.__mycelium_conflicts;
CREATE OR REPLACE VIEW mycelium.__mycelium_conflicts AS SELECT * FROM mycelium.conflicts;
CREATE TABLE IF NOT EXISTS mycelium.ddl_applied (
    origin text NOT NULL,
    txn_id text NOT NULL,
    idx bigint NOT NULL,
    PRIMARY KEY (origin, txn_id, idx)
);
CREATE INDEX IF NOT EXISTS ddl_applied_txn ON mycelium.ddl_applied (txn_id, idx);
CREATE TABLE IF NOT EXISTS mycelium.snapshot_staging (
    shard_table text NOT NULL,
    shard bigint NOT NULL,
    idx bigint NOT NULL,
    chunk bytea NOT NULL,
    PRIMARY KEY (shard_table, shard, idx)
);
";

/// The capture functions. Each fixes the output settings it prints values with, whatever the
/// writing session set, so the sealer always parses the same formats.
const FUNCTIONS: &str = r"
CREATE OR REPLACE FUNCTION mycelium.capture_row() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog SET TimeZone = 'UTC' SET DateStyle = 'ISO, MDY'
SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET bytea_output = 'hex'
AS $f$
BEGIN
    INSERT INTO mycelium.changes (txid, shape, op, old_row, new_row)
    VALUES (txid_current(), TG_ARGV[0]::bigint, left(TG_OP, 1),
        CASE WHEN TG_OP <> 'INSERT' THEN OLD::text END,
        CASE WHEN TG_OP <> 'DELETE' THEN NEW::text END);
    RETURN NULL;
END
$f$;

CREATE OR REPLACE FUNCTION mycelium.capture_truncate() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog SET TimeZone = 'UTC' SET DateStyle = 'ISO, MDY'
SET IntervalStyle = 'postgres' SET extra_float_digits = 1 SET bytea_output = 'hex'
AS $f$
BEGIN
    EXECUTE format('INSERT INTO mycelium.changes (txid, shape, op, old_row) '
        'SELECT txid_current(), $1, ''D'', t::text FROM %s t', TG_RELID::regclass)
    USING TG_ARGV[0]::bigint;
    RETURN NULL;
END
$f$;

CREATE OR REPLACE FUNCTION mycelium.note_gid() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $f$
DECLARE
    gid text := current_setting('mycelium.gid', true);
BEGIN
    IF coalesce(gid, '') <> '' THEN
        INSERT INTO mycelium.txn_gids (txid, gid) VALUES (NEW.txid, gid)
            ON CONFLICT (txid) DO NOTHING;
    END IF;
    RETURN NULL;
END
$f$;

CREATE OR REPLACE FUNCTION mycelium.note_decision() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $f$
BEGIN
    IF NEW.state = 'committed' THEN
        INSERT INTO mycelium.txn_gids (txid, gid) VALUES (txid_current(), NEW.gid)
            ON CONFLICT (txid) DO NOTHING;
    END IF;
    RETURN NULL;
END
$f$;

CREATE OR REPLACE FUNCTION mycelium.advance_sequences() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $f$
DECLARE
    r record;
    top bigint;
    current bigint;
BEGIN
    FOR r IN
        SELECT s.oid::regclass AS seq, t.oid::regclass AS tbl, a.attname AS col
          FROM pg_depend d
          JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
          JOIN pg_class t ON t.oid = d.refobjid
          JOIN pg_namespace n ON n.oid = t.relnamespace
          JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
           AND d.deptype IN ('a', 'i')
           AND mycelium.is_replicated(n.nspname, n.nspname || '.' || t.relname)
    LOOP
        EXECUTE format('SELECT max(%I)::bigint FROM %s', r.col, r.tbl) INTO top;
        EXECUTE format('SELECT last_value FROM %s', r.seq) INTO current;
        IF top IS NOT NULL AND top >= current THEN
            PERFORM setval(r.seq, top);
        END IF;
    END LOOP;
END
$f$;

CREATE OR REPLACE FUNCTION mycelium.replay_ddl(statement text) RETURNS void
LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE statement;
END
$f$;

CREATE OR REPLACE FUNCTION mycelium.is_replicated(schema_name text, identity text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $f$
    SELECT coalesce(schema_name NOT IN ('mycelium', 'pg_catalog', 'information_schema')
        AND schema_name NOT LIKE 'pg\_%', true)
        AND coalesce(identity NOT LIKE '%\_\_mycelium%'
            AND identity NOT LIKE 'mycelium\_capture%', true)
$f$;

-- Records the table's current shape (columns, types, primary key) when it changed, and
-- (re)creates its capture triggers with the shape's id as their argument: rows are
-- captured without a catalog lookup, and each names the shape it was written with.
CREATE OR REPLACE FUNCTION mycelium.install_capture(rel oid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $f$
DECLARE
    nsp text;
    tbl text;
    cols text[];
    typs oid[];
    keys text[];
    latest record;
    shape bigint;
    args text;
BEGIN
    SELECT n.nspname, c.relname INTO nsp, tbl
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = rel AND c.relkind IN ('r', 'p') AND NOT c.relispartition;
    IF NOT FOUND OR NOT mycelium.is_replicated(nsp, nsp || '.' || tbl)
       OR nsp LIKE 'pg\_temp%' THEN
        RETURN;
    END IF;
    SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}'),
           coalesce(array_agg(a.atttypid ORDER BY a.attnum), '{}')
      INTO cols, typs
      FROM pg_attribute a
     WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped;
    SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum))
      INTO keys
      FROM pg_index i
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
     WHERE i.indrelid = rel AND i.indisprimary;
    -- Rows of a table without a primary key cannot be identified on a replica: such a
    -- table is not captured (its writes stay on this node) until it gets one. Dropping a
    -- trigger locks the table, so only when there is one: a transaction held prepared may
    -- hold locks on it while the node restarts.
    IF keys IS NULL THEN
        IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel
                    AND tgname IN ('mycelium_capture', 'mycelium_capture_truncate')) THEN
            EXECUTE format('DROP TRIGGER IF EXISTS mycelium_capture ON %s', rel::regclass);
            EXECUTE format('DROP TRIGGER IF EXISTS mycelium_capture_truncate ON %s',
                rel::regclass);
        END IF;
        RETURN;
    END IF;
    SELECT * INTO latest FROM mycelium.shapes s WHERE s.relid = rel ORDER BY s.id DESC LIMIT 1;
    IF FOUND AND latest.schema_name = nsp AND latest.table_name = tbl
       AND latest.columns = cols AND latest.types = typs
       AND latest.key_columns IS NOT DISTINCT FROM keys
       AND EXISTS (SELECT 1 FROM pg_trigger
                    WHERE tgrelid = rel AND tgname = 'mycelium_capture') THEN
        RETURN;
    END IF;
    INSERT INTO mycelium.shapes (relid, schema_name, table_name, columns, types, key_columns)
    VALUES (rel, nsp, tbl, cols, typs, keys) RETURNING id INTO shape;
    args := format('%L', shape);
    EXECUTE format('DROP TRIGGER IF EXISTS mycelium_capture ON %s', rel::regclass);
    EXECUTE format('DROP TRIGGER IF EXISTS mycelium_capture_truncate ON %s', rel::regclass);
    EXECUTE format('CREATE TRIGGER mycelium_capture AFTER INSERT OR UPDATE OR DELETE ON %s '
        'FOR EACH ROW EXECUTE FUNCTION mycelium.capture_row(%s)', rel::regclass, args);
    EXECUTE format('CREATE TRIGGER mycelium_capture_truncate BEFORE TRUNCATE ON %s '
        'FOR EACH STATEMENT EXECUTE FUNCTION mycelium.capture_truncate(%s)', rel::regclass,
        args);
END
$f$;

CREATE OR REPLACE FUNCTION mycelium.capture_ddl() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $f$
DECLARE
    r record;
    replicated boolean := false;
BEGIN
    IF TG_EVENT = 'sql_drop' THEN
        SELECT bool_or(mycelium.is_replicated(d.schema_name, d.object_identity))
          INTO replicated
          FROM pg_event_trigger_dropped_objects() d WHERE d.original;
    ELSE
        FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
            IF r.in_extension OR NOT mycelium.is_replicated(r.schema_name, r.object_identity)
            THEN
                CONTINUE;
            END IF;
            replicated := true;
            -- A new table, or one whose columns, key or name may have changed.
            IF r.classid = 'pg_class'::regclass THEN
                PERFORM mycelium.install_capture(r.objid);
            END IF;
        END LOOP;
    END IF;
    IF coalesce(replicated, false)
       AND current_setting('session_replication_role') <> 'replica'
       AND NOT EXISTS (SELECT 1 FROM mycelium.changes
                        WHERE txid = txid_current() AND op = 'S'
                          AND stmt_at = statement_timestamp() AND ddl = current_query()) THEN
        INSERT INTO mycelium.changes (txid, op, ddl, stmt_at)
        VALUES (txid_current(), 'S', current_query(), statement_timestamp());
    END IF;
END
$f$;
";

/// The event triggers: created once, enabled `ALWAYS` so that replayed DDL (applied with
/// `session_replication_role = replica`) still gets capture triggers on its new tables.
const EVENT_TRIGGERS: &str = r"
DO $d$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'mycelium_ddl') THEN
        CREATE EVENT TRIGGER mycelium_ddl ON ddl_command_end
            EXECUTE FUNCTION mycelium.capture_ddl();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'mycelium_drop') THEN
        CREATE EVENT TRIGGER mycelium_drop ON sql_drop EXECUTE FUNCTION mycelium.capture_ddl();
    END IF;
END
$d$;
ALTER EVENT TRIGGER mycelium_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER mycelium_drop ENABLE ALWAYS;
";

/// Where a transaction's distributed gid comes from: the `mycelium.gid` setting a
/// participant sets before `PREPARE TRANSACTION` (read by a deferred trigger, which fires at
/// PREPARE), or the decider's commit record, written in the deciding transaction.
const GID_TRIGGERS: &str = r"
DO $d$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                    WHERE tgrelid = 'mycelium.changes'::regclass AND tgname = 'mycelium_gid') THEN
        CREATE CONSTRAINT TRIGGER mycelium_gid AFTER INSERT ON mycelium.changes
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION mycelium.note_gid();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                    WHERE tgrelid = 'mycelium.txn_records'::regclass
                      AND tgname = 'mycelium_decision') THEN
        CREATE TRIGGER mycelium_decision AFTER INSERT ON mycelium.txn_records
            FOR EACH ROW EXECUTE FUNCTION mycelium.note_decision();
    END IF;
END
$d$;
";

/// Capture triggers on every table that already exists (`install_capture` skips the
/// tables that are not replicated).
const INSTALL_EXISTING: &str =
    "SELECT mycelium.install_capture(c.oid) FROM pg_class c WHERE c.relkind IN ('r', 'p')";

/// Which version of the definitions above a database holds: their digest, written by the
/// installation that created them.
const SETUP_DIGEST: &str = r"
CREATE TABLE IF NOT EXISTS mycelium.setup (
    id int PRIMARY KEY CHECK (id = 1),
    digest text NOT NULL
);
INSERT INTO mycelium.setup VALUES (1, $digest$) ON CONFLICT (id) DO UPDATE SET digest = EXCLUDED.digest;
";

/// FNV-1a 64 of everything `install` runs: a node built with other definitions installs
/// them again.
fn digest() -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        TABLES,
        FUNCTIONS,
        super::shard::FUNCTIONS,
        EVENT_TRIGGERS,
        GID_TRIGGERS,
    ] {
        for byte in part.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Creates (or updates) everything capture needs, and the shard function, in one
/// transaction. Needs a superuser.
///
/// A database that already holds these definitions (same digest) gets none of them again:
/// some (`CREATE INDEX IF NOT EXISTS`, replacing a view) lock tables that a transaction held
/// prepared across the node's restart may hold locks on, and the node would wait for a
/// decision it is itself needed to reach.
pub(super) fn install(db: &Db<'_>, node: &str) -> Result<(), PgReplicationError> {
    let row = db.query_one(
        "SELECT current_user::text, rolsuper FROM pg_roles WHERE rolname = current_user",
        &[],
    )?;
    let role: String = row.try_get(0)?;
    let superuser: bool = row.try_get(1)?;
    if !superuser {
        return Err(PgReplicationError::NotSuperuser {
            node: node.to_owned(),
            role,
        });
    }
    let digest = digest();
    db.transaction(|db| {
        db.batch("SET LOCAL session_replication_role = replica")?;
        let exists: bool = db
            .query_one("SELECT to_regclass('mycelium.setup') IS NOT NULL", &[])?
            .try_get(0)?;
        let installed: Option<String> = if exists {
            db.query_opt("SELECT digest FROM mycelium.setup WHERE id = 1", &[])?
                .map(|row| row.try_get(0))
                .transpose()?
        } else {
            None
        };
        if installed.as_deref() != Some(digest.as_str()) {
            db.batch(TABLES)?;
            db.batch(FUNCTIONS)?;
            db.batch(super::shard::FUNCTIONS)?;
            db.batch(EVENT_TRIGGERS)?;
            db.batch(GID_TRIGGERS)?;
            db.batch(&SETUP_DIGEST.replace("$digest$", &format!("'{digest}'")))?;
        }
        db.query(INSTALL_EXISTING, &[])?;
        Ok(())
    })
}
