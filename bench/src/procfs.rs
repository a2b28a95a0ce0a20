//! CPU time and resident memory of processes, read from `/proc`.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Context;

use crate::parse::{self, ProcStat, SystemCpu};

pub fn stat(pid: u32) -> anyhow::Result<ProcStat> {
    stat_at(&Path::new("/proc").join(pid.to_string()).join("stat"))
}

pub fn self_stat() -> anyhow::Result<ProcStat> {
    stat_at(Path::new("/proc/self/stat"))
}

fn stat_at(path: &Path) -> anyhow::Result<ProcStat> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse::parse_proc_stat(&text).with_context(|| format!("cannot parse {}", path.display()))
}

/// CPU ticks of one process (all its threads).
pub fn process_ticks(pid: u32) -> anyhow::Result<u64> {
    Ok(stat(pid)?.own)
}

/// CPU ticks of a PostgreSQL server: the postmaster, every live child of it (backends,
/// checkpointer, walwriter, autovacuum...), and the children that already ended — the
/// postmaster waits for each, so their time is in its cutime/cstime.
pub fn postgres_ticks(postmaster: u32) -> anyhow::Result<u64> {
    let main = stat(postmaster).context("the PostgreSQL postmaster is gone")?;
    let mut total = main.own + main.children;
    for entry in std::fs::read_dir("/proc").context("cannot list /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may end between the listing and the read: then it is counted by the
        // postmaster's cutime (or, rarely, missed).
        if let Ok(child) = stat(pid)
            && child.ppid == postmaster
            && pid != postmaster
        {
            total += child.own + child.children;
        }
    }
    Ok(total)
}

/// CPU ticks (own + waited-for children) of every user-space process except `ours` and the
/// children of `our_parents`: the load that is not the benchmark's. Kernel threads are left out
/// (they work for everyone: disk flushes, network).
pub fn other_processes_ticks(
    ours: &HashSet<u32>,
    our_parents: &HashSet<u32>,
) -> anyhow::Result<HashMap<u32, u64>> {
    let mut ticks = HashMap::new();
    for entry in std::fs::read_dir("/proc").context("cannot list /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == KTHREADD || ours.contains(&pid) {
            continue;
        }
        if let Ok(process) = stat(pid)
            && process.ppid != KTHREADD
            && !our_parents.contains(&process.ppid)
        {
            ticks.insert(pid, process.own + process.children);
        }
    }
    Ok(ticks)
}

/// The parent of every kernel thread.
const KTHREADD: u32 = 2;

/// Ticks spent between two [`other_processes_ticks`] readings: a process that appeared counts
/// whole; one that ended is in its parent's children time if the parent waited for it.
pub fn ticks_between(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> u64 {
    after
        .iter()
        .map(|(pid, ticks)| ticks.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum()
}

pub fn system_cpu() -> anyhow::Result<SystemCpu> {
    let text = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    parse::parse_system_cpu(&text).context("cannot parse /proc/stat")
}

/// Resident memory of a process, bytes.
pub fn rss(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse::parse_vm_rss(&text).with_context(|| format!("no VmRSS in {path}"))
}

/// Clock ticks per second of the times in `/proc` (USER_HZ; 100 on Linux in practice).
pub fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ticks| *ticks > 0.0)
        .unwrap_or(100.0)
}

/// Makes sure this process (and the servers it starts afterwards) may open `needed` files,
/// raising the soft limit up to the hard one with `prlimit` when it is lower.
pub fn ensure_open_files(needed: u64) -> anyhow::Result<()> {
    let text = std::fs::read_to_string("/proc/self/limits").context("cannot read limits")?;
    let (soft, hard) =
        parse::parse_open_files_limit(&text).context("no open files limit in /proc/self/limits")?;
    if soft >= needed {
        return Ok(());
    }
    anyhow::ensure!(
        hard >= needed,
        "{needed} open files are needed but the hard limit is {hard}: raise it (ulimit -Hn) or \
         pass a smaller --connections"
    );
    let status = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={hard}:{hard}"))
        .status()
        .context("cannot run prlimit to raise the open files limit")?;
    anyhow::ensure!(
        status.success(),
        "prlimit could not raise the open files limit from {soft} to {hard}: {status}"
    );
    Ok(())
}
