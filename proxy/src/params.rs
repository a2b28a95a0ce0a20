//! Session parameters: what SET, SHOW and RESET act on, and the ParameterStatus values drivers
//! read at startup.

use std::collections::BTreeMap;

use mycelium_router::SetValue;

use crate::error::{ProxyError, sql_error};

/// The version string clients see in `server_version` and `version()`.
pub const SERVER_VERSION: &str = concat!("15.0 (Mycelium ", env!("CARGO_PKG_VERSION"), ")");

/// Parameters with their defaults. The ones marked `report` are sent as ParameterStatus at
/// startup and whenever they change, as Postgres does for GUC_REPORT parameters.
const KNOWN: &[(&str, &str, bool)] = &[
    ("application_name", "", true),
    ("bytea_output", "hex", false),
    ("check_function_bodies", "on", false),
    ("client_encoding", "UTF8", true),
    ("client_min_messages", "notice", false),
    ("datestyle", "ISO, MDY", true),
    ("default_table_access_method", "heap", false),
    ("default_tablespace", "", false),
    ("default_transaction_isolation", "read committed", false),
    ("default_transaction_read_only", "off", true),
    ("extra_float_digits", "1", false),
    ("idle_in_transaction_session_timeout", "0", false),
    ("in_hot_standby", "off", true),
    ("integer_datetimes", "on", true),
    ("intervalstyle", "postgres", true),
    ("is_superuser", "on", true),
    ("lock_timeout", "0", false),
    ("maintenance_work_mem", "64MB", false),
    ("max_identifier_length", "63", false),
    ("row_security", "on", false),
    ("search_path", "\"$user\", public", false),
    ("server_encoding", "UTF8", true),
    ("server_version", SERVER_VERSION, true),
    ("server_version_num", "150000", false),
    ("session_authorization", "", true),
    ("standard_conforming_strings", "on", true),
    ("statement_timeout", "0", false),
    ("synchronous_commit", "on", false),
    ("timezone", "UTC", true),
    ("transaction_isolation", "read committed", false),
    ("transaction_read_only", "off", false),
    ("work_mem", "4MB", false),
    ("xmloption", "content", false),
];

/// Parameters a client may not change, because the proxy and nodes depend on them.
const READ_ONLY: &[&str] = &[
    "integer_datetimes",
    "is_superuser",
    "max_identifier_length",
    "server_encoding",
    "server_version",
    "server_version_num",
    "in_hot_standby",
    "session_authorization",
];

/// Postgres spells some names in mixed case in ParameterStatus.
fn display_name(name: &str) -> &str {
    match name {
        "datestyle" => "DateStyle",
        "intervalstyle" => "IntervalStyle",
        "timezone" => "TimeZone",
        other => other,
    }
}

fn canonical(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "time zone" => "timezone".to_owned(),
        _ => lower,
    }
}

#[derive(Clone)]
pub struct SessionParams {
    values: BTreeMap<String, String>,
    /// Values from the startup packet, which RESET returns to.
    startup: BTreeMap<String, String>,
    /// What each parameter set with SET LOCAL held before, put back when the transaction
    /// ends (custom parameters it created stay, empty, as in Postgres).
    local_undo: Vec<(String, Option<String>)>,
    /// A transaction is open: its first change saves the values in `before_transaction`,
    /// which a rollback puts back.
    in_transaction: bool,
    before_transaction: Option<BTreeMap<String, String>>,
}

impl SessionParams {
    /// Defaults plus the parameters the client sent in its startup packet: first the `-c
    /// name=value` switches of its `options` (libpq's `PGOPTIONS`), then the parameters sent
    /// by name, which win, as in Postgres. Values Mycelium cannot honour are left out.
    pub fn new(
        user: &str,
        startup: &BTreeMap<String, String>,
    ) -> Result<SessionParams, ProxyError> {
        let mut params = SessionParams {
            values: KNOWN
                .iter()
                .map(|(n, v, _)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            startup: BTreeMap::new(),
            local_undo: Vec::new(),
            in_transaction: false,
            before_transaction: None,
        };
        params
            .values
            .insert("session_authorization".to_owned(), user.to_owned());
        let switches = startup
            .get("options")
            .map(|options| option_settings(options))
            .unwrap_or_default();
        let named = startup.iter().filter(|(name, _)| {
            !matches!(
                canonical(name).as_str(),
                "user" | "database" | "options" | "replication"
            )
        });
        for (name, value) in switches.iter().map(|(n, v)| (n, v)).chain(named) {
            let name = canonical(name);
            if let Ok(value) = check(&name, value) {
                params.values.insert(name.clone(), value.clone());
                params.startup.insert(name, value);
            }
        }
        Ok(params)
    }

    /// The parameters to announce at startup, with their display names.
    pub fn reported(&self) -> impl Iterator<Item = (&str, &str)> {
        KNOWN
            .iter()
            .filter(|(_, _, report)| *report)
            .filter_map(|(name, _, _)| {
                self.values
                    .get(*name)
                    .map(|v| (display_name(name), v.as_str()))
            })
    }

    /// Sets a parameter; returns the name and value to report when it is a reported one.
    /// A SET LOCAL of it earlier in the transaction no longer ends with the transaction.
    pub fn set(
        &mut self,
        name: &str,
        value: &SetValue,
    ) -> Result<Option<(String, String)>, ProxyError> {
        let report = self.assign(name, value)?;
        let name = canonical(name);
        self.local_undo.retain(|(n, _)| *n != name);
        Ok(report)
    }

    /// SET LOCAL: as [`SessionParams::set`], until [`SessionParams::end_transaction`].
    pub fn set_local(
        &mut self,
        name: &str,
        value: &SetValue,
    ) -> Result<Option<(String, String)>, ProxyError> {
        let canonical = canonical(name);
        let previous = self.values.get(&canonical).cloned();
        let report = self.assign(name, value)?;
        if !self.local_undo.iter().any(|(n, _)| *n == canonical) {
            self.local_undo.push((canonical, previous));
        }
        Ok(report)
    }

    /// A transaction began: changes from now on are undone if it rolls back.
    pub fn begin_transaction(&mut self) {
        self.in_transaction = true;
    }

    /// The transaction ended: SET LOCAL values go, and after a rollback every change it made
    /// (custom parameters it created stay, empty, as in Postgres). Returns the reported
    /// changes.
    pub fn end_transaction(&mut self, committed: bool) -> Vec<(String, String)> {
        self.in_transaction = false;
        let before = self.before_transaction.take();
        let undo = std::mem::take(&mut self.local_undo);
        let restore: Vec<(String, String)> = match before {
            Some(before) if !committed => self
                .values
                .keys()
                .map(|name| (name.clone(), before.get(name).cloned().unwrap_or_default()))
                .collect(),
            _ => undo
                .into_iter()
                .rev()
                .map(|(name, previous)| (name, previous.unwrap_or_default()))
                .collect(),
        };
        let mut reports = Vec::new();
        for (name, value) in restore {
            if self.values.get(&name) != Some(&value) {
                self.values.insert(name.clone(), value);
                reports.extend(self.report(&name));
            }
        }
        reports
    }

    fn save_for_rollback(&mut self) {
        if self.in_transaction && self.before_transaction.is_none() {
            self.before_transaction = Some(self.values.clone());
        }
    }

    fn assign(
        &mut self,
        name: &str,
        value: &SetValue,
    ) -> Result<Option<(String, String)>, ProxyError> {
        self.save_for_rollback();
        let name = canonical(name);
        let value = match value {
            SetValue::Default => self.default_of(&name)?,
            SetValue::Value(v) => check(&name, v)?,
        };
        if READ_ONLY.contains(&name.as_str()) {
            return Err(sql_error(
                "55P02",
                format!("parameter \"{name}\" cannot be changed"),
            ));
        }
        if !name.contains('.') && !KNOWN.iter().any(|(n, _, _)| *n == name) {
            return Err(unrecognized(&name));
        }
        self.values.insert(name.clone(), value.clone());
        Ok(self.report(&name))
    }

    /// RESET one parameter (`Some`) or all (`None`); returns the reported changes.
    pub fn reset(&mut self, name: Option<&str>) -> Result<Vec<(String, String)>, ProxyError> {
        let names: Vec<String> = match name {
            Some(name) => vec![canonical(name)],
            None => self.values.keys().cloned().collect(),
        };
        self.save_for_rollback();
        self.local_undo.retain(|(n, _)| !names.contains(n));
        let mut reports = Vec::new();
        for name in names {
            if READ_ONLY.contains(&name.as_str()) {
                continue;
            }
            let value = self.default_of(&name)?;
            if self.values.get(&name) != Some(&value) {
                self.values.insert(name.clone(), value);
                reports.extend(self.report(&name));
            }
        }
        Ok(reports)
    }

    pub fn get(&self, name: &str) -> Result<&str, ProxyError> {
        let name = canonical(name);
        self.values
            .get(&name)
            .map(String::as_str)
            .ok_or_else(|| unrecognized(&name))
    }

    /// Every parameter with its value, for SHOW ALL.
    pub fn all(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    fn default_of(&self, name: &str) -> Result<String, ProxyError> {
        if let Some(v) = self.startup.get(name) {
            return Ok(v.clone());
        }
        match KNOWN.iter().find(|(n, _, _)| *n == name) {
            Some((_, v, _)) => Ok((*v).to_owned()),
            None if name.contains('.') => Ok(String::new()),
            None => Err(unrecognized(name)),
        }
    }

    fn report(&self, name: &str) -> Option<(String, String)> {
        let reported = KNOWN.iter().any(|(n, _, report)| *n == name && *report);
        reported.then(|| {
            (
                display_name(name).to_owned(),
                self.values.get(name).cloned().unwrap_or_default(),
            )
        })
    }
}

/// The `-c name=value` and `--name=value` switches of a startup packet's `options`, split as
/// Postgres splits them (on spaces; a backslash takes the next character as is). Dashes in a
/// name read as underscores; other switches are ignored.
fn option_settings(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_ascii_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut settings = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let setting = if word == "-c" {
            words.next()
        } else if let Some(rest) = word.strip_prefix("-c") {
            Some(rest.to_owned())
        } else {
            word.strip_prefix("--").map(str::to_owned)
        };
        if let Some((name, value)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            settings.push((name.replace('-', "_"), value.to_owned()));
        }
    }
    settings
}

pub(crate) fn unrecognized(name: &str) -> ProxyError {
    sql_error(
        "42704",
        format!("unrecognized configuration parameter \"{name}\""),
    )
}

/// Refuses values Mycelium cannot honour, rather than accepting them and answering wrongly.
fn check(name: &str, value: &str) -> Result<String, ProxyError> {
    let unsupported = |what: &str| {
        sql_error(
            "0A000",
            format!("{name} = '{value}' is not supported: {what}"),
        )
    };
    match name {
        "client_encoding" => {
            let v = value.to_ascii_uppercase().replace('-', "");
            if v == "UTF8" || v == "UNICODE" {
                Ok("UTF8".to_owned())
            } else {
                Err(unsupported("only UTF8 is supported"))
            }
        }
        "datestyle" => {
            if value.to_ascii_uppercase().contains("ISO")
                || !value.to_ascii_uppercase().contains(',')
            {
                Ok("ISO, MDY".to_owned())
            } else {
                Err(unsupported("only the ISO date style is supported"))
            }
        }
        "standard_conforming_strings" => match value.to_ascii_lowercase().as_str() {
            "on" | "true" | "1" => Ok("on".to_owned()),
            _ => Err(unsupported("standard_conforming_strings is always on")),
        },
        "intervalstyle" => Ok("postgres".to_owned()),
        // Nodes show timestamptz values in it and read input without an offset in it.
        "timezone" => match value.trim().to_ascii_lowercase().as_str() {
            "local" | "default" => Ok("UTC".to_owned()),
            _ => mycelium_protocol::types::TimeZone::parse(value)
                .map(|(_, shown)| shown)
                .map_err(|e| sql_error(&e.code, e.message)),
        },
        "default_transaction_isolation" | "transaction_isolation" => {
            let level = value.trim().to_ascii_lowercase();
            match level.as_str() {
                "serializable" | "repeatable read" | "read committed" | "read uncommitted" => {
                    Ok(level)
                }
                _ => Err(sql_error(
                    "22023",
                    format!("invalid value for parameter \"{name}\": \"{value}\""),
                )),
            }
        }
        // pg_dump's preamble sets these; they change nothing Mycelium does.
        "check_function_bodies" | "row_security" => {
            match value.trim().to_ascii_lowercase().as_str() {
                "on" | "true" | "yes" | "1" => Ok("on".to_owned()),
                "off" | "false" | "no" | "0" => Ok("off".to_owned()),
                _ => Err(sql_error(
                    "22023",
                    format!("parameter \"{name}\" requires a Boolean value"),
                )),
            }
        }
        "xmloption" | "default_table_access_method" | "default_tablespace" => {
            let given = value.trim().to_ascii_lowercase();
            let allowed: &[&str] = match name {
                "xmloption" => &["content", "document"],
                "default_table_access_method" => &["heap"],
                _ => &["", "pg_default"],
            };
            if allowed.contains(&given.as_str()) {
                Ok(given)
            } else {
                Err(sql_error(
                    "22023",
                    format!("invalid value for parameter \"{name}\": \"{value}\""),
                ))
            }
        }
        "statement_timeout" | "idle_in_transaction_session_timeout" | "lock_timeout" => {
            match parse_duration(value) {
                Some(duration) => Ok(show_duration(duration)),
                None => Err(sql_error(
                    "22023",
                    format!("invalid value for parameter \"{name}\": \"{value}\""),
                )),
            }
        }
        _ => Ok(value.to_owned()),
    }
}

/// A time setting as Postgres shows it: whole milliseconds in the largest unit that divides
/// them (`2s`, `1500ms`, `90min`), `0` for none.
fn show_duration(duration: std::time::Duration) -> String {
    let millis = (duration.as_secs_f64() * 1000.0).round();
    if millis < 1.0 {
        return "0".to_owned();
    }
    let millis = millis as u128;
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("min", 60_000),
        ("s", 1000),
    ] {
        if millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

/// A Postgres time setting: a number of milliseconds, or a number with a unit
/// (`us`, `ms`, `s`, `min`, `h`, `d`).
pub(crate) fn parse_duration(value: &str) -> Option<std::time::Duration> {
    let value = value.trim();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let millis = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" => number,
        "us" => number / 1000.0,
        "s" => number * 1000.0,
        "min" => number * 60_000.0,
        "h" => number * 3_600_000.0,
        "d" => number * 86_400_000.0,
        _ => return None,
    };
    (millis.is_finite() && millis >= 0.0)
        .then(|| std::time::Duration::from_secs_f64(millis / 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SessionParams {
        let mut startup = BTreeMap::new();
        startup.insert("application_name".to_owned(), "psql".to_owned());
        SessionParams::new("alice", &startup).expect("params")
    }

    #[test]
    fn startup_values_and_reset() {
        let mut p = params();
        assert_eq!(p.get("application_name").ok(), Some("psql"));
        assert_eq!(p.get("session_authorization").ok(), Some("alice"));
        let report = p
            .set("application_name", &SetValue::Value("x".to_owned()))
            .expect("set");
        assert_eq!(
            report,
            Some(("application_name".to_owned(), "x".to_owned()))
        );
        p.reset(Some("application_name")).expect("reset");
        assert_eq!(p.get("application_name").ok(), Some("psql"));
        assert_eq!(p.get("TimeZone").ok(), Some("UTC"));
    }

    #[test]
    fn pg_dump_preamble_settings_are_checked_and_kept() {
        let mut p = params();
        let set = |p: &mut SessionParams, name: &str, value: &str| {
            p.set(name, &SetValue::Value(value.to_owned()))
                .map_err(|e| e.to_client().code)
        };
        for (name, value, shown) in [
            ("check_function_bodies", "false", "off"),
            ("row_security", "off", "off"),
            ("xmloption", "content", "content"),
            ("default_tablespace", "", ""),
            ("default_table_access_method", "heap", "heap"),
        ] {
            assert_eq!(set(&mut p, name, value), Ok(None), "{name}");
            assert_eq!(p.get(name).ok(), Some(shown), "{name}");
        }
        assert_eq!(p.get("check_function_bodies").ok(), Some("off"));
        p.reset(Some("check_function_bodies")).expect("reset");
        assert_eq!(p.get("check_function_bodies").ok(), Some("on"));
        assert_eq!(
            set(&mut p, "row_security", "maybe"),
            Err("22023".to_owned())
        );
        assert_eq!(
            set(&mut p, "default_table_access_method", "columnar"),
            Err("22023".to_owned())
        );
        assert_eq!(set(&mut p, "xmloption", "tree"), Err("22023".to_owned()));
    }

    #[test]
    fn options_switches_set_parameters() {
        let mut startup = BTreeMap::new();
        startup.insert(
            "options".to_owned(),
            "-c statement_timeout=5s  -capplication_name=my\\ app --search-path=s1 -x \
             -c TimeZone=europe/paris"
                .to_owned(),
        );
        startup.insert("application_name".to_owned(), "named".to_owned());
        let p = SessionParams::new("alice", &startup).expect("params");
        assert_eq!(p.get("statement_timeout").ok(), Some("5s"));
        assert_eq!(p.get("search_path").ok(), Some("s1"));
        assert_eq!(p.get("TimeZone").ok(), Some("Europe/Paris"));
        // A parameter sent by name wins over the same one in options.
        assert_eq!(p.get("application_name").ok(), Some("named"));
        assert_eq!(
            option_settings("-c a=b\\ c -cd=e"),
            [
                ("a".to_owned(), "b c".to_owned()),
                ("d".to_owned(), "e".to_owned())
            ]
        );
    }

    #[test]
    fn durations_parse_like_postgres_settings() {
        let ms = |v: &str| parse_duration(v).map(|d| d.as_millis());
        assert_eq!(ms("0"), Some(0));
        assert_eq!(ms("250"), Some(250));
        assert_eq!(ms("2s"), Some(2000));
        assert_eq!(ms("1min"), Some(60_000));
        assert_eq!(ms("1.5 s"), Some(1500));
        assert_eq!(ms("soon"), None);
        assert_eq!(ms("5 fortnights"), None);
        let shown = |v: &str| parse_duration(v).map(show_duration);
        for (value, expected) in [
            ("2000", "2s"),
            ("1.5s", "1500ms"),
            ("100us", "0"),
            ("0", "0"),
            ("60s", "1min"),
            ("90min", "90min"),
            ("86400000", "1d"),
            ("48h", "2d"),
            ("0.6ms", "1ms"),
        ] {
            assert_eq!(shown(value).as_deref(), Some(expected), "{value}");
        }
    }

    #[test]
    fn refusals_carry_sqlstates() {
        let mut p = params();
        let code = |e: ProxyError| e.to_client().code;
        assert_eq!(code(p.get("nope").expect_err("unknown")), "42704");
        assert_eq!(
            code(
                p.set("server_version", &SetValue::Value("1".into()))
                    .expect_err("ro")
            ),
            "55P02"
        );
        assert_eq!(
            code(
                p.set("client_encoding", &SetValue::Value("LATIN1".into()))
                    .expect_err("enc")
            ),
            "0A000"
        );
        assert_eq!(
            code(
                p.set("no_such_thing", &SetValue::Value("1".into()))
                    .expect_err("unknown")
            ),
            "42704"
        );
        assert!(p.set("myapp.tenant", &SetValue::Value("7".into())).is_ok());
    }

    #[test]
    fn local_values_end_with_the_transaction() {
        let mut p = params();
        let value = |v: &str| SetValue::Value(v.to_owned());
        let report = p
            .set_local("application_name", &value("tx"))
            .expect("local");
        assert_eq!(
            report,
            Some(("application_name".to_owned(), "tx".to_owned()))
        );
        p.set_local("app.user", &value("7")).expect("local custom");
        p.set_local("application_name", &value("tx2"))
            .expect("local again");
        assert_eq!(p.get("app.user").ok(), Some("7"));
        assert_eq!(
            p.end_transaction(true),
            vec![("application_name".to_owned(), "psql".to_owned())]
        );
        assert_eq!(p.get("application_name").ok(), Some("psql"));
        // A custom parameter first set by SET LOCAL stays defined, empty.
        assert_eq!(p.get("app.user").ok(), Some(""));
        // SET after SET LOCAL in the transaction outlives it; SET LOCAL after SET does not.
        p.set_local("work_mem", &value("8MB")).expect("local");
        p.set("work_mem", &value("16MB")).expect("set");
        p.set("lock_timeout", &value("5s")).expect("set");
        p.set_local("lock_timeout", &value("1s")).expect("local");
        assert!(p.end_transaction(true).is_empty());
        assert_eq!(p.get("work_mem").ok(), Some("16MB"));
        assert_eq!(p.get("lock_timeout").ok(), Some("5s"));
    }

    #[test]
    fn a_rollback_undoes_the_transaction_s_changes() {
        let mut p = params();
        let value = |v: &str| SetValue::Value(v.to_owned());
        p.set("work_mem", &value("8MB")).expect("before");
        p.begin_transaction();
        p.set("application_name", &value("tx")).expect("set");
        p.set("app.created", &value("1")).expect("custom");
        p.reset(Some("work_mem")).expect("reset");
        p.set_local("lock_timeout", &value("1s")).expect("local");
        assert_eq!(
            p.end_transaction(false),
            vec![("application_name".to_owned(), "psql".to_owned())]
        );
        assert_eq!(p.get("application_name").ok(), Some("psql"));
        assert_eq!(p.get("work_mem").ok(), Some("8MB"));
        assert_eq!(p.get("lock_timeout").ok(), Some("0"));
        assert_eq!(p.get("app.created").ok(), Some(""));
        // A committed transaction keeps them; the next one saves afresh.
        p.begin_transaction();
        p.set("application_name", &value("kept")).expect("set");
        assert!(p.end_transaction(true).is_empty());
        p.begin_transaction();
        assert!(p.end_transaction(false).is_empty());
        assert_eq!(p.get("application_name").ok(), Some("kept"));
    }
}
