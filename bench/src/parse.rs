//! Pure helpers: pgbench's summary, `/proc` files, medians. No I/O here.

#[cfg(test)]
mod tests;

/// What one pgbench run reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PgbenchSummary {
    /// "number of transactions actually processed".
    pub transactions: u64,
    /// "number of failed transactions" (0 when pgbench predates the line, before 15).
    pub failed: u64,
    /// "latency average", milliseconds.
    pub latency_ms: f64,
    /// "tps", without the initial connection time.
    pub tps: f64,
}

/// Reads the summary pgbench prints at the end of a run.
pub fn parse_pgbench(stdout: &str) -> Result<PgbenchSummary, String> {
    let field = |prefix: &str| {
        stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .map(str::trim)
    };
    let first_number = |text: &str| -> Option<f64> {
        let token = text.split(|c: char| c.is_whitespace() || c == '/').next()?;
        token.parse().ok()
    };
    let transactions = field("number of transactions actually processed:")
        .ok_or("no \"number of transactions actually processed\" line")?;
    let transactions = first_number(transactions)
        .ok_or_else(|| format!("cannot read the transaction count in {transactions:?}"))?;
    let failed = match field("number of failed transactions:") {
        Some(text) => {
            first_number(text).ok_or_else(|| format!("cannot read the failures in {text:?}"))?
        }
        None => 0.0,
    };
    let latency = field("latency average =").ok_or("no \"latency average\" line")?;
    let latency_ms =
        first_number(latency).ok_or_else(|| format!("cannot read the latency in {latency:?}"))?;
    // pgbench 14+ prints one tps line; older ones print one with and one without the time spent
    // connecting. Take the one without.
    let tps_lines: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.trim().strip_prefix("tps ="))
        .collect();
    let tps = tps_lines
        .iter()
        .find(|line| line.contains("without") || line.contains("excluding"))
        .or(tps_lines.first())
        .ok_or("no \"tps\" line")?;
    let tps = first_number(tps.trim()).ok_or_else(|| format!("cannot read tps in {tps:?}"))?;
    Ok(PgbenchSummary {
        transactions: transactions as u64,
        failed: failed as u64,
        latency_ms,
        tps,
    })
}

/// The fields of `/proc/PID/stat` that matter here; times in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub ppid: u32,
    /// utime + stime: the process and all its threads, live or ended.
    pub own: u64,
    /// cutime + cstime: children that ended and were waited for.
    pub children: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses and may hold spaces
/// or parentheses itself, so the fields are counted from the last `)`.
pub fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state): field N is fields[N - 3].
    let number = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(ProcStat {
        ppid: u32::try_from(number(4)?).ok()?,
        own: number(14)? + number(15)?,
        children: number(16)? + number(17)?,
    })
}

/// The machine's CPU time from the first line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SystemCpu {
    /// irq + softirq: interrupt work (loopback networking shows up here).
    pub interrupts: u64,
    /// Time the hypervisor gave to someone else.
    pub steal: u64,
}

pub fn parse_system_cpu(text: &str) -> Option<SystemCpu> {
    let line = text.lines().find(|line| line.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let value = |i: usize| values.get(i).copied().unwrap_or(0);
    Some(SystemCpu {
        interrupts: value(5) + value(6),
        steal: value(7),
    })
}

/// `VmRSS` of `/proc/PID/status`, in bytes.
pub fn parse_vm_rss(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    let mut parts = line.split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
    }
}

/// The soft and hard limits of open files from `/proc/PID/limits`.
pub fn parse_open_files_limit(text: &str) -> Option<(u64, u64)> {
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    let mut parts = line.split_whitespace();
    let soft = parts.next()?.parse().ok()?;
    let hard = parts.next()?.parse().ok()?;
    Some((soft, hard))
}

/// The median; the mean of the middle two for an even count; `None` for no values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        f64::midpoint(sorted[middle - 1], sorted[middle])
    } else {
        sorted[middle]
    })
}

/// The latencies (µs) of pgbench's per-transaction log (`-l`): each line is
/// `client_id transaction_no time script_no time_epoch time_us`, `time` being the latency in
/// µs, or `failed`/`skipped` for transactions that did not complete (left out).
pub fn parse_pgbench_log(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|line| line.split_whitespace().nth(2)?.parse().ok())
        .collect()
}

/// The `p`-th percentile (0 < p ≤ 100) of sorted values by nearest rank; `None` when empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The policy column of `SHOW MYCELIUM SHARDS` (`n1 (primary), n2 (secondary)`): the primary.
pub fn primary_node(nodes: &str) -> Option<&str> {
    nodes
        .split(',')
        .map(str::trim)
        .find_map(|replica| replica.strip_suffix(" (primary)"))
}
