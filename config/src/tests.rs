use super::*;

fn load(text: &str, vars: &[(&str, &str)]) -> Result<UpConfig, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mycelium.toml");
    std::fs::write(&path, text).expect("write config");
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    UpConfig::load_with_env(Some(&path), &vars)
}

#[test]
fn defaults_give_the_default_user_and_port() {
    let config = load("", &[]).expect("defaults load");
    assert_eq!(config.proxy.listen.port(), 6432);
    assert_eq!(config.proxy.max_connections, 1000);
    assert_eq!(config.users.len(), 1);
    assert_eq!(config.users[0].name, "mycelium");
    assert_eq!(config.users[0].password.as_deref(), Some("mycelium"));
}

#[test]
fn env_overrides_keys_and_password() {
    let config = load(
        "[proxy]\nmax_connections = 5\n",
        &[
            ("MYCELIUM_PROXY__MAX_CONNECTIONS", "7"),
            ("MYCELIUM_PROXY__LISTEN", "127.0.0.1:7000"),
            ("MYCELIUM_PASSWORD", "s3cret"),
        ],
    )
    .expect("load");
    assert_eq!(config.proxy.max_connections, 7);
    assert_eq!(config.proxy.listen.port(), 7000);
    assert_eq!(config.users[0].password.as_deref(), Some("s3cret"));
}

#[test]
fn unknown_key_names_file_and_key() {
    let err = load("[proxy]\nlisten_port = 1\n", &[]).expect_err("unknown key");
    let text = err.to_string();
    assert!(text.contains("mycelium.toml"), "{text}");
    assert!(text.contains("listen_port"), "{text}");
}

#[test]
fn bad_value_names_the_key() {
    let err = load("[proxy]\nmax_connections = 0\n", &[]).expect_err("zero");
    assert!(err.to_string().contains("proxy.max_connections"), "{err}");
    let err = load("[proxy]\nlisten = \"nowhere\"\n", &[]).expect_err("bad addr");
    assert!(err.to_string().contains("listen"), "{err}");
    let err = load("[storage]\nworkers = 8\nmax_workers = 4\n", &[]).expect_err("cap");
    assert!(err.to_string().contains("storage.max_workers"), "{err}");
}

#[test]
fn users_need_a_secret() {
    let err = load("[[users]]\nname = \"bob\"\n", &[]).expect_err("no secret");
    assert!(err.to_string().contains("users[0]"), "{err}");
}

#[test]
fn missing_file_is_named() {
    let err =
        UpConfig::load_with_env(Some(Path::new("/nonexistent/m.toml")), &[]).expect_err("missing");
    assert!(err.to_string().contains("/nonexistent/m.toml"), "{err}");
}

#[test]
fn storage_backend_is_sqlite_or_a_postgres_url() {
    let config = load("", &[]).expect("defaults");
    assert_eq!(config.storage.backend(), StorageBackend::Sqlite);
    assert_eq!(config.storage.postgres.pool_size, 20);
    assert_eq!(config.storage.postgres.statement_cache_size, 1000);

    let config = load(
        "[storage]\nbackend = \"postgres://app@db:5432/data\"\n[storage.postgres]\npool_size = 5\n",
        &[("MYCELIUM_STORAGE__POSTGRES__RETRY_INTERVAL_MS", "250")],
    )
    .expect("postgres backend");
    assert_eq!(
        config.storage.backend(),
        StorageBackend::Postgres("postgres://app@db:5432/data")
    );
    assert_eq!(config.storage.postgres.pool_size, 5);
    assert_eq!(config.storage.postgres.retry_interval_ms, 250);

    let config = load(
        "",
        &[(
            "MYCELIUM_STORAGE__BACKEND",
            "postgresql://u:p@h/db?sslmode=disable",
        )],
    )
    .expect("env override");
    assert_eq!(
        config.storage.backend(),
        StorageBackend::Postgres("postgresql://u:p@h/db?sslmode=disable")
    );

    // Through a Unix-domain socket: the host is the socket's directory, percent-encoded, or
    // a host= parameter; a directory that does not exist is named.
    let socket = std::env::temp_dir().display().to_string();
    let url = format!("postgres://app@{}:5432/data", socket.replace('/', "%2F"));
    let config = load(&format!("[storage]\nbackend = \"{url}\"\n"), &[]).expect("socket URL");
    assert_eq!(config.storage.backend(), StorageBackend::Postgres(&url));
    assert_eq!(postgres::socket_dir(&url), Some(socket.clone()));
    assert_eq!(
        postgres::socket_dir(&format!("postgres:///data?user=app&host={socket}")),
        Some(socket)
    );
    assert_eq!(
        postgres::socket_dir("postgres://app:p%2F@db:5432/data"),
        None
    );
    let err = load(
        "[storage]\nbackend = \"postgres://app@%2Fno%2Fsuch%2Fdir/data\"\n",
        &[],
    )
    .expect_err("missing socket directory");
    assert!(
        err.to_string().contains("storage.backend") && err.to_string().contains("/no/such/dir"),
        "{err}"
    );

    let err = load("[storage]\nbackend = \"mysql://x\"\n", &[]).expect_err("bad backend");
    let text = err.to_string();
    assert!(
        text.contains("mycelium.toml") && text.contains("storage.backend"),
        "{text}"
    );
    let err = load("[storage.postgres]\npool_size = 0\n", &[]).expect_err("zero pool");
    assert!(
        err.to_string().contains("storage.postgres.pool_size"),
        "{err}"
    );
    let err = load("[storage.postgres]\npoolsize = 3\n", &[]).expect_err("unknown key");
    assert!(err.to_string().contains("poolsize"), "{err}");
}

#[test]
fn a_postgres_node_needs_no_data_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.toml");
    let node = "[node]\nid = \"n1\"\nlisten = \"127.0.0.1:7001\"\ncerts = \"certs\"\n";
    std::fs::write(
        &path,
        format!("{node}[storage]\nbackend = \"postgres://u@h/n1\"\n"),
    )
    .expect("write");
    let config = NodeFileConfig::load(&path).expect("postgres node");
    assert_eq!(
        config.storage.backend(),
        StorageBackend::Postgres("postgres://u@h/n1")
    );
    std::fs::write(&path, node).expect("write");
    let err = NodeFileConfig::load(&path).expect_err("sqlite node without data");
    assert!(err.to_string().contains("node.data"), "{err}");
}

#[test]
fn a_node_socket_path_is_checked_and_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.toml");
    let node = |socket: &str| {
        format!(
            "[node]\nid = \"n1\"\nlisten = \"127.0.0.1:7001\"\ncerts = \"c\"\ndata = \"n1.db\"\n\
             socket = \"{socket}\"\n"
        )
    };
    std::fs::write(&path, node("/run/mycelium/n1.sock")).expect("write");
    let config = NodeFileConfig::load(&path).expect("node with a socket");
    assert_eq!(
        config.node.socket.as_deref(),
        Some(Path::new("/run/mycelium/n1.sock"))
    );
    std::fs::write(&path, node(&format!("/{}", "s".repeat(110)))).expect("write");
    let text = NodeFileConfig::load(&path)
        .expect_err("socket path too long")
        .to_string();
    assert!(
        text.contains("node.socket") && text.contains("node.toml") && text.contains("at most"),
        "{text}"
    );
}

fn load_proxy(text: &str) -> Result<ProxyFileConfig, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, text).expect("write config");
    ProxyFileConfig::load(&path)
}

#[test]
fn node_addresses_are_checked_and_named() {
    let nodes = |first: &str, second: &str| {
        format!(
            "certs = \"certs\"\n[[nodes]]\nid = \"n1\"\n{first}\n[[nodes]]\nid = \"n2\"\n{second}\n"
        )
    };
    let config = load_proxy(&nodes(
        "addr = \"10.0.0.5:7001\"",
        "addr = \"node-2.internal:7001\"\npeer_addr = \"[::1]:7002\"",
    ))
    .expect("valid addresses");
    assert_eq!(config.nodes[1].peer_addr(), "[::1]:7002");
    assert_eq!(config.nodes[0].peer_addr(), "10.0.0.5:7001");
    let config = load_proxy(&nodes(
        "addr = \"unix:/run/mycelium/n1.sock\"",
        "addr = \"unix:n2.sock\"\npeer_addr = \"h:2\"",
    ))
    .expect("Unix socket addresses");
    assert_eq!(config.nodes[0].addr, "unix:/run/mycelium/n1.sock");

    for (first, second, key, words) in [
        (
            "addr = \"10.0.0.5\"",
            "addr = \"h:1\"",
            "nodes[0].addr",
            "not host:port",
        ),
        (
            "addr = \"h:1\"",
            "addr = \"h:70000\"",
            "nodes[1].addr",
            "port",
        ),
        ("addr = \"h:1\"", "addr = \"h:0\"", "nodes[1].addr", "port"),
        (
            "addr = \"h:1\"",
            "addr = \"h:2\"\npeer_addr = \"h 2:3\"",
            "nodes[1].peer_addr",
            "not host:port",
        ),
        (
            "addr = \"h:1\"",
            "addr = \"[::1:2\"",
            "nodes[1].addr",
            "not host:port",
        ),
        (
            "addr = \"unix:\"",
            "addr = \"h:1\"",
            "nodes[0].addr",
            "empty",
        ),
        (
            "addr = \"h:1\"",
            &format!("addr = \"unix:/{}\"", "s".repeat(120)),
            "nodes[1].addr",
            "at most 107",
        ),
    ] {
        let err = load_proxy(&nodes(first, second)).expect_err(second);
        let text = err.to_string();
        assert!(
            text.contains(key) && text.contains(words) && text.contains("proxy.toml"),
            "{text}"
        );
    }
    let twice = "certs = \"c\"\n[[nodes]]\nid = \"n1\"\naddr = \"h:1\"\n[[nodes]]\nid = \"n1\"\naddr = \"h:2\"\n";
    let text = load_proxy(twice).expect_err("twice").to_string();
    assert!(
        text.contains("nodes[1].id") && text.contains("listed twice"),
        "{text}"
    );
}
