//! Reads that span nodes: every node runs the statement (or the partial form the router
//! planned) and the proxy merges the streams: concatenation, a k-way merge for ORDER BY,
//! OFFSET/LIMIT, and combining partial aggregates, then the expressions the client computes
//! from them (the router's `Finish`: arithmetic, casts, `COALESCE`, `NULLIF`, evaluated by
//! `expr`). Only the values a merge needs are decoded; numerics exactly, with their scale
//! (`decimal`).

mod decimal;
mod expr;
mod finish;

use std::cmp::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use mycelium_protocol::types::{self, PgType, SqlValue, oid};
use mycelium_protocol::{Column, DataRows, DataRowsBuilder, Execute, Format, Reply, ReplyStream};
use mycelium_router::{
    Combine, CompareOp, Having, HavingOperand, MergeSpec, SortColumn, TablePlacement, merge_spec,
};

use self::decimal::Dec;
use self::expr::Resolved;
use crate::backend;
use crate::error::{ProxyError, sql_error};
use crate::execute::{Finished, Output};
use crate::replicas::Assignment;
use crate::session::Session;

/// One node's stream, read a row at a time.
struct Cursor {
    /// What the client is told if this node's stream ends early.
    gone: ProxyError,
    stream: ReplyStream,
    columns: Option<Arc<[Column]>>,
    pending: DataRows,
    done: bool,
}

impl Cursor {
    fn lost(&self) -> ProxyError {
        sql_error("08006", self.gone.to_client().message)
    }

    /// The next row (as a one-row batch), or `None` at the end.
    async fn next_row(&mut self) -> Result<Option<DataRows>, ProxyError> {
        loop {
            if !self.pending.is_empty() {
                return Ok(Some(self.pending.split_first(1)));
            }
            if self.done {
                return Ok(None);
            }
            match self.stream.recv().await {
                Some(Ok(Reply::Columns(columns))) => self.columns = Some(columns),
                Some(Ok(Reply::Rows(rows))) => self.pending = rows,
                Some(Ok(Reply::Complete { .. })) => self.done = true,
                Some(Err(e)) => return Err(e.into()),
                None => return Err(self.lost()),
            }
        }
    }

    /// Reads up to the column list (or the end, for statements without rows).
    async fn columns(&mut self) -> Result<Option<Arc<[Column]>>, ProxyError> {
        while self.columns.is_none() && !self.done && self.pending.is_empty() {
            match self.stream.recv().await {
                Some(Ok(Reply::Columns(columns))) => self.columns = Some(columns),
                Some(Ok(Reply::Rows(rows))) => self.pending = rows,
                Some(Ok(Reply::Complete { .. })) => self.done = true,
                Some(Err(e)) => return Err(e.into()),
                None => return Err(self.lost()),
            }
        }
        Ok(self.columns.clone())
    }
}

impl Session {
    pub(crate) async fn run_scatter(
        &mut self,
        placement: &TablePlacement,
        assignment: Assignment,
        request: Execute,
        output: Output,
    ) -> Result<Finished, ProxyError> {
        let spec = merge_spec(&request.sql)?;
        let node_request = match &spec.node_sql {
            Some(sql) => Execute {
                sql: Arc::from(sql.as_str()),
                ..request.clone()
            },
            None => request.clone(),
        };
        let statement = self.start_statement();
        let result = async {
            let mut cursors = Vec::with_capacity(assignment.len());
            for (node, keep) in &assignment {
                let node = *node;
                let scoped = self.scoped(node, placement, keep, &node_request)?;
                self.ensure_node_transaction(node).await?;
                let stream = self.node(node).await?.execute(scoped).await?;
                cursors.push(Cursor {
                    gone: self.node_gone(node),
                    stream,
                    columns: None,
                    pending: DataRows::default(),
                    done: false,
                });
            }
            let mut columns = None;
            for cursor in &mut cursors {
                let found = cursor.columns().await?;
                columns = columns.or(found);
            }
            let Some(columns) = columns else {
                return Err(sql_error(
                    "0A000",
                    "only queries that return rows can read from several nodes",
                ));
            };
            let visible = columns.len().saturating_sub(spec.hidden_columns);
            self.check_result_shape(visible)?;
            // The columns as merged: hidden ones too, which expressions read.
            let merged = merged_columns(&columns, spec.aggregates.as_deref());
            let mut described: Vec<Column> = merged[..visible].to_vec();
            let mut finishes = Vec::with_capacity(spec.finish.len());
            for (column, finish) in described.iter_mut().zip(&spec.finish) {
                let Some(finish) = finish else {
                    finishes.push(None);
                    continue;
                };
                let resolved = expr::resolve(finish, &merged)?;
                // Described with the expression's type, as Postgres describes `sum(x)::int4` as
                // `integer` and `sum(a) / count(*)` as `bigint`; an expression, not a table's
                // column.
                column.type_oid = resolved.ty.ty.oid();
                column.type_size = resolved.ty.ty.type_size();
                column.type_modifier = resolved.ty.typmod;
                column.table_oid = 0;
                column.column_id = 0;
                finishes.push(Some(resolved));
            }
            if matches!(output, Output::Simple) {
                backend::row_description(&mut self.conn.out, &described, |i| {
                    request.result_format(i)
                });
            }
            let sent = tokio::select! {
                sent = self.merge(&spec, &finishes, &mut cursors, &columns, &described, &request) => sent?,
                () = statement.token.cancelled() => {
                    return Err(statement.cancel_error());
                }
            };
            backend::command_complete(&mut self.conn.out, &format!("SELECT {sent}"));
            Ok(Finished::Complete)
        }
        .await;
        self.cancel.end_statement();
        result
    }

    async fn merge(
        &mut self,
        spec: &MergeSpec,
        finishes: &[Option<Resolved>],
        cursors: &mut [Cursor],
        columns: &[Column],
        described: &[Column],
        request: &Execute,
    ) -> Result<u64, ProxyError> {
        if spec.aggregates.is_some() {
            return self
                .combine(spec, finishes, cursors, columns, described, request)
                .await;
        }
        let sort: Vec<(usize, bool, bool)> = spec
            .order_by
            .iter()
            .map(|key| {
                let index = match &key.column {
                    SortColumn::Index(i) => Some(*i),
                    SortColumn::Hidden(i) => Some(described.len() + i),
                    SortColumn::Name(name) => columns
                        .iter()
                        .position(|c| c.name.eq_ignore_ascii_case(name)),
                };
                index
                    .filter(|&i| i < columns.len())
                    .map(|i| (i, key.descending, key.nulls_first))
                    .ok_or_else(|| sql_error("42703", "ORDER BY column is not in the result"))
            })
            .collect::<Result<_, _>>()?;
        let numeric = numeric_keys(&sort, columns);
        let mut window = Window::new(spec);
        if sort.is_empty() {
            for cursor in cursors.iter_mut() {
                while !window.full() {
                    let Some(row) = cursor.next_row().await? else {
                        break;
                    };
                    if window.admit(&row) {
                        write_row(&mut self.conn.out, &row, described.len(), columns.len());
                        self.conn.flush_if_full().await?;
                    }
                }
            }
            return Ok(window.sent);
        }
        let mut heads: Vec<Option<(DataRows, Vec<Option<SqlValue>>)>> =
            Vec::with_capacity(cursors.len());
        for cursor in cursors.iter_mut() {
            let head = match cursor.next_row().await? {
                Some(row) => Some(sort_values(row, &sort, columns, request)?),
                None => None,
            };
            heads.push(head);
        }
        while !window.full() {
            let mut best: Option<usize> = None;
            for (i, head) in heads.iter().enumerate() {
                let Some((_, values)) = head else { continue };
                let better = match best.and_then(|b| heads[b].as_ref()) {
                    None => true,
                    Some((_, best_values)) => {
                        compare_rows(values, best_values, &sort, &numeric) == Ordering::Less
                    }
                };
                if better {
                    best = Some(i);
                }
            }
            let Some(index) = best else { break };
            let next = match cursors[index].next_row().await? {
                Some(row) => Some(sort_values(row, &sort, columns, request)?),
                None => None,
            };
            let Some((row, _)) = std::mem::replace(&mut heads[index], next) else {
                break;
            };
            if window.admit(&row) {
                write_row(&mut self.conn.out, &row, described.len(), columns.len());
                self.conn.flush_if_full().await?;
            }
        }
        Ok(window.sent)
    }

    /// Merges the nodes' partial-aggregate rows group by group, filters them (HAVING),
    /// computes the columns' expressions, then sorts and cuts.
    async fn combine(
        &mut self,
        spec: &MergeSpec,
        finishes: &[Option<Resolved>],
        cursors: &mut [Cursor],
        columns: &[Column],
        described: &[Column],
        request: &Execute,
    ) -> Result<u64, ProxyError> {
        let combines = spec.aggregates.as_deref().unwrap_or_default();
        let merged = merged_columns(columns, Some(combines));
        // Groups by the bytes of their GROUP BY columns: equal values encode equally.
        let mut index: std::collections::HashMap<Vec<Option<Vec<u8>>>, usize> = Default::default();
        let mut groups: Vec<Vec<Option<SqlValue>>> = Vec::new();
        // Per group, the distinct values of each count(DISTINCT ...) column, by their bytes.
        let mut distinct: Vec<
            std::collections::HashMap<usize, std::collections::HashSet<Vec<u8>>>,
        > = Vec::new();
        let grouped = combines.contains(&Combine::Group);
        for cursor in cursors.iter_mut() {
            while let Some(row) = cursor.next_row().await? {
                let Some(fields) = row.iter().next() else {
                    continue;
                };
                let key: Vec<Option<Vec<u8>>> = combines
                    .iter()
                    .zip(&fields)
                    .filter(|(c, _)| **c == Combine::Group)
                    .map(|(_, f)| f.map(<[u8]>::to_vec))
                    .collect();
                let slot = *index.entry(key).or_insert_with(|| {
                    groups.push(vec![None; columns.len()]);
                    distinct.push(Default::default());
                    groups.len() - 1
                });
                for (i, field) in fields.iter().enumerate().take(columns.len()) {
                    let combine = combines.get(i).copied().unwrap_or(Combine::Sum);
                    if combine == Combine::CountDistinct {
                        let values = distinct[slot].entry(i).or_default();
                        if let Some(bytes) = field {
                            values.insert(bytes.to_vec());
                        }
                        continue;
                    }
                    if matches!(combine, Combine::Min | Combine::Max) {
                        comparable(&columns[i])?;
                    }
                    if matches!(combine, Combine::BitAnd | Combine::BitOr | Combine::BitXor) {
                        integer(&columns[i])?;
                    }
                    let value = decode(&columns[i], request.result_format(i), *field)?;
                    let numeric = columns[i].type_oid == oid::NUMERIC;
                    groups[slot][i] = merge_value(groups[slot][i].take(), value, combine, numeric)?;
                }
            }
        }
        if groups.is_empty() && !grouped {
            // An aggregate without GROUP BY always answers one row (count 0, sums NULL).
            groups.push(vec![None; columns.len()]);
            distinct.push(Default::default());
        }
        let mut finals: Vec<Vec<Option<SqlValue>>> = groups
            .into_iter()
            .zip(distinct)
            .map(|(totals, distinct)| {
                (0..columns.len())
                    .map(|i| match combines.get(i).copied().unwrap_or(Combine::Sum) {
                        Combine::Count => Ok(Some(totals[i].clone().unwrap_or(SqlValue::Int(0)))),
                        Combine::CountDistinct => Ok(Some(SqlValue::Int(
                            distinct.get(&i).map_or(0, |values| values.len() as i64),
                        ))),
                        Combine::Avg { count_column } => average(
                            totals[i].as_ref(),
                            totals.get(count_column).and_then(Option::as_ref),
                        ),
                        _ => Ok(totals[i].clone()),
                    })
                    .collect::<Result<Vec<_>, ProxyError>>()
            })
            .collect::<Result<_, _>>()?;
        // Merged timestamptz values are printed here, in the client's zone as a node would.
        let zone = types::TimeZone::of_setting(self.params.get("timezone").unwrap_or("UTC"));
        if let Some(having) = &spec.having {
            let mut kept = Vec::with_capacity(finals.len());
            for row in finals {
                if having_holds(having, &row, &merged)? == Some(true) {
                    kept.push(row);
                }
            }
            finals = kept;
        }
        // HAVING read the merged values; the columns' expressions apply now, before ORDER BY,
        // which sorts what the client sees. Each reads the row as merged.
        if finishes.iter().any(Option::is_some) {
            for row in &mut finals {
                let computed = types::with_session_time_zone(zone, || {
                    finishes
                        .iter()
                        .map(|finish| finish.as_ref().map(|f| f.eval(row)).transpose())
                        .collect::<Result<Vec<_>, ProxyError>>()
                })?;
                for (value, finish) in row.iter_mut().zip(computed) {
                    if let Some(finish) = finish {
                        *value = finish;
                    }
                }
            }
        }
        if spec.distinct {
            // Groups can end up equal (`SELECT DISTINCT count(*) ... GROUP BY g`): one of each.
            let mut seen = std::collections::HashSet::new();
            finals.retain(|row| seen.insert(distinct_key(&row[..described.len()], described)));
        }
        let sort: Vec<(usize, bool, bool)> = spec
            .order_by
            .iter()
            .filter_map(|key| match &key.column {
                SortColumn::Index(i) if *i < described.len() => {
                    Some((*i, key.descending, key.nulls_first))
                }
                SortColumn::Name(name) => described
                    .iter()
                    .position(|c| c.name.eq_ignore_ascii_case(name))
                    .map(|i| (i, key.descending, key.nulls_first)),
                _ => None,
            })
            .collect();
        if !sort.is_empty() {
            let numeric = numeric_keys(&sort, described);
            finals.sort_by(|a, b| {
                let keys = |row: &Vec<Option<SqlValue>>| {
                    sort.iter()
                        .map(|&(i, _, _)| row[i].clone())
                        .collect::<Vec<_>>()
                };
                compare_rows(&keys(a), &keys(b), &sort, &numeric)
            });
        }
        let skip = usize::try_from(spec.offset).unwrap_or(usize::MAX);
        let take = spec
            .limit
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let mut sent = 0u64;
        for values in finals.into_iter().skip(skip).take(take) {
            let mut builder = DataRowsBuilder::with_capacity(256);
            builder.begin_row();
            for (i, column) in described.iter().enumerate() {
                match &values[i] {
                    None | Some(SqlValue::Null) => builder.push_null(),
                    Some(value) => {
                        let ty = PgType::from_oid(column.type_oid).unwrap_or(PgType::Text);
                        let mut encoded = BytesMut::new();
                        match request.result_format(i) {
                            Format::Text => types::with_session_time_zone(zone, || {
                                types::encode_text(
                                    ty,
                                    column.type_modifier,
                                    value.as_ref(),
                                    &mut encoded,
                                )
                            })?,
                            Format::Binary => types::encode_binary(
                                ty,
                                column.type_modifier,
                                value.as_ref(),
                                &mut encoded,
                            )?,
                        }
                        builder.push_value(&encoded);
                    }
                }
            }
            builder.end_row();
            self.conn.out.extend_from_slice(builder.take().bytes());
            self.conn.flush_if_full().await?;
            sent += 1;
        }
        Ok(sent)
    }
}

/// The node query's columns as the merge makes them: an `avg` is numeric (or double
/// precision) where the node sent its sum, a `count(DISTINCT ...)` a bigint where the node sent
/// the values.
fn merged_columns(columns: &[Column], combines: Option<&[Combine]>) -> Vec<Column> {
    let mut merged = columns.to_vec();
    for (column, combine) in merged.iter_mut().zip(combines.unwrap_or_default()) {
        if let Combine::Avg { .. } = combine {
            let float = column.type_oid == oid::FLOAT8 || column.type_oid == oid::FLOAT4;
            column.type_oid = if float { oid::FLOAT8 } else { oid::NUMERIC };
            column.type_size = if float { 8 } else { -1 };
            column.type_modifier = -1;
        }
        if let Combine::CountDistinct = combine {
            // The nodes sent the values; the client gets their count.
            column.type_oid = oid::INT8;
            column.type_size = 8;
            column.type_modifier = -1;
            column.table_oid = 0;
            column.column_id = 0;
        }
    }
    merged
}

/// Which merged rows reach the client: DISTINCT, then OFFSET, then LIMIT.
struct Window {
    distinct: bool,
    seen: std::collections::HashSet<bytes::Bytes>,
    skip: u64,
    remaining: u64,
    sent: u64,
}

impl Window {
    fn new(spec: &MergeSpec) -> Window {
        Window {
            distinct: spec.distinct,
            seen: Default::default(),
            skip: spec.offset,
            remaining: spec.limit.unwrap_or(u64::MAX),
            sent: 0,
        }
    }

    fn full(&self) -> bool {
        self.remaining == 0
    }

    /// Whether `row` is sent; counts it if so.
    fn admit(&mut self, row: &DataRows) -> bool {
        if self.distinct && !self.seen.insert(row.bytes().clone()) {
            return false;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        self.remaining -= 1;
        self.sent += 1;
        true
    }
}

/// Writes a one-row batch, without the hidden columns the node query added.
fn write_row(out: &mut BytesMut, row: &DataRows, visible: usize, total: usize) {
    if visible == total {
        out.extend_from_slice(row.bytes());
        return;
    }
    let mut builder = DataRowsBuilder::with_capacity(row.bytes().len());
    for fields in row.iter() {
        builder.begin_row();
        for field in fields.iter().take(visible) {
            match field {
                Some(value) => builder.push_value(value),
                None => builder.push_null(),
            }
        }
        builder.end_row();
    }
    out.extend_from_slice(builder.take().bytes());
}

/// Refuses to order values of a type the proxy does not know how to compare (intervals,
/// arrays, jsonb, ...): read as text they would merge in the wrong order (nodes sort jsonb
/// by type, size and members).
fn comparable(column: &Column) -> Result<(), ProxyError> {
    match PgType::from_oid(column.type_oid) {
        Some(ty) if ty != PgType::Jsonb => Ok(()),
        _ => Err(sql_error(
            "0A000",
            format!(
                "ordering values of column \"{}\" (type OID {}) across several nodes (ORDER BY, \
                 min, max); order them on one node, or by a column of another type",
                column.name, column.type_oid
            ),
        )),
    }
}

/// `bit_and` and its kin merge integers only (a PostgreSQL node also has them over `bit`).
fn integer(column: &Column) -> Result<(), ProxyError> {
    match PgType::from_oid(column.type_oid) {
        Some(PgType::Int2 | PgType::Int4 | PgType::Int8) => Ok(()),
        _ => Err(sql_error(
            "0A000",
            format!(
                "merging bit_and/bit_or/bit_xor of column \"{}\" (type OID {}) across several \
                 nodes; only integers merge",
                column.name, column.type_oid
            ),
        )),
    }
}

fn decode(
    column: &Column,
    format: Format,
    field: Option<&[u8]>,
) -> Result<Option<SqlValue>, ProxyError> {
    let Some(bytes) = field else { return Ok(None) };
    let ty = PgType::from_oid(column.type_oid).unwrap_or(PgType::Text);
    if ty == PgType::Numeric {
        // Exact decimal text with the node's scale, which sums and quotients print with.
        let text = match format {
            Format::Text => std::str::from_utf8(bytes)
                .ok()
                .and_then(|t| finish::decimal_text(t.trim()).or_else(|| Some(t.trim().to_owned()))),
            Format::Binary => decimal::binary_numeric_text(bytes),
        };
        if let Some(text) = text {
            return Ok(Some(SqlValue::Text(text)));
        }
    }
    Ok(Some(types::decode_param(ty, format, bytes)?))
}

fn sort_values(
    row: DataRows,
    sort: &[(usize, bool, bool)],
    columns: &[Column],
    request: &Execute,
) -> Result<(DataRows, Vec<Option<SqlValue>>), ProxyError> {
    let fields = row.iter().next().unwrap_or_default();
    let values = sort
        .iter()
        .map(|&(i, _, _)| {
            comparable(&columns[i])?;
            decode(
                &columns[i],
                request.result_format(i),
                fields.get(i).copied().flatten(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((row, values))
}

/// What makes two merged rows the same for DISTINCT: their values, numerics by value
/// (`1.0` and `1.00` are equal).
fn distinct_key(row: &[Option<SqlValue>], columns: &[Column]) -> Vec<String> {
    row.iter()
        .zip(columns)
        .map(|(value, column)| match value {
            Some(value) if column.type_oid == oid::NUMERIC => finish::numeric_key(value),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Per sort key, whether its column is `numeric`: its values (integers, doubles, exact decimal
/// text) compare as decimals.
fn numeric_keys(sort: &[(usize, bool, bool)], columns: &[Column]) -> Vec<bool> {
    sort.iter()
        .map(|&(i, _, _)| columns.get(i).is_some_and(|c| c.type_oid == oid::NUMERIC))
        .collect()
}

fn compare_rows(
    a: &[Option<SqlValue>],
    b: &[Option<SqlValue>],
    sort: &[(usize, bool, bool)],
    numeric: &[bool],
) -> Ordering {
    for (((x, y), &(_, descending, nulls_first)), decimal) in a
        .iter()
        .zip(b)
        .zip(sort)
        .zip(numeric.iter().chain(std::iter::repeat(&false)))
    {
        let ordering = match (x, y) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => {
                if nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (Some(_), None) => {
                if nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (Some(x), Some(y)) => {
                let o = if *decimal {
                    finish::compare_numeric(x, y)
                } else {
                    compare_values(x, y)
                };
                if descending { o.reverse() } else { o }
            }
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

fn compare_values(a: &SqlValue, b: &SqlValue) -> Ordering {
    match (a, b) {
        (SqlValue::Int(x), SqlValue::Int(y)) => x.cmp(y),
        (SqlValue::Int(x), SqlValue::Float(y)) => (*x as f64).total_cmp(y),
        (SqlValue::Float(x), SqlValue::Int(y)) => x.total_cmp(&(*y as f64)),
        (SqlValue::Float(x), SqlValue::Float(y)) => x.total_cmp(y),
        (SqlValue::Text(x), SqlValue::Text(y)) => x.cmp(y),
        (SqlValue::Bytes(x), SqlValue::Bytes(y)) => x.cmp(y),
        (SqlValue::Null, SqlValue::Null) => Ordering::Equal,
        (SqlValue::Null, _) => Ordering::Greater,
        (_, SqlValue::Null) => Ordering::Less,
        _ => format!("{a:?}").cmp(&format!("{b:?}")),
    }
}

fn merge_value(
    total: Option<SqlValue>,
    value: Option<SqlValue>,
    combine: Combine,
    numeric: bool,
) -> Result<Option<SqlValue>, ProxyError> {
    let Some(value) = value else { return Ok(total) };
    let Some(total) = total else {
        return Ok(Some(value));
    };
    let compare = |a: &SqlValue, b: &SqlValue| {
        if numeric {
            finish::compare_numeric(a, b)
        } else {
            compare_values(a, b)
        }
    };
    Ok(Some(match combine {
        Combine::Group | Combine::CountDistinct => total,
        Combine::Count | Combine::Sum | Combine::Avg { .. } => add(total, value)?,
        Combine::Min => {
            if compare(&value, &total) == Ordering::Less {
                value
            } else {
                total
            }
        }
        Combine::Max => {
            if compare(&value, &total) == Ordering::Greater {
                value
            } else {
                total
            }
        }
        Combine::BitAnd | Combine::BitOr | Combine::BitXor => match (total, value) {
            (SqlValue::Int(a), SqlValue::Int(b)) => SqlValue::Int(match combine {
                Combine::BitAnd => a & b,
                Combine::BitOr => a | b,
                _ => a ^ b,
            }),
            // `integer` let only integer columns through, which decode to integers.
            (total, _) => total,
        },
    }))
}

/// The sum of two nodes' sums (or counts): numerics (decimal text) exactly, with the larger
/// scale, as Postgres's numeric sum.
fn add(a: SqlValue, b: SqlValue) -> Result<SqlValue, ProxyError> {
    Ok(match (a, b) {
        (SqlValue::Int(x), SqlValue::Int(y)) => match x.checked_add(y) {
            Some(sum) => SqlValue::Int(sum),
            None => SqlValue::Float(x as f64 + y as f64),
        },
        (SqlValue::Int(x), SqlValue::Float(y)) | (SqlValue::Float(y), SqlValue::Int(x)) => {
            SqlValue::Float(x as f64 + y)
        }
        (SqlValue::Float(x), SqlValue::Float(y)) => SqlValue::Float(x + y),
        (a @ SqlValue::Text(_), b) | (a, b @ SqlValue::Text(_)) => {
            SqlValue::Text(Dec::of(&a)?.add(Dec::of(&b)?)?.to_string())
        }
        (other, _) => other,
    })
}

/// Evaluates a HAVING condition on a merged group with SQL's three-valued logic
/// (`None` = unknown). `columns` are the merged columns, whose types say which values compare
/// as numbers.
fn having_holds(
    having: &Having,
    row: &[Option<SqlValue>],
    columns: &[Column],
) -> Result<Option<bool>, ProxyError> {
    Ok(match having {
        Having::And(a, b) => match (
            having_holds(a, row, columns)?,
            having_holds(b, row, columns)?,
        ) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Having::Or(a, b) => match (
            having_holds(a, row, columns)?,
            having_holds(b, row, columns)?,
        ) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Having::Not(inner) => having_holds(inner, row, columns)?.map(|b| !b),
        Having::IsNull { operand, negated } => {
            let null = operand_value(operand, row, columns)?.0.is_none();
            Some(null != *negated)
        }
        Having::Compare { left, op, right } => {
            let (Some(left), left_numeric) = operand_value(left, row, columns)? else {
                return Ok(None);
            };
            let (Some(right), right_numeric) = operand_value(right, row, columns)? else {
                return Ok(None);
            };
            let number = |v: &SqlValue| matches!(v, SqlValue::Int(_) | SqlValue::Float(_));
            // A numeric compares with a number, or a string read as one, by value.
            let ordering = if left_numeric
                || right_numeric
                || (number(&left) && !number(&right))
                || (number(&right) && !number(&left))
            {
                finish::compare_numeric(&left, &right)
            } else {
                compare_values(&left, &right)
            };
            Some(match op {
                CompareOp::Eq => ordering == Ordering::Equal,
                CompareOp::NotEq => ordering != Ordering::Equal,
                CompareOp::Lt => ordering == Ordering::Less,
                CompareOp::LtEq => ordering != Ordering::Greater,
                CompareOp::Gt => ordering == Ordering::Greater,
                CompareOp::GtEq => ordering != Ordering::Less,
            })
        }
    })
}

/// An operand's value (`None` is NULL) and whether it is a `numeric`.
fn operand_value(
    operand: &HavingOperand,
    row: &[Option<SqlValue>],
    columns: &[Column],
) -> Result<(Option<SqlValue>, bool), ProxyError> {
    Ok(match operand {
        HavingOperand::Column(i) => (
            row.get(*i)
                .cloned()
                .flatten()
                .filter(|v| *v != SqlValue::Null),
            columns.get(*i).is_some_and(|c| c.type_oid == oid::NUMERIC),
        ),
        HavingOperand::Expr(finish) => {
            let resolved = expr::resolve(finish, columns)?;
            (resolved.eval(row)?, resolved.ty.ty == PgType::Numeric)
        }
        HavingOperand::Int(i) => (Some(SqlValue::Int(*i)), false),
        HavingOperand::Float(f) => (Some(SqlValue::Float(*f)), false),
        HavingOperand::Text(t) => (Some(SqlValue::Text(t.clone())), false),
        HavingOperand::Null => (None, false),
    })
}

/// `avg` from the merged sum and count: Postgres divides the sum, as a numeric, by the count
/// (`numeric_div`: `35.0000000000000000`, `100000.000000000000`); doubles divide as doubles.
fn average(
    sum: Option<&SqlValue>,
    count: Option<&SqlValue>,
) -> Result<Option<SqlValue>, ProxyError> {
    let (Some(sum), Some(SqlValue::Int(count))) = (sum, count) else {
        return Ok(None);
    };
    if *count <= 0 {
        return Ok(None);
    }
    Ok(Some(match sum {
        SqlValue::Float(s) => SqlValue::Float(s / *count as f64),
        exact => SqlValue::Text(Dec::of(exact)?.divide(Dec::from_int(*count))?.to_string()),
    }))
}

#[cfg(test)]
mod tests;
