use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "mycelium",
    version,
    about = "A distributed SQL store that speaks the PostgreSQL wire protocol"
)]
pub struct Cli {
    /// Log format on stderr; levels come from RUST_LOG (default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Threads of the async runtime (default: one per CPU). On a machine whose cores the
    /// process shares with PostgreSQL and the clients, 1 costs less CPU per statement: no
    /// wake-ups of a second thread (bench/README.md).
    #[arg(long, global = true, env = "MYCELIUM_WORKER_THREADS")]
    worker_threads: Option<std::num::NonZeroUsize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a local cluster in one process: the proxy and its SQLite nodes.
    Up(UpArgs),
    /// Print the SCRAM-SHA-256 verifier of a password (read from stdin) for the config file.
    Passwd,
    /// Create a cluster CA and certificates for the proxy and each node.
    Certs(CertsArgs),
    /// Run one node (see `node.toml` in the README).
    Node(MemberArgs),
    /// Run a proxy in front of nodes running elsewhere (see `proxy.toml` in the README).
    Proxy(MemberArgs),
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file (of `up`, `node` or `proxy`, as `--kind` says) with the
    /// environment's MYCELIUM_* overrides; prints what is wrong, naming the key.
    Check {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = ConfigKind::Up)]
        kind: ConfigKind,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ConfigKind {
    Up,
    Node,
    Proxy,
}

#[derive(clap::Args)]
pub struct MemberArgs {
    /// Configuration file (TOML); MYCELIUM_* environment variables override it.
    #[arg(long)]
    config: PathBuf,
    /// Address of the Prometheus `/metrics` endpoint.
    #[arg(long, default_value = "127.0.0.1:9187")]
    metrics_listen: SocketAddr,
}

#[derive(clap::Args)]
pub struct CertsArgs {
    /// Directory to write `ca.pem`, `ca-key.pem` and `NAME.pem`/`NAME-key.pem` into.
    #[arg(long)]
    out: PathBuf,
    /// Node names, comma-separated; a certificate for `proxy` is always made too.
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<String>,
}

#[derive(clap::Args)]
pub struct UpArgs {
    /// Configuration file (TOML); MYCELIUM_* environment variables override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where node data, certificates and generated files live.
    #[arg(long, default_value = "mycelium-data")]
    pub data_dir: PathBuf,
    /// Client address; overrides proxy.listen.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Nodes to run (a third of them miners); overrides cluster.nodes (default 3).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Address of the Prometheus `/metrics` endpoint.
    #[arg(long, default_value = "127.0.0.1:9187")]
    pub metrics_listen: SocketAddr,
    /// Where the nodes keep their data: SQLite files in the data directory, or one PostgreSQL
    /// database per node (`<db>_n1`, `<db>_n2`, ... on the server of `--pg-url`, created if
    /// missing); overrides storage.backend.
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// The PostgreSQL server for `--backend postgres`: postgres://user:password@host:port/db.
    #[arg(long)]
    pub pg_url: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => {
            init_logging(cli.log_format);
            runtime(cli.worker_threads)?.block_on(crate::up::up(args))
        }
        Command::Node(args) => {
            init_logging(cli.log_format);
            runtime(cli.worker_threads)?
                .block_on(crate::serve::node(&args.config, args.metrics_listen))
        }
        Command::Proxy(args) => {
            init_logging(cli.log_format);
            runtime(cli.worker_threads)?
                .block_on(crate::serve::proxy(&args.config, args.metrics_listen))
        }
        Command::Passwd => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from stdin")?;
            let password = line.trim_end_matches(['\n', '\r']);
            anyhow::ensure!(!password.is_empty(), "empty password");
            let verifier = mycelium_proxy::Verifier::from_password(password);
            writeln!(std::io::stdout().lock(), "{}", verifier.to_text())?;
            Ok(())
        }
        Command::Config(ConfigCommand::Check { file, kind }) => {
            match kind {
                ConfigKind::Up => {
                    mycelium_config::UpConfig::load(Some(&file))?;
                }
                ConfigKind::Node => {
                    mycelium_config::NodeFileConfig::load(&file)?;
                }
                ConfigKind::Proxy => {
                    mycelium_config::ProxyFileConfig::load(&file)?;
                }
            }
            writeln!(std::io::stdout().lock(), "{}: ok", file.display())?;
            Ok(())
        }
        Command::Certs(args) => {
            let mut members: Vec<&str> = vec!["proxy"];
            members.extend(
                args.nodes
                    .iter()
                    .map(String::as_str)
                    .filter(|n| *n != "proxy"),
            );
            mycelium_network::certs::generate_cluster(&args.out, &members)?;
            writeln!(
                std::io::stdout().lock(),
                "wrote a cluster CA and certificates for {} into {}",
                members.join(", "),
                args.out.display()
            )?;
            Ok(())
        }
    }
}

fn runtime(
    worker_threads: Option<std::num::NonZeroUsize>,
) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = worker_threads {
        builder.worker_threads(threads.get());
    }
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
