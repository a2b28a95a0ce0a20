//! `CREATE TABLE ... AS query`: a `CREATE TABLE` of the columns a node describes the query
//! with, then `INSERT INTO ... query` routed like any other statement (so a query over
//! sharded tables reads every node's rows), in one transaction. See the router's
//! `create_as.rs` for why it is not sent to the nodes as it is.

use std::sync::Arc;

use mycelium_protocol::types::PgType;
use mycelium_protocol::{Column, Execute};
use mycelium_router::CreateTableAs;

use crate::backend::{self, Report, TxnStatus};
use crate::error::{ProxyError, sql_error};
use crate::execute::{Output, quote_ident};
use crate::session::Session;

impl Session {
    /// Runs a `CREATE TABLE ... AS`; answers `SELECT n` (rows copied), or `CREATE TABLE AS`
    /// when no data was asked for or the table existed (`IF NOT EXISTS`).
    pub(crate) async fn create_table_as(&mut self, ctas: &CreateTableAs) -> Result<(), ProxyError> {
        if ctas.if_not_exists && self.table_exists(&ctas.name).await? {
            backend::notice_response(
                &mut self.conn.out,
                &Report {
                    severity: "NOTICE",
                    code: "42P07",
                    message: &format!("relation \"{}\" already exists, skipping", ctas.table),
                    detail: None,
                    hint: None,
                },
            );
            backend::command_complete(&mut self.conn.out, "CREATE TABLE AS");
            return Ok(());
        }
        let query: Arc<str> = Arc::from(ctas.query.as_str());
        let node = self.describe_node(&query, &[]);
        let described = self.node(node).await?.describe(&query, &[]).await?;
        let names = column_names(&ctas.columns, &described.columns)?;
        let definitions = names
            .iter()
            .zip(&described.columns)
            .map(|(name, column)| Ok(format!("{} {}", quote_ident(name), type_name(column)?)))
            .collect::<Result<Vec<_>, ProxyError>>()?;
        let create = format!(
            "CREATE {}TABLE {} ({}) {}",
            if ctas.unlogged { "UNLOGGED " } else { "" },
            ctas.name,
            definitions.join(", "),
            ctas.options
        );
        let insert = format!(
            "INSERT INTO {} ({}) {}",
            ctas.name,
            names
                .iter()
                .map(|n| quote_ident(n))
                .collect::<Vec<_>>()
                .join(", "),
            ctas.query
        );
        let implicit = self.status == TxnStatus::Idle;
        if implicit {
            self.begin_transaction("BEGIN")?;
        }
        let mut result = self.run_quietly(create, true).await;
        if result.is_ok() && ctas.with_data {
            result = self.run_quietly(insert, false).await;
        }
        if implicit {
            let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
            let finished = self.finish_transaction(end).await;
            if result.is_ok() {
                finished?;
            }
        }
        let tag = match result?.strip_prefix("INSERT 0 ") {
            Some(rows) if ctas.with_data => format!("SELECT {rows}"),
            _ => "CREATE TABLE AS".to_owned(),
        };
        backend::command_complete(&mut self.conn.out, &tag);
        Ok(())
    }

    /// Whether a table of that name exists, as a node sees it.
    async fn table_exists(&mut self, name: &str) -> Result<bool, ProxyError> {
        let probe: Arc<str> = Arc::from(format!("SELECT * FROM {name}"));
        let node = self.describe_node(&probe, &[]);
        match self.node(node).await?.describe(&probe, &[]).await {
            Ok(_) => Ok(true),
            Err(e) if e.code == "42P01" => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs a statement of the proxy's own within the client's statement: what it answers
    /// is taken back (unless already sent), and its command tag returned.
    async fn run_quietly(&mut self, sql: String, ddl: bool) -> Result<String, ProxyError> {
        let (flushes, len) = (self.conn.flushes, self.conn.out.len());
        self.run_forward(Execute::simple(sql), Output::Simple, ddl)
            .await?;
        let tag = last_command_tag(&self.conn.out[len.min(self.conn.out.len())..]);
        if self.conn.flushes == flushes {
            self.conn.out.truncate(len);
        }
        Ok(tag.unwrap_or_default())
    }
}

/// The query's column names, the first ones renamed by the list given before AS.
fn column_names(given: &[String], columns: &[Column]) -> Result<Vec<String>, ProxyError> {
    if given.len() > columns.len() {
        return Err(sql_error("42601", "too many column names were specified"));
    }
    Ok(columns
        .iter()
        .enumerate()
        .map(|(i, column)| given.get(i).unwrap_or(&column.name).clone())
        .collect())
}

/// The SQL type of a described column (with its modifier), for the new table.
fn type_name(column: &Column) -> Result<String, ProxyError> {
    if let Some(ty) = PgType::from_oid(column.type_oid) {
        return Ok(ty.format_type(column.type_modifier));
    }
    if column.type_oid == INTERVAL_OID {
        return Ok("interval".to_owned());
    }
    if let Some(&(_, element)) = ARRAYS.iter().find(|(oid, _)| *oid == column.type_oid) {
        return Ok(format!("{}[]", element.format_type(column.type_modifier)));
    }
    Err(sql_error(
        "0A000",
        format!(
            "CREATE TABLE ... AS cannot create column \"{}\" of type OID {}; create the table \
             first and fill it with INSERT ... SELECT",
            column.name, column.type_oid
        ),
    ))
}

const INTERVAL_OID: u32 = 1186;

/// Array type OIDs and their element types.
const ARRAYS: &[(u32, PgType)] = &[
    (1000, PgType::Bool),
    (1001, PgType::Bytea),
    (1002, PgType::Char),
    (1003, PgType::Name),
    (1005, PgType::Int2),
    (1007, PgType::Int4),
    (1009, PgType::Text),
    (1014, PgType::Bpchar),
    (1015, PgType::Varchar),
    (1016, PgType::Int8),
    (1021, PgType::Float4),
    (1022, PgType::Float8),
    (1028, PgType::Oid),
    (1115, PgType::Timestamp),
    (1182, PgType::Date),
    (1183, PgType::Time),
    (1185, PgType::Timestamptz),
    (1231, PgType::Numeric),
    (2951, PgType::Uuid),
    (199, PgType::Json),
    (3807, PgType::Jsonb),
];

/// The tag of the last CommandComplete among the backend messages in `out`.
fn last_command_tag(mut out: &[u8]) -> Option<String> {
    let mut tag = None;
    while out.len() >= 5 {
        let kind = out[0];
        let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        let Some(body) = out.get(5..1 + len) else {
            break;
        };
        if kind == b'C' {
            let text = body.strip_suffix(&[0]).unwrap_or(body);
            tag = Some(String::from_utf8_lossy(text).into_owned());
        }
        out = &out[1 + len..];
    }
    tag
}
