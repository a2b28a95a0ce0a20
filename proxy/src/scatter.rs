//! Reads that span nodes: every node runs the statement (or the partial form the router
//! planned) and the proxy merges the streams: concatenation, a k-way merge for ORDER BY,
//! OFFSET/LIMIT, and combining partial aggregates. Only the values a merge needs are decoded.

use std::cmp::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use mycelium_protocol::types::{self, PgType, SqlValue, oid};
use mycelium_protocol::{Column, DataRows, DataRowsBuilder, Execute, Format, Reply, ReplyStream};
use mycelium_router::{
    Combine, CompareOp, Having, HavingOperand, MergeSpec, SortColumn, TablePlacement, merge_spec,
};

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
            if matches!(output, Output::Simple) {
                backend::row_description(&mut self.conn.out, &described, |i| {
                    request.result_format(i)
                });
            }
            let sent = tokio::select! {
                sent = self.merge(&spec, &mut cursors, &columns, &described, &request) => sent?,
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
        cursors: &mut [Cursor],
        columns: &[Column],
        described: &[Column],
        request: &Execute,
    ) -> Result<u64, ProxyError> {
        if let Some(combines) = &spec.aggregates {
            return self
                .combine(spec, combines, cursors, columns, described, request)
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
                        compare_rows(values, best_values, &sort) == Ordering::Less
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

    /// Merges the nodes' partial-aggregate rows group by group, then sorts and cuts.
    async fn combine(
        &mut self,
        spec: &MergeSpec,
        combines: &[Combine],
        cursors: &mut [Cursor],
        columns: &[Column],
        described: &[Column],
        request: &Execute,
    ) -> Result<u64, ProxyError> {
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
            finals.sort_by(|a, b| {
                let keys = |row: &Vec<Option<SqlValue>>| {
                    sort.iter()
                        .map(|&(i, _, _)| row[i].clone())
                        .collect::<Vec<_>>()
                };
                compare_rows(&keys(a), &keys(b), &sort)
            });
        }
        let skip = usize::try_from(spec.offset).unwrap_or(usize::MAX);
        let take = spec
            .limit
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        // Merged timestamptz values are printed here, in the client's zone as a node would.
        let zone = types::TimeZone::of_setting(self.params.get("timezone").unwrap_or("UTC"));
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

fn compare_rows(
    a: &[Option<SqlValue>],
    b: &[Option<SqlValue>],
    sort: &[(usize, bool, bool)],
) -> Ordering {
    for ((x, y), &(_, descending, nulls_first)) in a.iter().zip(b).zip(sort) {
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
                let o = compare_values(x, y);
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
    use super::{comparable, exact_quotient};
    use mycelium_protocol::Column;

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
