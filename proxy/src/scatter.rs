//! Reads that span nodes: every node runs the statement (or the partial form the router
//! planned) and the proxy merges the streams: concatenation, a k-way merge for ORDER BY,
//! OFFSET/LIMIT, and combining partial aggregates, then the casts and `COALESCE` the client
//! wrapped around them (the router's `Finish` steps, applied by `finish`). Only the values a
//! merge needs are decoded.

mod finish;

use std::cmp::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use mycelium_protocol::types::{self, PgType, SqlValue, oid};
use mycelium_protocol::{Column, DataRows, DataRowsBuilder, Execute, Format, Reply, ReplyStream};
use mycelium_router::{
    Combine, CompareOp, Having, HavingOperand, MergeSpec, SortColumn, TablePlacement, merge_spec,
};

use self::finish::{Step, finish_column, finish_value};
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
            let mut described: Vec<Column> = columns[..visible].to_vec();
            if let Some(combines) = &spec.aggregates {
                for (column, combine) in described.iter_mut().zip(combines) {
                    if let Combine::Avg { .. } = combine {
                        let float =
                            column.type_oid == oid::FLOAT8 || column.type_oid == oid::FLOAT4;
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
            }
            let finishes = described
                .iter_mut()
                .zip(&spec.finish)
                .map(|(column, steps)| finish_column(column, steps))
                .collect::<Result<Vec<_>, _>>()?;
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
        finishes: &[Vec<Step>],
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
    /// finishes them (casts, COALESCE), then sorts and cuts.
    async fn combine(
        &mut self,
        spec: &MergeSpec,
        finishes: &[Vec<Step>],
        cursors: &mut [Cursor],
        columns: &[Column],
        described: &[Column],
        request: &Execute,
    ) -> Result<u64, ProxyError> {
        let combines = spec.aggregates.as_deref().unwrap_or_default();
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
                    groups[slot][i] = merge_value(groups[slot][i].take(), value, combine);
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
                        Combine::Count => Some(totals[i].clone().unwrap_or(SqlValue::Int(0))),
                        Combine::CountDistinct => Some(SqlValue::Int(
                            distinct.get(&i).map_or(0, |values| values.len() as i64),
                        )),
                        Combine::Avg { count_column } => average(
                            totals[i].as_ref(),
                            totals.get(count_column).and_then(Option::as_ref),
                        ),
                        _ => totals[i].clone(),
                    })
                    .collect()
            })
            .collect();
        if let Some(having) = &spec.having {
            finals.retain(|row| having_holds(having, row) == Some(true));
        }
        // Merged timestamptz values are printed here, in the client's zone as a node would.
        let zone = types::TimeZone::of_setting(self.params.get("timezone").unwrap_or("UTC"));
        // HAVING read the bare aggregates; the client's casts and COALESCE apply now, before
        // ORDER BY, which sorts what the client sees.
        if finishes.iter().any(|steps| !steps.is_empty()) {
            for row in &mut finals {
                for (value, steps) in row.iter_mut().zip(finishes) {
                    *value =
                        types::with_session_time_zone(zone, || finish_value(value.take(), steps))?;
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
) -> Option<SqlValue> {
    let Some(value) = value else { return total };
    let Some(total) = total else {
        return Some(value);
    };
    Some(match combine {
        Combine::Group | Combine::CountDistinct => total,
        Combine::Count | Combine::Sum | Combine::Avg { .. } => add(total, value),
        Combine::Min => {
            if compare_values(&value, &total) == Ordering::Less {
                value
            } else {
                total
            }
        }
        Combine::Max => {
            if compare_values(&value, &total) == Ordering::Greater {
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
    })
}

fn add(a: SqlValue, b: SqlValue) -> SqlValue {
    match (a, b) {
        (SqlValue::Int(x), SqlValue::Int(y)) => match x.checked_add(y) {
            Some(sum) => SqlValue::Int(sum),
            None => SqlValue::Float(x as f64 + y as f64),
        },
        (SqlValue::Int(x), SqlValue::Float(y)) | (SqlValue::Float(y), SqlValue::Int(x)) => {
            SqlValue::Float(x as f64 + y)
        }
        (SqlValue::Float(x), SqlValue::Float(y)) => SqlValue::Float(x + y),
        (SqlValue::Text(x), other) | (other, SqlValue::Text(x)) => {
            let parsed: f64 = x.parse().unwrap_or(0.0);
            add(SqlValue::Float(parsed), other)
        }
        (other, _) => other,
    }
}

/// Evaluates a HAVING condition on a merged group with SQL's three-valued logic
/// (`None` = unknown).
fn having_holds(having: &Having, row: &[Option<SqlValue>]) -> Option<bool> {
    match having {
        Having::And(a, b) => match (having_holds(a, row), having_holds(b, row)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Having::Or(a, b) => match (having_holds(a, row), having_holds(b, row)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Having::Not(inner) => having_holds(inner, row).map(|b| !b),
        Having::IsNull { operand, negated } => {
            let null = operand_value(operand, row).is_none();
            Some(null != *negated)
        }
        Having::Compare { left, op, right } => {
            let (left, right) =
                numeric_if_mixed(operand_value(left, row)?, operand_value(right, row)?);
            let ordering = compare_values(&left, &right);
            Some(match op {
                CompareOp::Eq => ordering == Ordering::Equal,
                CompareOp::NotEq => ordering != Ordering::Equal,
                CompareOp::Lt => ordering == Ordering::Less,
                CompareOp::LtEq => ordering != Ordering::Greater,
                CompareOp::Gt => ordering == Ordering::Greater,
                CompareOp::GtEq => ordering != Ordering::Less,
            })
        }
    }
}

fn operand_value(operand: &HavingOperand, row: &[Option<SqlValue>]) -> Option<SqlValue> {
    match operand {
        HavingOperand::Column(i) => match row.get(*i)?.clone()? {
            SqlValue::Null => None,
            value => Some(value),
        },
        HavingOperand::Int(i) => Some(SqlValue::Int(*i)),
        HavingOperand::Float(f) => Some(SqlValue::Float(*f)),
        HavingOperand::Text(t) => Some(SqlValue::Text(t.clone())),
        HavingOperand::Null => None,
    }
}

/// Exact averages are decimal text: compared with a number, they compare as numbers.
fn numeric_if_mixed(left: SqlValue, right: SqlValue) -> (SqlValue, SqlValue) {
    let number = |v: &SqlValue| matches!(v, SqlValue::Int(_) | SqlValue::Float(_));
    let parse = |v: SqlValue| match v {
        SqlValue::Text(t) => t
            .parse::<f64>()
            .map(SqlValue::Float)
            .unwrap_or(SqlValue::Text(t)),
        other => other,
    };
    match (number(&left), number(&right)) {
        (true, false) => (left, parse(right)),
        (false, true) => (parse(left), right),
        _ => (left, right),
    }
}

/// `avg` from the merged sum and count. For integers Postgres answers a numeric with 16
/// decimals (`35.0000000000000000`); it is computed exactly, rounding half away from zero.
fn average(sum: Option<&SqlValue>, count: Option<&SqlValue>) -> Option<SqlValue> {
    let count = match count? {
        SqlValue::Int(n) if *n > 0 => *n,
        _ => return None,
    };
    match sum? {
        SqlValue::Int(s) => Some(SqlValue::Text(exact_quotient(*s, count, 16))),
        SqlValue::Float(s) => Some(SqlValue::Float(s / count as f64)),
        _ => None,
    }
}

fn exact_quotient(dividend: i64, divisor: i64, scale: u32) -> String {
    let factor = 10i128.pow(scale);
    let numerator = i128::from(dividend) * factor;
    let divisor = i128::from(divisor);
    let mut quotient = numerator / divisor;
    let remainder = numerator % divisor;
    if remainder.abs() * 2 >= divisor.abs() {
        quotient += if (numerator < 0) == (divisor < 0) {
            1
        } else {
            -1
        };
    }
    let negative = quotient < 0;
    let digits = quotient.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{}{whole}.{fraction}", if negative { "-" } else { "" })
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use super::finish::{Typed, cast_value, compare_numeric, decimal_text};
    use super::{comparable, exact_quotient, finish_column, finish_value};
    use mycelium_protocol::Column;
    use mycelium_protocol::types::{PgType, SqlValue, oid};
    use mycelium_router::{Constant, Finish};

    /// A merged value of type `from` cast to `to` (a type as written in SQL): the value, or
    /// the error's SQLSTATE and message.
    fn cast(value: SqlValue, from: PgType, to: &str) -> Result<SqlValue, (String, String)> {
        let (ty, typmod) = PgType::parse_sql_name(to).expect("a type name");
        cast_value(&value, Typed::plain(from), Typed { ty, typmod }).map_err(|e| {
            let e = e.to_client();
            (e.code, e.message)
        })
    }

    fn int(i: i64) -> SqlValue {
        SqlValue::Int(i)
    }

    fn text(t: &str) -> SqlValue {
        SqlValue::Text(t.to_owned())
    }

    fn out_of_range(name: &str) -> Result<SqlValue, (String, String)> {
        Err(("22003".to_owned(), format!("{name} out of range")))
    }

    #[test]
    fn casts_round_and_check_ranges_as_postgres() {
        // numeric → integer rounds half away from zero, double → integer half to even.
        for (value, want) in [
            ("2.5", 3),
            ("-2.5", -3),
            ("0.5", 1),
            ("0.49", 0),
            ("21", 21),
        ] {
            assert_eq!(
                cast(text(value), PgType::Numeric, "int"),
                Ok(int(want)),
                "{value}"
            );
        }
        for (value, want) in [(2.5, 2), (1.5, 2), (-2.5, -2), (0.5, 0), (2.6, 3)] {
            assert_eq!(
                cast(SqlValue::Float(value), PgType::Float8, "int8"),
                Ok(int(want)),
                "{value}"
            );
        }
        // An average of integers is exact decimal text.
        assert_eq!(
            cast(text("10.5000000000000000"), PgType::Numeric, "integer"),
            Ok(int(11))
        );
        assert_eq!(
            cast(int(2_147_483_648), PgType::Int8, "int4"),
            out_of_range("integer")
        );
        assert_eq!(
            cast(int(2_147_483_647), PgType::Int8, "int4"),
            Ok(int(2_147_483_647))
        );
        assert_eq!(
            cast(int(40_000), PgType::Int8, "smallint"),
            out_of_range("smallint")
        );
        assert_eq!(
            cast(text("9223372036854775807.5"), PgType::Numeric, "bigint"),
            out_of_range("bigint")
        );
        assert_eq!(
            cast(text("100000000000000000000"), PgType::Numeric, "int8"),
            out_of_range("bigint")
        );
        assert_eq!(
            cast(SqlValue::Float(1e300), PgType::Float8, "int8"),
            out_of_range("bigint")
        );
        assert_eq!(
            cast(SqlValue::Float(f64::NAN), PgType::Float8, "int"),
            out_of_range("integer")
        );
        assert_eq!(
            cast(text("NaN"), PgType::Numeric, "int"),
            Err((
                "0A000".to_owned(),
                "cannot convert NaN to integer".to_owned()
            ))
        );
        // Booleans cast to integer and to text only.
        assert_eq!(cast(int(1), PgType::Bool, "int4"), Ok(int(1)));
        assert_eq!(cast(int(0), PgType::Bool, "text"), Ok(text("false")));
    }

    #[test]
    fn casts_to_numeric_float_and_text_print_as_postgres() {
        // float8_numeric keeps 15 significant digits, float4_numeric 6.
        assert_eq!(
            cast(SqlValue::Float(0.1 + 0.2), PgType::Float8, "numeric"),
            Ok(text("0.3"))
        );
        assert_eq!(
            cast(SqlValue::Float(1e20), PgType::Float8, "numeric"),
            Ok(text("100000000000000000000"))
        );
        assert_eq!(
            cast(SqlValue::Float(123_456_789.0), PgType::Float4, "numeric"),
            Ok(text("123457000"))
        );
        // A typmod rounds to its scale and bounds the digits before the point.
        assert_eq!(
            cast(int(21), PgType::Int8, "numeric(10,2)"),
            Ok(text("21.00"))
        );
        assert_eq!(
            cast(text("1.005"), PgType::Numeric, "numeric(10,2)"),
            Ok(text("1.01"))
        );
        assert_eq!(
            cast(text("10.5000000000000000"), PgType::Numeric, "decimal(5,1)"),
            Ok(text("10.5"))
        );
        assert_eq!(
            cast(int(12_345), PgType::Int8, "numeric(3,0)")
                .map_err(|(code, message)| (code, message.starts_with("numeric field overflow"))),
            Err(("22003".to_owned(), true))
        );
        assert_eq!(
            cast(
                text("10.5000000000000000"),
                PgType::Numeric,
                "double precision"
            ),
            Ok(SqlValue::Float(10.5))
        );
        assert_eq!(
            cast(int(16_777_217), PgType::Int8, "real"),
            Ok(SqlValue::Float(16_777_216.0))
        );
        assert_eq!(
            cast(SqlValue::Float(1e39), PgType::Float8, "float4"),
            Err((
                "22003".to_owned(),
                "value out of range: overflow".to_owned()
            ))
        );
        assert_eq!(cast(int(21), PgType::Int8, "text"), Ok(text("21")));
        assert_eq!(
            cast(text("35.0000000000000000"), PgType::Numeric, "text"),
            Ok(text("35.0000000000000000"))
        );
        assert_eq!(cast(text(" 12 "), PgType::Text, "int"), Ok(int(12)));
    }

    fn column(type_oid: u32) -> Column {
        Column {
            name: "sum".to_owned(),
            table_oid: 7,
            column_id: 2,
            type_oid,
            type_size: -1,
            type_modifier: -1,
        }
    }

    #[test]
    fn finished_columns_take_the_type_postgres_resolves() {
        let cast = |ty: &str| Finish::Cast(ty.to_owned());
        let zero = Finish::Coalesce(Constant::Int(0));
        // COALESCE(sum(int), 0)::int: bigint, then integer.
        let mut sum = column(oid::INT8);
        let steps = finish_column(&mut sum, &[zero.clone(), cast("int")]).expect("steps");
        assert_eq!(
            (sum.type_oid, sum.type_size, sum.table_oid),
            (oid::INT4, 4, 0)
        );
        assert_eq!(finish_value(None, &steps).expect("empty"), Some(int(0)));
        assert_eq!(
            finish_value(Some(int(12)), &steps).expect("sum"),
            Some(int(12))
        );
        assert!(finish_value(Some(int(3_000_000_000)), &steps).is_err());
        // COALESCE keeps the aggregate's type when it is the wider one, else takes the
        // constant's.
        for (aggregate, constant, want) in [
            (oid::INT8, Constant::Int(0), oid::INT8),
            (oid::NUMERIC, Constant::Int(0), oid::NUMERIC),
            (oid::FLOAT8, Constant::Int(0), oid::FLOAT8),
            (oid::INT2, Constant::Int(0), oid::INT4),
            (oid::INT4, Constant::Int(3_000_000_000), oid::INT8),
            (oid::INT8, Constant::Numeric("0.5".to_owned()), oid::NUMERIC),
            (oid::INT8, Constant::Text("5".to_owned()), oid::INT8),
            (oid::TEXT, Constant::Text("none".to_owned()), oid::TEXT),
        ] {
            let mut merged = column(aggregate);
            finish_column(&mut merged, &[Finish::Coalesce(constant.clone())])
                .unwrap_or_else(|e| panic!("{aggregate} {constant:?}: {e:?}"));
            assert_eq!(merged.type_oid, want, "{aggregate} {constant:?}");
        }
        // coalesce(avg(int), 0) is numeric: 0 prints as 0.
        let steps =
            finish_column(&mut column(oid::NUMERIC), std::slice::from_ref(&zero)).expect("avg");
        assert_eq!(finish_value(None, &steps).expect("empty"), Some(text("0")));
        // numeric(10,2) is described with its typmod.
        let mut described = column(oid::INT8);
        finish_column(&mut described, &[cast("numeric(10,2)")]).expect("numeric");
        assert_eq!(
            (described.type_oid, described.type_modifier),
            (oid::NUMERIC, (10 << 16 | 2) + 4)
        );
        // What Postgres refuses when planning, and casts the proxy does not do.
        let code = |aggregate: u32, step: Finish| {
            finish_column(&mut column(aggregate), &[step])
                .map(|_| ())
                .map_err(|e| e.to_client().code)
        };
        assert_eq!(
            code(
                oid::INT8,
                Finish::Coalesce(Constant::Text("abc".to_owned()))
            ),
            Err("22P02".to_owned())
        );
        assert_eq!(code(oid::TEXT, zero), Err("42804".to_owned()));
        assert_eq!(code(oid::BOOL, cast("int8")), Err("0A000".to_owned()));
        assert_eq!(code(oid::DATE, cast("int4")), Err("0A000".to_owned()));
        assert_eq!(code(oid::INT8, cast("varchar(3)")), Err("0A000".to_owned()));
        // A cast keeps NULL.
        let steps = finish_column(&mut column(oid::INT8), &[cast("int")]).expect("cast");
        assert_eq!(
            finish_value(Some(SqlValue::Null), &steps).expect("null"),
            None
        );
    }

    #[test]
    fn numeric_values_order_as_numbers() {
        assert_eq!(
            compare_numeric(&text("100.5000000000000000"), &text("35.0000000000000000")),
            Ordering::Greater
        );
        assert_eq!(compare_numeric(&text("-10.5"), &text("-9")), Ordering::Less);
        assert_eq!(compare_numeric(&int(2), &text("2.000")), Ordering::Equal);
        assert_eq!(
            compare_numeric(&SqlValue::Float(0.25), &text("0.3")),
            Ordering::Less
        );
        assert_eq!(
            compare_numeric(&text("NaN"), &int(i64::MAX)),
            Ordering::Greater
        );
        assert_eq!(compare_numeric(&text("-0.0"), &int(0)), Ordering::Equal);
    }

    #[test]
    fn decimals_print_as_numeric_out() {
        for (literal, want) in [
            ("0.5", Some("0.5")),
            ("00.50", Some("0.50")),
            (".5", Some("0.5")),
            ("5.", Some("5")),
            ("1e3", Some("1000")),
            ("1.50e1", Some("15.0")),
            ("3e-1", Some("0.3")),
            ("-1e-7", Some("-0.0000001")),
            ("-0.00", Some("0.00")),
            ("1e", None),
            ("abc", None),
        ] {
            assert_eq!(decimal_text(literal).as_deref(), want, "{literal}");
        }
    }

    #[test]
    fn orders_only_types_it_compares_as_postgres() {
        let column = |type_oid| Column {
            name: "c".to_owned(),
            table_oid: 0,
            column_id: 0,
            type_oid,
            type_size: -1,
            type_modifier: -1,
        };
        assert!(comparable(&column(25)).is_ok());
        // jsonb, interval
        assert!(comparable(&column(3802)).is_err());
        assert!(comparable(&column(1186)).is_err());
    }

    #[test]
    fn averages_print_like_postgres() {
        assert_eq!(exact_quotient(210, 6, 16), "35.0000000000000000");
        assert_eq!(exact_quotient(10, 3, 16), "3.3333333333333333");
        assert_eq!(exact_quotient(20, 3, 16), "6.6666666666666667");
        assert_eq!(exact_quotient(-20, 3, 16), "-6.6666666666666667");
        assert_eq!(exact_quotient(1, 8, 2), "0.13");
    }
}
