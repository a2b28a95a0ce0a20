/// Applies `MYCELIUM_SECTION__KEY=value` variables to a parsed TOML table.
///
/// A variable without `__` (such as `MYCELIUM_PASSWORD`) is not a key path and is left to the
/// caller. Keys are lower-cased; the value becomes an integer, float or boolean when it parses as
/// one, and a string otherwise.
pub fn apply_env_overrides(table: &mut toml::Table, vars: &[(String, String)]) {
    for (name, raw) in vars {
        let Some(path) = name.strip_prefix("MYCELIUM_") else {
            continue;
        };
        if !path.contains("__") {
            continue;
        }
        let keys: Vec<String> = path.split("__").map(str::to_lowercase).collect();
        set_path(table, &keys, parse_value(raw));
    }
}

fn parse_value(raw: &str) -> toml::Value {
    let literal = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&literal) {
        Ok(mut parsed) => parsed
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) {
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        current = next;
    }
    current.insert(last.clone(), value);
}
