//! `current_setting()` and `set_config()` answered from the session's parameters, which live
//! here and not on the nodes (the router's `settings.rs` says which statements call them and
//! how each is run).

use mycelium_protocol::types::oid;
use mycelium_protocol::{Column, Execute, Format};
use mycelium_router::{SetValue, SettingArg, SettingsCall, SettingsColumn, Substitution};

use crate::backend::{self, TxnStatus};
use crate::error::{ProxyError, sql_error};
use crate::execute::Output;
use crate::params::unrecognized;
use crate::session::Session;

impl Session {
    /// SET, or SET LOCAL (`local`), of one parameter, reporting a reported one's new value.
    /// Outside a transaction a local value lasts until the statement ends
    /// ([`Session::end_statement_parameters`]), so it is not reported.
    pub(crate) fn set_parameter(
        &mut self,
        name: &str,
        value: &SetValue,
        local: bool,
    ) -> Result<(), ProxyError> {
        let reported = if local {
            self.params.set_local(name, value)?
        } else {
            self.params.set(name, value)?
        };
        self.refresh_timeouts();
        if let Some((name, value)) = reported
            && !(local && self.status == TxnStatus::Idle)
        {
            backend::parameter_status(&mut self.conn.out, &name, &value);
        }
        Ok(())
    }

    /// The transaction ended: SET LOCAL values go, and a rollback undoes its changes.
    pub(crate) fn end_transaction_parameters(&mut self, committed: bool) {
        let reported = self.params.end_transaction(committed);
        if reported.is_empty() {
            return;
        }
        self.refresh_timeouts();
        for (name, value) in reported {
            backend::parameter_status(&mut self.conn.out, &name, &value);
        }
    }

    /// A statement outside a transaction is its own: its SET LOCAL values go when it ends.
    pub(crate) fn end_statement_parameters(&mut self) {
        if self.status == TxnStatus::Idle {
            self.params.end_transaction(true);
            self.refresh_timeouts();
        }
    }

    /// `current_setting(name, missing_ok)`: `None` for an unknown parameter when missing_ok.
    fn current_setting(&self, name: &str, missing_ok: bool) -> Result<Option<String>, ProxyError> {
        match self.show_value(name) {
            Ok(value) => Ok(Some(value)),
            Err(_) if missing_ok => Ok(None),
            // Postgres names the parameter as the caller spelled it.
            Err(_) => Err(unrecognized(name)),
        }
    }

    /// The statement with the session's values in place of its `current_setting` calls.
    pub(crate) fn substitute_settings(
        &self,
        substitution: &Substitution,
        sql: &str,
    ) -> Result<String, ProxyError> {
        substitution.render(sql, |name, missing_ok| {
            self.current_setting(name, missing_ok)
        })
    }

    /// A SELECT of `set_config` and `current_setting` calls alone: evaluated here, in order,
    /// answering one row.
    pub(crate) fn answer_settings(
        &mut self,
        columns: &[SettingsColumn],
        request: &Execute,
        output: Output,
    ) -> Result<(), ProxyError> {
        // A statement that fails changes nothing, as Postgres's rollback of its transaction
        // undoes its settings; nothing was flushed to the client meanwhile.
        let before = self.params.clone();
        let mark = self.conn.out.len();
        let mut values = Vec::with_capacity(columns.len());
        let result = columns.iter().try_for_each(|column| {
            values.push(self.evaluate(&column.call, request)?);
            Ok::<_, ProxyError>(())
        });
        if let Err(e) = result {
            self.params = before;
            self.refresh_timeouts();
            self.conn.out.truncate(mark);
            return Err(e);
        }
        self.end_statement_parameters();
        if matches!(output, Output::Simple) {
            backend::row_description(&mut self.conn.out, &answer_columns(columns), |_| {
                Format::Text
            });
        }
        let row: Vec<Option<&str>> = values.iter().map(Option::as_deref).collect();
        backend::text_data_row(&mut self.conn.out, &row);
        backend::command_complete(&mut self.conn.out, "SELECT 1");
        Ok(())
    }

    fn evaluate(
        &mut self,
        call: &SettingsCall,
        request: &Execute,
    ) -> Result<Option<String>, ProxyError> {
        match call {
            SettingsCall::Get { name, missing_ok } => {
                // Strict, as in Postgres: a NULL argument answers NULL.
                let (Some(name), Some(missing_ok)) =
                    (text_arg(name, request)?, bool_arg(missing_ok, request)?)
                else {
                    return Ok(None);
                };
                self.current_setting(&name, missing_ok)
            }
            SettingsCall::Set { name, value, local } => {
                let name = text_arg(name, request)?
                    .ok_or_else(|| sql_error("22004", "SET requires parameter name"))?;
                let value = match text_arg(value, request)? {
                    Some(value) => SetValue::Value(value),
                    None => SetValue::Default,
                };
                let local = bool_arg(local, request)?.unwrap_or(false);
                self.set_parameter(&name, &value, local).map_err(|e| {
                    match e.to_client().code.as_str() {
                        "42704" => unrecognized(&name),
                        _ => e,
                    }
                })?;
                self.current_setting(&name, false)
            }
        }
    }
}

/// The columns of an answered SELECT: all text, as both functions return.
pub(crate) fn answer_columns(columns: &[SettingsColumn]) -> Vec<Column> {
    columns
        .iter()
        .map(|column| crate::admin::text_column(&column.name))
        .collect()
}

/// The parameter types of an answered SELECT: the client's, and for those it left to the
/// server, text for names and values and boolean for `missing_ok` and `is_local`.
pub(crate) fn answer_param_types(columns: &[SettingsColumn], given: &[u32]) -> Vec<u32> {
    let mut types = given.to_vec();
    for column in columns {
        let args: [(&SettingArg, bool); 3] = match &column.call {
            SettingsCall::Get { name, missing_ok } => [
                (name, false),
                (missing_ok, true),
                (&SettingArg::Null, false),
            ],
            SettingsCall::Set { name, value, local } => {
                [(name, false), (value, false), (local, true)]
            }
        };
        for (arg, boolean) in args {
            if let SettingArg::Param(n) = *arg {
                default_param_type(&mut types, n, if boolean { oid::BOOL } else { oid::TEXT });
            }
        }
    }
    types
}

/// Gives parameter `$n` the type `ty` when the client left it to the server (0).
pub(crate) fn default_param_type(types: &mut Vec<u32>, n: usize, ty: u32) {
    if types.len() < n {
        types.resize(n, 0);
    }
    if types[n - 1] == 0 {
        types[n - 1] = ty;
    }
}

/// Parameter `$n` as an integer, from text or from a binary int2, int4 or int8; `None` when
/// NULL.
pub(crate) fn int_param(request: &Execute, n: usize) -> Result<Option<i64>, ProxyError> {
    let (bytes, format, _) = param(request, n)?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let parsed = match format {
        Format::Binary => match bytes.len() {
            8 => <[u8; 8]>::try_from(bytes).ok().map(i64::from_be_bytes),
            4 => <[u8; 4]>::try_from(bytes)
                .ok()
                .map(|b| i64::from(i32::from_be_bytes(b))),
            2 => <[u8; 2]>::try_from(bytes)
                .ok()
                .map(|b| i64::from(i16::from_be_bytes(b))),
            _ => None,
        },
        Format::Text => std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.trim().parse().ok()),
    };
    parsed.map(Some).ok_or_else(|| {
        sql_error(
            "22P02",
            format!(
                "invalid input syntax for type bigint: \"{}\"",
                String::from_utf8_lossy(bytes)
            ),
        )
    })
}

/// A bound parameter's bytes, or an error naming it when there is no such parameter.
pub(crate) fn param(
    request: &Execute,
    n: usize,
) -> Result<(Option<&[u8]>, Format, u32), ProxyError> {
    let index = n - 1;
    let value = request
        .params
        .get(index)
        .ok_or_else(|| sql_error("42P02", format!("there is no parameter ${n}")))?;
    Ok((
        value.as_deref(),
        request
            .param_formats
            .get(index)
            .copied()
            .unwrap_or_default(),
        request.param_types.get(index).copied().unwrap_or(0),
    ))
}

fn text_arg(arg: &SettingArg, request: &Execute) -> Result<Option<String>, ProxyError> {
    match arg {
        SettingArg::Null => Ok(None),
        SettingArg::Text(text) => Ok(Some(text.clone())),
        SettingArg::Bool(b) => Ok(Some(if *b { "true" } else { "false" }.to_owned())),
        SettingArg::Param(n) => match param(request, *n)? {
            (None, _, _) => Ok(None),
            (Some(bytes), _, _) => std::str::from_utf8(bytes)
                .map(|s| Some(s.to_owned()))
                .map_err(|_| sql_error("22021", "invalid byte sequence for encoding \"UTF8\"")),
        },
    }
}

fn bool_arg(arg: &SettingArg, request: &Execute) -> Result<Option<bool>, ProxyError> {
    let text = match arg {
        SettingArg::Null => return Ok(None),
        SettingArg::Bool(b) => return Ok(Some(*b)),
        SettingArg::Text(text) => text.clone(),
        SettingArg::Param(n) => match param(request, *n)? {
            (None, _, _) => return Ok(None),
            (Some(bytes), Format::Binary, oid::BOOL) => {
                return Ok(bytes.first().map(|b| *b != 0));
            }
            (Some(bytes), _, _) => String::from_utf8_lossy(bytes).into_owned(),
        },
    };
    mycelium_router::parse_bool(&text).map(Some).ok_or_else(|| {
        sql_error(
            "22P02",
            format!("invalid input syntax for type boolean: \"{text}\""),
        )
    })
}
