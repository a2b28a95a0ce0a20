//! `__mycelium_shard` on PostgreSQL nodes: the router's shard function
//! (`mycelium_router::shard_function`) in PL/pgSQL, so that statements the proxy scoped to
//! some shards see exactly those shards' rows, as on SQLite nodes.
//!
//! A PL/pgSQL function cannot take key values of several types at once (`VARIADIC "any"` is
//! for C functions only), so a session rewrites each call
//! `__mycelium_shard(shards, ranges, k1, k2)` into
//! `mycelium.__mycelium_shard(shards, ranges, VARIADIC ARRAY[mycelium.shard_key(k1),
//! mycelium.shard_key(k2)]::bytea[])`: `shard_key` (polymorphic, one value) gives the value's
//! canonical bytes as the router hashes them (`mycelium_router::key_hash`), read the way
//! change capture reads the value (`values.rs`) and the node's identity turns it into a key:
//! integers and booleans (1/0) as integers, a real as `KeyValue::from_real`, a 16-byte
//! `bytea` as a UUID, anything else as its output text by the router's rules for text
//! (decimal integers and UUIDs recognized). The shard function concatenates them, hashes
//! with FNV-1a 64 and the SplitMix64 finalizer (64-bit wrapping arithmetic over `int8` and
//! `numeric`), or places the first key among the range split points.

use super::super::sql::skip_opaque;

/// The functions, installed with the capture functions. Each fixes the output settings it
/// prints values with, as capture does, so a value's text is the one capture recorded.
pub(super) const FUNCTIONS: &str = r"
CREATE OR REPLACE FUNCTION mycelium.shard_int(i bigint) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $f$
    SELECT '\x01'::bytea || int8send(i)
$f$;

CREATE OR REPLACE FUNCTION mycelium.shard_str(t text) RETURNS bytea
LANGUAGE sql STABLE STRICT PARALLEL SAFE AS $f$
    SELECT '\x03'::bytea || int4send(octet_length(t)) || convert_to(t, 'UTF8')
$f$;

-- Rust's str::trim: Unicode White_Space at both ends (spelled as UTF-8 bytes, so the
-- function is created whatever the database's encoding).
CREATE OR REPLACE FUNCTION mycelium.shard_trim(t text) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE AS $f$
    SELECT btrim(t, convert_from(decode('20090a0d0b0cc285c2a0e19a80e28080e28081e28082'
        || 'e28083e28084e28085e28086e28087e28088e28089e2808ae280a8e280a9e280afe2819fe38080',
        'hex'), 'UTF8'))
$f$;

-- KeyValue::from_text: a decimal integer, else a UUID, else the text.
CREATE OR REPLACE FUNCTION mycelium.shard_text(t text) RETURNS bytea
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE AS $f$
DECLARE
    s text := mycelium.shard_trim(t);
    u text;
    h text;
BEGIN
    IF s ~ '^[+-]?[0-9]+$'
       AND s::numeric BETWEEN -9223372036854775808 AND 9223372036854775807 THEN
        RETURN mycelium.shard_int(s::numeric::bigint);
    END IF;
    u := rtrim(ltrim(s, '{'), '}');
    h := replace(u, '-', '');
    IF h ~ '^[0-9a-fA-F]{32}$' AND (strpos(u, '-') = 0 OR octet_length(u) = 36) THEN
        RETURN '\x02'::bytea || decode(h, 'hex');
    END IF;
    RETURN mycelium.shard_str(t);
END
$f$;

CREATE OR REPLACE FUNCTION mycelium.shard_key(v anyelement) RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET TimeZone = 'UTC' SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres'
SET extra_float_digits = 1 SET bytea_output = 'hex'
AS $f$
DECLARE
    t text;
    f float8;
    b bytea;
BEGIN
    IF v IS NULL THEN
        RETURN mycelium.shard_str('');
    END IF;
    CASE pg_typeof(v)
    WHEN 'boolean'::regtype THEN
        RETURN mycelium.shard_int(CASE WHEN format('%s', v) = 't' THEN 1 ELSE 0 END);
    WHEN 'smallint'::regtype, 'integer'::regtype, 'bigint'::regtype, 'oid'::regtype THEN
        RETURN mycelium.shard_int(format('%s', v)::bigint);
    WHEN 'real'::regtype, 'double precision'::regtype THEN
        -- Capture reads the shortest text of the value as a double.
        t := format('%s', v);
        f := t::float8;
        IF f = trunc(f) AND f >= '-9223372036854775808'::float8
           AND f < '9223372036854775808'::float8 THEN
            RETURN mycelium.shard_int(f::bigint);
        END IF;
        -- Rust prints a double without an exponent.
        IF strpos(t, 'e') > 0 THEN
            t := t::numeric::text;
        END IF;
        RETURN mycelium.shard_str(t);
    WHEN 'bytea'::regtype THEN
        b := format('%s', v)::bytea;
        IF octet_length(b) = 16 THEN
            RETURN '\x02'::bytea || b;
        END IF;
        RETURN mycelium.shard_str('\x' || encode(b, 'hex'));
    ELSE
        RETURN mycelium.shard_text(format('%s', v));
    END CASE;
END
$f$;

-- a * b modulo 2^64, as two's complement bigints.
CREATE OR REPLACE FUNCTION mycelium.shard_mul(a bigint, b bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $f$
    SELECT CASE WHEN p >= 9223372036854775808 THEN p - 18446744073709551616 ELSE p END::bigint
      FROM (SELECT ((a::numeric + CASE WHEN a < 0 THEN 18446744073709551616 ELSE 0 END)
                  * (b::numeric + CASE WHEN b < 0 THEN 18446744073709551616 ELSE 0 END))
                  % 18446744073709551616 AS p) m
$f$;

CREATE OR REPLACE FUNCTION mycelium.__mycelium_shard(shards bigint, ranges text,
    VARIADIC keys bytea[]) RETURNS bigint
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $f$
DECLARE
    bytes bytea := '';
    k bytea;
    h bigint := -3750763034362895579;
    i integer;
    first bigint;
    split text;
    point text;
    splits bigint := 0;
    below bigint := 0;
BEGIN
    IF shards IS NULL OR shards < 1 OR shards > 4294967295 THEN
        RAISE EXCEPTION '__mycelium_shard: the shard count must be between 1 and 4294967295, got %',
            shards USING ERRCODE = '22023';
    END IF;
    IF keys IS NULL OR cardinality(keys) = 0 THEN
        RETURN 0;
    END IF;
    IF coalesce(ranges, '') = '' THEN
        FOREACH k IN ARRAY keys LOOP
            bytes := bytes || k;
        END LOOP;
        FOR i IN 0 .. octet_length(bytes) - 1 LOOP
            h := mycelium.shard_mul(h # get_byte(bytes, i), 1099511628211);
        END LOOP;
        h := mycelium.shard_mul(h # ((h >> 30) & 17179869183), -4658895280553007687);
        h := mycelium.shard_mul(h # ((h >> 27) & 137438953471), -7723592293110705685);
        h := h # ((h >> 31) & 8589934591);
        RETURN ((h::numeric + CASE WHEN h < 0 THEN 18446744073709551616 ELSE 0 END)
            % shards)::bigint;
    END IF;
    IF get_byte(keys[1], 0) = 1 THEN
        first := ('x' || encode(substr(keys[1], 2, 8), 'hex'))::bit(64)::bigint;
    END IF;
    FOREACH split IN ARRAY string_to_array(ranges, ',') LOOP
        point := mycelium.shard_trim(split);
        IF point !~ '^[+-]?[0-9]+$'
           OR point::numeric NOT BETWEEN -9223372036854775808 AND 9223372036854775807 THEN
            RAISE EXCEPTION '__mycelium_shard: range split points must be comma-separated integers, got ''%''',
                ranges USING ERRCODE = '22023';
        END IF;
        splits := splits + 1;
        IF first IS NOT NULL AND point::numeric::bigint <= first THEN
            below := below + 1;
        END IF;
    END LOOP;
    IF splits + 1 <> shards THEN
        RAISE EXCEPTION '__mycelium_shard: % range split points make % shards, not %',
            splits, splits + 1, shards USING ERRCODE = '22023';
    END IF;
    RETURN CASE WHEN first IS NOT NULL THEN below ELSE shards - 1 END;
END
$f$;
";

/// The name calls have in scoped statements.
const CALL: &str = "__mycelium_shard";

/// `sql` with every unqualified `__mycelium_shard(shards, ranges, key...)` call rewritten to
/// the node's functions (see the module documentation), or `None` when it has none.
pub(crate) fn with_shard_keys(sql: &str) -> Option<String> {
    if !sql.contains(CALL) {
        return None;
    }
    let bytes = sql.as_bytes();
    let word_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$';
    let mut out = String::with_capacity(sql.len() + 64);
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(next) = skip_opaque(sql, i) {
            i = next;
            continue;
        }
        if !word_char(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && word_char(bytes[i]) {
            i += 1;
        }
        let qualified = start > 0 && bytes[start - 1] == b'.';
        if qualified || !sql[start..i].eq_ignore_ascii_case(CALL) {
            continue;
        }
        let open = i + sql[i..].len() - sql[i..].trim_start().len();
        if bytes.get(open) != Some(&b'(') {
            continue;
        }
        let (args, end) = arguments(sql, open + 1)?;
        let [shards, ranges, keys @ ..] = args.as_slice() else {
            continue;
        };
        let keys: Vec<String> = keys
            .iter()
            .map(|k| format!("mycelium.shard_key({k})"))
            .collect();
        out.push_str(&sql[copied..start]);
        out.push_str(&format!(
            "mycelium.{CALL}({shards}, {ranges}, VARIADIC ARRAY[{}]::bytea[])",
            keys.join(", ")
        ));
        copied = end;
        i = end;
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&sql[copied..]);
    Some(out)
}

/// The top-level, comma-separated arguments of a call whose `(` is just before `from`, and
/// the index past its `)`; `None` when the parentheses do not close.
fn arguments(sql: &str, from: usize) -> Option<(Vec<&str>, usize)> {
    let bytes = sql.as_bytes();
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut start = from;
    let mut i = from;
    while i < bytes.len() {
        if let Some(next) = skip_opaque(sql, i) {
            i = next;
            continue;
        }
        match bytes[i] {
            b'(' | b'[' => depth += 1,
            b')' | b']' if depth > 0 => depth -= 1,
            b')' => {
                let last = sql[start..i].trim();
                if !last.is_empty() || !args.is_empty() {
                    args.push(last);
                }
                return Some((args, i + 1));
            }
            b',' if depth == 0 => {
                args.push(sql[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::with_shard_keys;

    fn check(sql: &str, expected: Option<&str>) {
        assert_eq!(with_shard_keys(sql).as_deref(), expected, "{sql}");
    }

    #[test]
    fn calls_get_their_keys_wrapped() {
        check(
            "SELECT * FROM t WHERE __mycelium_shard(4, '', t.\"id\") IN (0, 2)",
            Some(
                "SELECT * FROM t WHERE mycelium.__mycelium_shard(4, '', VARIADIC \
                 ARRAY[mycelium.shard_key(t.\"id\")]::bytea[]) IN (0, 2)",
            ),
        );
        check(
            "DELETE FROM \"a,b\" WHERE __mycelium_shard (6, '1,5', \"a,b\".\"x)\", \
             \"a,b\".y) IN (1)",
            Some(
                "DELETE FROM \"a,b\" WHERE mycelium.__mycelium_shard(6, '1,5', VARIADIC \
                 ARRAY[mycelium.shard_key(\"a,b\".\"x)\"), mycelium.shard_key(\"a,b\".y)]::bytea[]) \
                 IN (1)",
            ),
        );
        check("SELECT '__mycelium_shard(1, 2, 3)'", None);
        check(
            "SELECT mycelium.__mycelium_shard(1, '', VARIADIC ARRAY[]::bytea[])",
            None,
        );
        check("SELECT 1", None);
    }
}
