use super::*;

const PGBENCH_15: &str = "\
pgbench (15.20 (Debian 15.20-0+deb12u1))
starting vacuum...end.
transaction type: <builtin: select only>
scaling factor: 10
query mode: prepared
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 10 s
number of transactions actually processed: 171234
number of failed transactions: 0 (0.000%)
latency average = 0.467 ms
initial connection time = 12.345 ms
tps = 17123.456789 (without initial connection time)
";

const PGBENCH_13: &str = "\
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 1
query mode: simple
number of clients: 4
number of threads: 2
duration: 5 s
number of transactions actually processed: 4321
latency average = 4.629 ms
tps = 864.100000 (including connections establishing)
tps = 866.200000 (excluding connections establishing)
";

const PGBENCH_FAILURES: &str = "\
number of transactions actually processed: 900/1000
number of failed transactions: 100 (10.000%)
latency average = 1.000 ms
tps = 99.5 (without initial connection time)
";

fn check(stdout: &str, expected: Result<PgbenchSummary, &str>) {
    let got = parse_pgbench(stdout);
    match expected {
        Ok(summary) => assert_eq!(got, Ok(summary)),
        Err(part) => {
            let err = got.expect_err("parse should fail");
            assert!(err.contains(part), "{err:?} does not mention {part:?}");
        }
    }
}

#[test]
fn pgbench_summaries() {
    check(
        PGBENCH_15,
        Ok(PgbenchSummary {
            transactions: 171_234,
            failed: 0,
            latency_ms: 0.467,
            tps: 17_123.456_789,
        }),
    );
    check(
        PGBENCH_13,
        Ok(PgbenchSummary {
            transactions: 4321,
            failed: 0,
            latency_ms: 4.629,
            tps: 866.2,
        }),
    );
    check(
        PGBENCH_FAILURES,
        Ok(PgbenchSummary {
            transactions: 900,
            failed: 100,
            latency_ms: 1.0,
            tps: 99.5,
        }),
    );
    check("", Err("transactions actually processed"));
    check(
        "number of transactions actually processed: 5\nlatency average = 1 ms\n",
        Err("tps"),
    );
    check(
        "number of transactions actually processed: many\n",
        Err("transaction count"),
    );
}

#[test]
fn proc_stat_counts_fields_after_the_last_parenthesis() {
    let line = "1234 (odd) name)) S 77 1234 1234 0 -1 4194560 500 0 0 0 150 25 7 3 20 0 9 0 \
                100 1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
    assert_eq!(
        parse_proc_stat(line),
        Some(ProcStat {
            ppid: 77,
            own: 175,
            children: 10
        })
    );
    assert_eq!(parse_proc_stat("1234 (short) S 1"), None);
    assert_eq!(parse_proc_stat("garbage"), None);
}

#[test]
fn system_cpu_from_proc_stat() {
    let text = "cpu  100 5 50 1000 20 3 4 6 0 0\ncpu0 50 2 25 500 10 1 2 3 0 0\nintr 1\n";
    assert_eq!(
        parse_system_cpu(text),
        Some(SystemCpu {
            interrupts: 7,
            steal: 6
        })
    );
    assert_eq!(parse_system_cpu("intr 1\n"), None);
}

#[test]
fn vm_rss_and_limits() {
    let status = "Name:\tmycelium\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n";
    assert_eq!(parse_vm_rss(status), Some(12_345 * 1024));
    assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                  Max processes             63704                63704                processes \n\
                  Max open files            1024                 524288               files     \n";
    assert_eq!(parse_open_files_limit(limits), Some((1024, 524_288)));
}

#[test]
fn medians() {
    assert_eq!(median(&[]), None);
    assert_eq!(median(&[3.0]), Some(3.0));
    assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
    assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
}

#[test]
fn pgbench_transaction_log() {
    let log = "0 0 412 0 1764150000 123456\n1 0 388 0 1764150000 123500\n\
               0 1 failed 0 1764150000 123900\n2 7 1024 0 1764150001 5\n";
    assert_eq!(parse_pgbench_log(log), vec![412, 388, 1024]);
    assert_eq!(parse_pgbench_log(""), Vec::<u64>::new());
}

#[test]
fn percentiles_by_nearest_rank() {
    let values: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&values, 50.0), Some(50));
    assert_eq!(percentile(&values, 99.0), Some(99));
    assert_eq!(percentile(&values, 100.0), Some(100));
    assert_eq!(percentile(&[7], 99.0), Some(7));
    assert_eq!(percentile(&[], 50.0), None);
}

#[test]
fn primary_of_a_shard() {
    assert_eq!(primary_node("n2 (primary)"), Some("n2"));
    assert_eq!(primary_node("n3 (secondary), n1 (primary)"), Some("n1"));
    assert_eq!(primary_node("all rows"), None);
}
