//! Aggregates Postgres has and SQLite lacks: the variance family, the bitwise ones,
//! `json_object_agg`, and the ordered-set ones (`percentile_cont`, `percentile_disc`,
//! `mode`), which the rewriter turns into aggregates fed their rows in order.

use bytes::BytesMut;
use mycelium_protocol::DbError;
use mycelium_protocol::types::{self, PgType};
use rusqlite::Connection;
use rusqlite::functions::{Aggregate, Context};
use rusqlite::types::{Value, ValueRef};

use super::array::{Array, ArrayType};
use super::{
    DET, compare_values, fail, json, number, numeric, numeric_result, storage_ref, text_arg,
};

/// The variance family under the names the rewriter gives it (`stddev` and `variance` are
/// spelled `stddev_samp` and `var_samp`).
const VARIANCE_AGGREGATES: [&str; 4] = ["var_samp", "var_pop", "stddev_samp", "stddev_pop"];

/// `variance` / `stddev` and their `_samp` / `_pop` forms over `numeric` and integers:
/// exact, with Postgres's result scale; `text` gives the printed form (a result column),
/// else a double (inside expressions), as for `avg`.
struct NumericVariance {
    spread: numeric::Spread,
    text: bool,
}

impl Aggregate<numeric::VarianceState, Value> for NumericVariance {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<numeric::VarianceState> {
        Ok(numeric::VarianceState::default())
    }

    fn step(
        &self,
        ctx: &mut Context<'_>,
        state: &mut numeric::VarianceState,
    ) -> rusqlite::Result<()> {
        let scale: i64 = if ctx.len() > 1 { ctx.get(1)? } else { -1 };
        state
            .add(&numeric::operand(ctx.get_raw(0), scale).map_err(fail)?)
            .map_err(fail)
    }

    fn finalize(
        &self,
        _: &mut Context<'_>,
        state: Option<numeric::VarianceState>,
    ) -> rusqlite::Result<Value> {
        Ok(state
            .and_then(|s| s.finish(self.spread))
            .map_or(Value::Null, |text| numeric_result(text, self.text)))
    }
}

/// The running state of the variance family over doubles: count, sum and the sum of
/// squared deviations, updated as Postgres's `float8_accum` does (Youngs-Cramer).
#[derive(Default)]
struct FloatSpreadState {
    n: f64,
    sum: f64,
    squares: f64,
}

/// The variance family over `float4` / `float8`, as Postgres computes it in doubles.
struct FloatVariance {
    spread: numeric::Spread,
}

impl Aggregate<FloatSpreadState, Option<f64>> for FloatVariance {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<FloatSpreadState> {
        Ok(FloatSpreadState::default())
    }

    fn step(&self, ctx: &mut Context<'_>, state: &mut FloatSpreadState) -> rusqlite::Result<()> {
        let Some(value) = number(ctx.get_raw(0)).map(|v| v.unwrap_or_else(|i| i as f64)) else {
            return Ok(());
        };
        let (previous, previous_sum) = (state.n, state.sum);
        state.n += 1.0;
        state.sum += value;
        if previous > 0.0 {
            let deviation = value * state.n - state.sum;
            state.squares += deviation * deviation / (state.n * previous);
            // Infinite inputs make the result NaN; finite ones that overflow are an error.
            if state.sum.is_infinite() || state.squares.is_infinite() {
                if !previous_sum.is_infinite() && !value.is_infinite() {
                    return Err(fail(DbError::new("22003", "value out of range: overflow")));
                }
                state.squares = f64::NAN;
            }
        } else if !value.is_finite() {
            // A lone infinity or NaN must not read as variance zero.
            state.squares = f64::NAN;
        }
        Ok(())
    }

    fn finalize(
        &self,
        _: &mut Context<'_>,
        state: Option<FloatSpreadState>,
    ) -> rusqlite::Result<Option<f64>> {
        let Some(state) = state else {
            return Ok(None);
        };
        let divisor = if self.spread.sample {
            state.n - 1.0
        } else {
            state.n
        };
        if divisor <= 0.0 {
            return Ok(None);
        }
        let variance = state.squares / divisor;
        Ok(Some(if self.spread.stddev {
            variance.sqrt()
        } else {
            variance
        }))
    }
}

/// `bit_and`, `bit_or` and `bit_xor` of integers; NULLs are skipped, none left is NULL.
struct BitAggregate {
    combine: fn(i64, i64) -> i64,
}

impl Aggregate<Option<i64>, Option<i64>> for BitAggregate {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<Option<i64>> {
        Ok(None)
    }

    fn step(&self, ctx: &mut Context<'_>, acc: &mut Option<i64>) -> rusqlite::Result<()> {
        if let Some(value) = ctx.get::<Option<i64>>(0)? {
            *acc = Some(acc.map_or(value, |a| (self.combine)(a, value)));
        }
        Ok(())
    }

    fn finalize(
        &self,
        _: &mut Context<'_>,
        acc: Option<Option<i64>>,
    ) -> rusqlite::Result<Option<i64>> {
        Ok(acc.flatten())
    }
}

/// `json_object_agg` / `jsonb_object_agg` over keys and values already in JSON form
/// (`__pg_to_json`); the third argument says whether the key's type may be a key at all.
struct ObjectAgg {
    jsonb: bool,
}

type Members = Vec<(String, String)>;

impl Aggregate<Members, Option<String>> for ObjectAgg {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<Members> {
        Ok(Vec::new())
    }

    fn step(&self, ctx: &mut Context<'_>, members: &mut Members) -> rusqlite::Result<()> {
        let Some(key) = text_arg(ctx, 0)? else {
            return Err(fail(DbError::new("22023", "field name must not be null")));
        };
        if !ctx.get::<bool>(2)? {
            return Err(fail(DbError::new(
                "22023",
                "key value must be scalar, not array, composite, or json",
            )));
        }
        // A key is the text of its JSON scalar: strings unquoted, numbers and booleans as
        // written.
        let key = match json::parse_text(&key) {
            Some(json::Json::String(s)) => s,
            _ => key,
        };
        members.push((key, text_arg(ctx, 1)?.unwrap_or_else(|| "null".to_owned())));
        Ok(())
    }

    fn finalize(
        &self,
        _: &mut Context<'_>,
        members: Option<Members>,
    ) -> rusqlite::Result<Option<String>> {
        let Some(members) = members else {
            return Ok(None);
        };
        if !self.jsonb {
            // json keeps every member, duplicates too, with Postgres's spacing.
            let body: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{} : {v}", json::quote(k)))
                .collect();
            return Ok(Some(format!("{{ {} }}", body.join(", "))));
        }
        let mut values = Vec::with_capacity(members.len());
        for (key, value) in members {
            let value = json::parse(ValueRef::Text(value.as_bytes()))
                .map_err(fail)?
                .unwrap_or(json::Json::Null);
            values.push((key, value));
        }
        // Printing as jsonb sorts the keys and keeps the last of duplicates.
        json::render(&json::Json::Object(values))
            .map(Some)
            .map_err(fail)
    }
}

/// Which ordered-set aggregate a call is; `_multi` takes an array of fractions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OrderedKind {
    Cont,
    ContMulti,
    Disc,
    DiscMulti,
    Mode,
}

/// The non-NULL values in the order SQLite fed them (the call's `ORDER BY`), and the
/// direct arguments, which are the same on every row.
#[derive(Default)]
struct OrderedRows {
    values: Vec<Value>,
    fraction: Option<Value>,
    element: Option<(u32, i32)>,
}

struct OrderedSet {
    kind: OrderedKind,
}

fn out_of_range(fraction: f64) -> rusqlite::Error {
    fail(DbError::new(
        "22003",
        format!("percentile value {fraction} is not between 0 and 1"),
    ))
}

/// A fraction as Postgres checks it: NULL stays NULL, else it must be within [0, 1].
fn fraction(v: &Value) -> rusqlite::Result<Option<f64>> {
    let f = match v {
        Value::Null => return Ok(None),
        Value::Integer(i) => *i as f64,
        Value::Real(f) => *f,
        Value::Text(t) => t.trim().parse::<f64>().map_err(|_| {
            fail(DbError::new(
                "22P02",
                format!("invalid input syntax for type double precision: \"{t}\""),
            ))
        })?,
        Value::Blob(_) => {
            return Err(fail(DbError::new(
                "42804",
                "percentile fraction must be double precision",
            )));
        }
    };
    if !(0.0..=1.0).contains(&f) {
        return Err(out_of_range(f));
    }
    Ok(Some(f))
}

fn as_float(v: &Value) -> f64 {
    match v {
        Value::Integer(i) => *i as f64,
        Value::Real(f) => *f,
        Value::Text(t) => t.trim().parse().unwrap_or(f64::NAN),
        Value::Null | Value::Blob(_) => f64::NAN,
    }
}

/// `percentile_cont`: the value at `fraction` of the way through the sorted values,
/// interpolated between its neighbours as Postgres's `float8_lerp` does.
fn continuous(values: &[f64], fraction: f64) -> Option<f64> {
    let last = values.len().checked_sub(1)?;
    let position = fraction * last as f64;
    let (first, second) = (position.floor(), position.ceil());
    let low = *values.get(first as usize)?;
    if first == second {
        return Some(low);
    }
    let high = *values.get(second as usize)?;
    Some(low + (position - first) * (high - low))
}

/// `percentile_disc`: the first value whose position in the sorted values reaches
/// `fraction` of them.
fn discrete(values: &[Value], fraction: f64) -> Option<&Value> {
    let row = (fraction * values.len() as f64).ceil().max(1.0);
    values.get(row as usize - 1)
}

/// `mode`: the most frequent value; among equally frequent ones the first in sort order.
fn most_frequent(values: &[Value]) -> Option<&Value> {
    let mut best: Option<(&Value, usize)> = None;
    let mut run: Option<(&Value, usize)> = None;
    for value in values {
        run = match run {
            Some((current, n)) if compare_values(current, value).is_eq() => Some((current, n + 1)),
            _ => Some((value, 1)),
        };
        if let Some((current, n)) = run
            && best.is_none_or(|(_, most)| n > most)
        {
            best = Some((current, n));
        }
    }
    best.map(|(value, _)| value)
}

/// A value of type `oid` as an array element prints it.
fn element_text(v: &Value, oid: u32, typmod: i32) -> Result<String, DbError> {
    let ty = PgType::from_oid(oid).unwrap_or(PgType::Text);
    let mut out = BytesMut::new();
    types::encode_text(ty, typmod, storage_ref(ValueRef::from(v)), &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

impl OrderedSet {
    /// One result per fraction of the array, NULL for NULL fractions.
    fn multi(&self, rows: &OrderedRows) -> rusqlite::Result<Option<String>> {
        let float8 = ArrayType::of(PgType::Float8).ok_or_else(|| {
            fail(DbError::new(
                "42704",
                "type double precision[] does not exist",
            ))
        })?;
        let fractions = match &rows.fraction {
            Some(Value::Text(text)) => Array::parse(text, float8).map_err(fail)?,
            _ => return Ok(None),
        };
        let mut fractions_checked = Vec::with_capacity(fractions.items.len());
        for item in &fractions.items {
            fractions_checked.push(match item {
                Some(text) => fraction(&Value::Text(text.clone()))?,
                None => None,
            });
        }
        let floats: Vec<f64> = rows.values.iter().map(as_float).collect();
        let (element_type, items) = if self.kind == OrderedKind::ContMulti {
            let items = fractions_checked
                .iter()
                .map(|f| {
                    f.and_then(|f| continuous(&floats, f))
                        .map(|v| element_text(&Value::Real(v), PgType::Float8.oid(), -1))
                        .transpose()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?;
            (PgType::Float8, items)
        } else {
            let (oid, typmod) = rows.element.unwrap_or((PgType::Text.oid(), -1));
            let items = fractions_checked
                .iter()
                .map(|f| {
                    f.and_then(|f| discrete(&rows.values, f))
                        .map(|v| element_text(v, oid, typmod))
                        .transpose()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?;
            (PgType::from_oid(oid).unwrap_or(PgType::Text), items)
        };
        let array_type = ArrayType::of(element_type).ok_or_else(|| {
            fail(DbError::new(
                "42P18",
                "could not determine polymorphic type",
            ))
        })?;
        Array {
            lower: fractions.lower,
            items,
        }
        .format(array_type)
        .map(Some)
        .map_err(fail)
    }
}

impl Aggregate<OrderedRows, Value> for OrderedSet {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<OrderedRows> {
        Ok(OrderedRows::default())
    }

    fn step(&self, ctx: &mut Context<'_>, rows: &mut OrderedRows) -> rusqlite::Result<()> {
        if self.kind != OrderedKind::Mode && rows.fraction.is_none() {
            let given: Value = ctx.get(1)?;
            if matches!(self.kind, OrderedKind::Cont | OrderedKind::Disc) {
                fraction(&given)?;
            }
            rows.fraction = Some(given);
            if self.kind == OrderedKind::DiscMulti {
                rows.element = Some((ctx.get(2)?, ctx.get(3)?));
            }
        }
        let value: Value = ctx.get(0)?;
        if value != Value::Null {
            rows.values.push(value);
        }
        Ok(())
    }

    fn finalize(&self, _: &mut Context<'_>, rows: Option<OrderedRows>) -> rusqlite::Result<Value> {
        let Some(rows) = rows else {
            return Ok(Value::Null);
        };
        let single = match self.kind {
            OrderedKind::Mode => None,
            OrderedKind::Cont | OrderedKind::Disc => {
                match rows.fraction.as_ref().map(fraction).transpose()?.flatten() {
                    Some(f) => Some(f),
                    None => return Ok(Value::Null),
                }
            }
            OrderedKind::ContMulti | OrderedKind::DiscMulti => {
                if rows.values.is_empty() {
                    return Ok(Value::Null);
                }
                return Ok(self.multi(&rows)?.map_or(Value::Null, Value::Text));
            }
        };
        Ok(match (self.kind, single) {
            (OrderedKind::Cont, Some(f)) => {
                let floats: Vec<f64> = rows.values.iter().map(as_float).collect();
                continuous(&floats, f).map_or(Value::Null, Value::Real)
            }
            (OrderedKind::Disc, Some(f)) => {
                discrete(&rows.values, f).cloned().unwrap_or(Value::Null)
            }
            _ => most_frequent(&rows.values).cloned().unwrap_or(Value::Null),
        })
    }
}

pub(super) fn register(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_aggregate_function(
        "__pg_bit_and",
        1,
        DET,
        BitAggregate {
            combine: |a, b| a & b,
        },
    )?;
    conn.create_aggregate_function(
        "__pg_bit_or",
        1,
        DET,
        BitAggregate {
            combine: |a, b| a | b,
        },
    )?;
    conn.create_aggregate_function(
        "__pg_bit_xor",
        1,
        DET,
        BitAggregate {
            combine: |a, b| a ^ b,
        },
    )?;
    for name in VARIANCE_AGGREGATES {
        let Some(spread) = numeric::Spread::named(name) else {
            continue;
        };
        for n_arg in [1, 2] {
            conn.create_aggregate_function(
                format!("__pg_{name}").as_str(),
                n_arg,
                DET,
                NumericVariance {
                    spread,
                    text: false,
                },
            )?;
            conn.create_aggregate_function(
                format!("__pg_{name}_text").as_str(),
                n_arg,
                DET,
                NumericVariance { spread, text: true },
            )?;
        }
        conn.create_aggregate_function(
            format!("__pg_float_{name}").as_str(),
            1,
            DET,
            FloatVariance { spread },
        )?;
    }
    for (name, n_arg, kind) in [
        ("__pg_percentile_cont", 2, OrderedKind::Cont),
        ("__pg_percentile_cont_multi", 2, OrderedKind::ContMulti),
        ("__pg_percentile_disc", 2, OrderedKind::Disc),
        ("__pg_percentile_disc_multi", 4, OrderedKind::DiscMulti),
        ("__pg_mode", 1, OrderedKind::Mode),
    ] {
        conn.create_aggregate_function(name, n_arg, DET, OrderedSet { kind })?;
    }
    // (fraction, the aggregate's result): the result once the fraction passed the check.
    conn.create_scalar_function("__pg_percentile_check", 2, DET, |ctx| {
        Ok(match fraction(&ctx.get::<Value>(0)?)? {
            Some(_) => ctx.get::<Value>(1)?,
            None => Value::Null,
        })
    })?;
    conn.create_aggregate_function("__pg_json_object_agg", 3, DET, ObjectAgg { jsonb: false })?;
    conn.create_aggregate_function("__pg_jsonb_object_agg", 3, DET, ObjectAgg { jsonb: true })?;
    Ok(())
}
