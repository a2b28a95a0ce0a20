//! Two-phase commit across node processes: atomic commits, aborts, and recovery when the
//! proxy or a node is killed at each step (failpoints abort a process at an exact moment).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

use mycelium_router::{KeyValue, NodeInfo, NodeType, PolicyDefaults, TablePolicy, place};

use crate::harness::sqlstate;
use crate::processes::{Backend, NODES, ProcessCluster};

const ACCOUNTS: i64 = 30;
const INITIAL: i64 = 1000;
/// Nodes resolve transactions in doubt quickly in these tests.
const NODE_TOML: &str = "[transactions]\nrecovery_timeout_ms = 2500\ncleanup_interval_ms = 200\n";
/// Lock waits end sooner than the default, so crossing transfers fail fast (40001) and retry.
const STORAGE_TOML: &str = "busy_timeout_ms = 3000\n";

/// A cluster with `accounts` (sharded by id over every node) and `transfers`, and which node
/// holds each account, read from the node files.
async fn bank(
    backend: Backend,
    proxy_toml: &str,
) -> Option<(ProcessCluster, BTreeMap<i64, usize>)> {
    bank_with(backend, NODE_TOML, proxy_toml).await
}

/// As [`bank`], with `node_toml` for the nodes.
async fn bank_with(
    backend: Backend,
    node_toml: &str,
    proxy_toml: &str,
) -> Option<(ProcessCluster, BTreeMap<i64, usize>)> {
    let cluster = ProcessCluster::start_with(backend, STORAGE_TOML, node_toml, proxy_toml)?;
    let client = cluster.connect().await;
    client
        .batch_execute(
            "CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL \
             CHECK (balance >= 0)) WITH (mycelium.shard_keys = 'id', mycelium.shards = 6);
             CREATE TABLE transfers (id text NOT NULL, from_id bigint NOT NULL, \
             to_id bigint NOT NULL, amount bigint NOT NULL, PRIMARY KEY (from_id, id)) \
             WITH (mycelium.shard_keys = 'from_id', mycelium.shards = 6)",
        )
        .await
        .expect("create tables");
    // One message, many statements: one implicit transaction over every node (2PC).
    let inserts: String = (1..=ACCOUNTS)
        .map(|id| format!("INSERT INTO accounts (id, balance) VALUES ({id}, {INITIAL});"))
        .collect();
    client.batch_execute(&inserts).await.expect("accounts");
    // Each account is on its primary (copies follow through replication).
    let owner = primaries();
    for (id, &index) in &owner {
        let here = cluster
            .node_ints(
                index,
                &format!("SELECT count(*) FROM accounts WHERE id = {id}"),
            )
            .await;
        assert_eq!(
            here,
            vec![vec![1]],
            "account {id} on its primary {}",
            NODES[index].0
        );
    }
    for index in 0..NODES.len() {
        assert!(
            owner.values().any(|&n| n == index),
            "no account has node {index} as its primary: {owner:?}"
        );
    }
    Some((cluster, owner))
}

/// An account held by node `index`.
fn account_on(owner: &BTreeMap<i64, usize>, index: usize) -> i64 {
    owner
        .iter()
        .find(|(_, n)| **n == index)
        .map(|(id, _)| *id)
        .expect("an account on the node")
}

/// Balance of `id` read straight from the database of the node that holds it.
async fn balance_on(cluster: &ProcessCluster, owner: &BTreeMap<i64, usize>, id: i64) -> i64 {
    cluster
        .node_ints(
            owner[&id],
            &format!("SELECT balance FROM accounts WHERE id = {id}"),
        )
        .await[0][0]
}

/// The node holding each account's primary copy: the placement every proxy computes.
fn primaries() -> BTreeMap<i64, usize> {
    let mut policy = TablePolicy::default_for("accounts", &PolicyDefaults::default());
    policy.shard_keys = vec!["id".to_owned()];
    policy.shards = 6;
    let infos: Vec<NodeInfo> = NODES
        .iter()
        .map(|(id, t)| NodeInfo {
            id: (*id).to_owned(),
            node_type: if *t == "miner" {
                NodeType::Miner
            } else {
                NodeType::Validator
            },
        })
        .collect();
    let placement = place(&policy, &infos).expect("placement");
    (1..=ACCOUNTS)
        .map(|id| {
            let shard = policy.shard_of(&[KeyValue::Int(id)]) as usize;
            let primary = placement.shards[shard].primary();
            (
                id,
                NODES.iter().position(|(n, _)| *n == primary).unwrap_or(0),
            )
        })
        .collect()
}

/// The sum of every balance, read from the database of each account's primary.
async fn total_on_nodes(cluster: &ProcessCluster, owner: &BTreeMap<i64, usize>) -> i64 {
    let mut total = 0;
    for index in 0..NODES.len() {
        let ids: Vec<String> = owner
            .iter()
            .filter(|(_, n)| **n == index)
            .map(|(id, _)| id.to_string())
            .collect();
        if ids.is_empty() {
            continue;
        }
        total += cluster
            .node_ints(
                index,
                &format!(
                    "SELECT CAST(coalesce(sum(balance), 0) AS BIGINT) FROM accounts WHERE id IN ({})",
                    ids.join(", ")
                ),
            )
            .await[0][0];
    }
    total
}

/// Waits until no node holds a prepared transaction.
async fn settled(cluster: &ProcessCluster) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut held = Vec::new();
        for index in 0..NODES.len() {
            held.push(cluster.prepared_on(index).await);
        }
        if held.iter().all(|&n| n == 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "prepared transactions still in doubt after 30 s: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn transfer_statements(
    client: &tokio_postgres::Client,
    from: i64,
    to: i64,
    amount: i64,
) -> Result<(), tokio_postgres::Error> {
    client.batch_execute("BEGIN").await?;
    client
        .execute(
            "UPDATE accounts SET balance = balance - $2 WHERE id = $1",
            &[&from, &amount],
        )
        .await?;
    client
        .execute(
            "UPDATE accounts SET balance = balance + $2 WHERE id = $1",
            &[&to, &amount],
        )
        .await?;
    Ok(())
}

async fn writes_on_several_nodes_commit_atomically(backend: Backend) {
    let Some((cluster, owner)) = bank(backend, "").await else {
        return;
    };
    let client = cluster.connect().await;
    let (a, b) = (account_on(&owner, 0), account_on(&owner, 1));

    transfer_statements(&client, a, b, 100).await.unwrap();
    // While it is open, the proxy lists it with the nodes it reached.
    let observer = cluster.connect().await;
    let listed = observer
        .simple_query("SHOW MYCELIUM TRANSACTIONS")
        .await
        .unwrap();
    let rows: Vec<_> = listed
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 1, "one transaction in progress");
    assert_eq!(rows[0].get("state"), Some("active"));
    assert_eq!(rows[0].get("participants"), Some("n1,n2"));
    assert_eq!(rows[0].get("writers"), Some("n1,n2"));
    // Not visible to others before COMMIT.
    assert_eq!(balance_on(&cluster, &owner, a).await, INITIAL);
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(balance_on(&cluster, &owner, a).await, INITIAL - 100);
    assert_eq!(balance_on(&cluster, &owner, b).await, INITIAL + 100);

    // An UPDATE without the shard key writes on every node, atomically, with one tag.
    let updated = client
        .execute("UPDATE accounts SET balance = balance + 1", &[])
        .await
        .unwrap();
    assert_eq!(updated as i64, ACCOUNTS);
    assert_eq!(
        total_on_nodes(&cluster, &owner).await,
        ACCOUNTS * (INITIAL + 1)
    );
    let returned = client
        .query(
            "UPDATE accounts SET balance = balance - 1 WHERE id IN ($1, $2) RETURNING id",
            &[&a, &b],
        )
        .await
        .unwrap();
    let mut ids: Vec<i64> = returned.iter().map(|r| r.get(0)).collect();
    ids.sort_unstable();
    assert_eq!(ids, {
        let mut expected = vec![a, b];
        expected.sort_unstable();
        expected
    });

    // One node refuses (a CHECK violation there): nothing anywhere.
    let before = total_on_nodes(&cluster, &owner).await;
    let error = client
        .execute("UPDATE accounts SET balance = balance - 1000", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "23514");
    assert_eq!(total_on_nodes(&cluster, &owner).await, before);
    transfer_statements(&client, a, b, 1).await.unwrap();
    let error = client
        .execute(
            "UPDATE accounts SET balance = balance - 5000 WHERE id = $1",
            &[&b],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "23514");
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(total_on_nodes(&cluster, &owner).await, before);
    assert_eq!(balance_on(&cluster, &owner, a).await, INITIAL - 100);

    // A client that leaves inside a transaction: it is forgotten and leaves no trace.
    let leaver = cluster.connect().await;
    transfer_statements(&leaver, a, b, 3).await.unwrap();
    drop(leaver);
    let mut listed = usize::MAX;
    for _ in 0..50 {
        listed = observer
            .simple_query("SHOW MYCELIUM TRANSACTIONS")
            .await
            .unwrap()
            .iter()
            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
            .count();
        if listed == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed, 0, "the abandoned transaction is still listed");
    assert_eq!(total_on_nodes(&cluster, &owner).await, before);

    // Rows are still where placement says, and nothing is left prepared.
    settled(&cluster).await;
    let total = total_through_proxy(&client).await;
    assert_eq!(total, before);
}

async fn a_participant_killed_after_its_vote_aborts_and_recovers(backend: Backend) {
    let Some((mut cluster, owner)) = bank(backend, "").await else {
        return;
    };
    cluster.restart_node(1, &[("MYCELIUM_FAILPOINTS", "participant.after_prepare")]);
    let client = cluster.connect().await;
    let (a, b) = (account_on(&owner, 0), account_on(&owner, 1));
    transfer_statements(&client, a, b, 250).await.unwrap();
    let error = client.batch_execute("COMMIT").await.unwrap_err();
    let code = sqlstate(&error);
    assert!(
        code.starts_with("08") || code == "57P01",
        "{code}: {error:?}"
    );
    assert!(format!("{error:?}").contains("n2"), "{error:?}");
    assert!(cluster.nodes[1].exited(), "the failpoint stopped n2");
    // Its vote is on disk: it comes back holding the transaction, learns that the decider
    // (n1) never committed, and rolls back.
    assert_eq!(cluster.prepared_on(1).await, 1);
    // Back with a long recovery timeout, n2 holds it in doubt, and the proxy shows it so.
    cluster.restart_node(
        1,
        &[("MYCELIUM_TRANSACTIONS__RECOVERY_TIMEOUT_MS", "600000")],
    );
    let observer = cluster.connect().await;
    let shown = observer
        .simple_query("SHOW MYCELIUM TRANSACTIONS")
        .await
        .unwrap();
    let prepared: Vec<(String, String)> = shown
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row)
                if row.get("state") == Some("prepared") =>
            {
                Some((
                    row.get("participants").unwrap_or("").to_owned(),
                    row.get("decider").unwrap_or("").to_owned(),
                ))
            }
            _ => None,
        })
        .collect();
    assert_eq!(prepared, vec![("n2".to_owned(), "n1".to_owned())]);
    // With the normal timeout it learns that the decider (n1) never committed.
    cluster.restart_node(1, &[]);
    settled(&cluster).await;
    assert_eq!(balance_on(&cluster, &owner, a).await, INITIAL);
    assert_eq!(balance_on(&cluster, &owner, b).await, INITIAL);
    let client = cluster.connect().await;
    transfer_statements(&client, a, b, 5).await.unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(balance_on(&cluster, &owner, b).await, INITIAL + 5);
}

/// The proxy dies at `failpoint`; afterwards every node must agree on `committed`.
async fn proxy_killed_at(backend: Backend, failpoint: &str, three_nodes: bool, committed: bool) {
    let Some((mut cluster, owner)) = bank(backend, "").await else {
        return;
    };
    cluster.restart_proxy(&[("MYCELIUM_FAILPOINTS", failpoint)]);
    let client = cluster.connect().await;
    let ids: Vec<i64> = (0..if three_nodes { 3 } else { 2 })
        .map(|n| account_on(&owner, n))
        .collect();
    client.batch_execute("BEGIN").await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        client
            .execute(
                "UPDATE accounts SET balance = balance + $2 WHERE id = $1",
                &[id, &(i as i64 + 1)],
            )
            .await
            .unwrap();
    }
    assert!(client.batch_execute("COMMIT").await.is_err());
    assert!(
        cluster.proxy.exited(),
        "the failpoint {failpoint} stopped the proxy"
    );
    if failpoint == "coordinator.after_decision" {
        // No atomic visibility across nodes (as README says): the decider (n1) has
        // committed while n2 still holds its part prepared, until it learns the outcome.
        assert_eq!(balance_on(&cluster, &owner, ids[0]).await, INITIAL + 1);
        assert_eq!(balance_on(&cluster, &owner, ids[1]).await, INITIAL);
        assert_eq!(cluster.prepared_on(1).await, 1);
    }
    cluster.restart_proxy(&[]);
    settled(&cluster).await;
    for (i, id) in ids.iter().enumerate() {
        let expected = if committed {
            INITIAL + i as i64 + 1
        } else {
            INITIAL
        };
        assert_eq!(
            balance_on(&cluster, &owner, *id).await,
            expected,
            "account {id} after a crash at {failpoint}"
        );
    }
    let client = cluster.connect().await;
    let total = total_through_proxy(&client).await;
    let added: i64 = if committed {
        (1..=ids.len() as i64).sum()
    } else {
        0
    };
    assert_eq!(total, ACCOUNTS * INITIAL + added);
}

async fn the_proxy_killed_after_the_votes_aborts_everywhere(backend: Backend) {
    proxy_killed_at(backend, "coordinator.after_prepare", false, false).await;
}

async fn the_proxy_killed_after_the_decision_commits_everywhere(backend: Backend) {
    proxy_killed_at(backend, "coordinator.after_decision", false, true).await;
}

async fn the_proxy_killed_between_two_commits_commits_everywhere(backend: Backend) {
    proxy_killed_at(backend, "coordinator.between_commits", true, true).await;
}

async fn a_participant_that_never_votes_is_aborted_after_prepare_timeout(backend: Backend) {
    let Some((cluster, owner)) = bank(backend, "[transactions]\nprepare_timeout_ms = 1000\n").await
    else {
        return;
    };
    let client = cluster.connect().await;
    let (a, b) = (account_on(&owner, 0), account_on(&owner, 1));
    transfer_statements(&client, a, b, 40).await.unwrap();
    cluster.nodes[1].freeze(true);
    let started = Instant::now();
    let error = client.batch_execute("COMMIT").await.unwrap_err();
    let waited = started.elapsed();
    cluster.nodes[1].freeze(false);
    assert_eq!(sqlstate(&error), "08006", "{error:?}");
    let message = format!("{error:?}");
    assert!(
        message.contains("n2") && message.contains("prepare_timeout"),
        "{message}"
    );
    assert!(waited < Duration::from_secs(10), "aborted after {waited:?}");
    settled(&cluster).await;
    assert_eq!(balance_on(&cluster, &owner, a).await, INITIAL);
    assert_eq!(balance_on(&cluster, &owner, b).await, INITIAL);
}

/// Two transactions lock accounts on two nodes in opposite orders, which no single node (nor
/// PostgreSQL's deadlock detector, even with both nodes' databases on one server) sees as a
/// deadlock. Wait-die ends it at once: the younger transaction, already holding a lock on the
/// other node, fails with 40001 instead of waiting out the lock timeout, and the older one
/// commits.
async fn crossing_transactions_do_not_wait_for_each_other(backend: Backend) {
    let Some((cluster, owner)) = bank(backend, "").await else {
        return;
    };
    let (a, b) = (account_on(&owner, 0), account_on(&owner, 1));
    let move_one = |from: i64, to: i64| {
        [
            format!("UPDATE accounts SET balance = balance - 1 WHERE id = {from}"),
            format!("UPDATE accounts SET balance = balance + 1 WHERE id = {to}"),
        ]
    };
    let older = cluster.connect().await;
    let younger = cluster.connect().await;
    let [older_first, older_second] = move_one(a, b);
    let [younger_first, younger_second] = move_one(b, a);
    older.batch_execute("BEGIN").await.unwrap();
    older.batch_execute(&older_first).await.unwrap();
    younger.batch_execute("BEGIN").await.unwrap();
    younger.batch_execute(&younger_first).await.unwrap();
    // The older one waits for n2's lock, held by the younger one...
    let waiting = tokio::spawn(async move {
        older.batch_execute(&older_second).await?;
        older.batch_execute("COMMIT").await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the older transaction did not wait");
    // ... which, asking for n1's lock, held by the older one, dies (the lock timeout is 3 s,
    // and only wait-die says this).
    let error = younger.batch_execute(&younger_second).await.unwrap_err();
    assert_eq!(sqlstate(&error), "40001", "{error:?}");
    let detail = error.as_db_error().and_then(|e| e.detail()).unwrap_or("");
    assert!(detail.contains("could deadlock"), "{error:?}");
    younger.batch_execute("ROLLBACK").await.unwrap();
    waiting.await.unwrap().unwrap();
    settled(&cluster).await;
    assert_eq!(balance_on(&cluster, &owner, a).await, INITIAL - 1);
    assert_eq!(balance_on(&cluster, &owner, b).await, INITIAL + 1);
}

/// Concurrent transfers between accounts on different nodes while the proxy and the nodes
/// are SIGKILLed and restarted at random. `MYCELIUM_BANK_SECONDS` makes it longer.
async fn bank_transfers_survive_random_kills(backend: Backend) {
    let seconds: u64 = std::env::var("MYCELIUM_BANK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let Some((cluster, owner)) = bank(backend, "").await else {
        return;
    };
    let owner = Arc::new(owner);
    let cluster = Arc::new(Mutex::new(cluster));
    let stop = Arc::new(AtomicBool::new(false));
    let port = cluster.lock().await.port;

    let mut clients = Vec::new();
    for worker in 0..4u64 {
        let owner = owner.clone();
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(worker);
            let mut committed = Vec::new();
            let mut failed = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let Ok(client) = connect(port).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                while !stop.load(Ordering::Relaxed) {
                    let from = rng.random_range(1..=ACCOUNTS);
                    let to = rng.random_range(1..=ACCOUNTS);
                    if owner[&from] == owner[&to] {
                        continue;
                    }
                    n += 1;
                    let id = format!("w{worker}-{n}");
                    let amount = rng.random_range(1..=20i64);
                    match transfer(&client, &id, from, to, amount).await {
                        Ok(()) => committed.push(id),
                        Err(e) if e.is_closed() || sqlstate(&e) == "08007" => break,
                        Err(e) if e.code().is_some() && sqlstate(&e) != "08007" => {
                            // The server said no: nothing of it may exist. A failure
                            // during COMMIT itself (connection lost) is unknown.
                            failed.push(id);
                            let _ = client.batch_execute("ROLLBACK").await;
                        }
                        Err(_) => break,
                    }
                }
            }
            (committed, failed)
        }));
    }

    let chaos = {
        let cluster = cluster.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(99);
            let mut kills = 0;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(rng.random_range(1500..3000))).await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let mut cluster = cluster.lock().await;
                match rng.random_range(0..4) {
                    3 => cluster.restart_proxy(&[]),
                    node => cluster.restart_node(node, &[]),
                }
                kills += 1;
            }
            kills
        })
    };

    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let kills = chaos.await.unwrap();
    let mut committed = Vec::new();
    let mut failed = Vec::new();
    for client in clients {
        let (c, f) = client.await.unwrap();
        committed.extend(c);
        failed.extend(f);
    }
    assert!(kills >= 3, "only {kills} kills");
    assert!(
        committed.len() >= 10,
        "only {} transfers committed in {seconds} s",
        committed.len()
    );

    let cluster = cluster.lock().await;
    settled(&cluster).await;
    assert_eq!(
        total_on_nodes(&cluster, &owner).await,
        ACCOUNTS * INITIAL,
        "money was created or lost"
    );
    let mut present: HashSet<String> = HashSet::new();
    for index in 0..NODES.len() {
        present.extend(cluster.node_texts(index, "SELECT id FROM transfers").await);
    }
    for id in &committed {
        assert!(
            present.contains(id),
            "acknowledged transfer {id} is missing"
        );
    }
    for id in &failed {
        assert!(!present.contains(id), "failed transfer {id} is present");
    }
    let client = cluster.connect().await;
    let total = total_through_proxy(&client).await;
    assert_eq!(total, ACCOUNTS * INITIAL);
    if backend == Backend::Sqlite {
        // Every copy converges to its primary, through all the kills: each account on two
        // nodes (replication_factor 0.5 of three), with the primary's balance.
        let mut truth = BTreeMap::new();
        for &id in owner.keys() {
            truth.insert(id, balance_on(&cluster, &owner, id).await);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut copies = Vec::new();
            for index in 0..NODES.len() {
                copies.extend(
                    cluster
                        .node_ints(index, "SELECT id, balance FROM accounts")
                        .await,
                );
            }
            let converged = copies.len() as i64 == 2 * ACCOUNTS
                && copies.iter().all(|row| truth.get(&row[0]) == Some(&row[1]));
            if converged {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "copies did not converge to their primaries: {copies:?} vs {truth:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "bank: {} committed, {} refused, {kills} kills in {seconds} s",
        committed.len(),
        failed.len()
    );
}

/// `sum(balance)` as the proxy merges it over the nodes.
/// Every row of node `index`'s transaction records table (decider records and, on SQLite,
/// participants' `applied` markers), read from its database.
async fn records_on(cluster: &ProcessCluster, backend: Backend, index: usize) -> i64 {
    let table = if backend.on_postgres(index) {
        "mycelium.txn_records"
    } else {
        "__mycelium_txn_records"
    };
    cluster
        .node_ints(index, &format!("SELECT count(*) FROM {table}"))
        .await[0][0]
}

/// Waits until no node keeps a transaction record.
async fn records_gone(cluster: &ProcessCluster, backend: Backend) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut kept = Vec::new();
        for index in 0..NODES.len() {
            kept.push(records_on(cluster, backend, index).await);
        }
        if kept.iter().all(|&n| n == 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "transaction records still kept after 30 s: {kept:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn transaction_records_go_once_no_participant_needs_them(backend: Backend) {
    let node_toml = format!("{NODE_TOML}record_retention_seconds = 1\n");
    let Some((mut cluster, owner)) = bank_with(backend, &node_toml, "").await else {
        return;
    };
    let (a, b) = (account_on(&owner, 0), account_on(&owner, 1));
    let client = cluster.connect().await;
    for _ in 0..10 {
        transfer_statements(&client, a, b, 1).await.unwrap();
        client.batch_execute("COMMIT").await.unwrap();
    }
    records_gone(&cluster, backend).await;

    // The proxy dies after n1 decided; n2 holds its part prepared for 8 s (its recovery
    // timeout): n1 keeps the record, past its retention, until n2 committed. (A PostgreSQL
    // node is not restarted while it holds it: its setup would wait for the locks.)
    cluster.restart_node(1, &[("MYCELIUM_TRANSACTIONS__RECOVERY_TIMEOUT_MS", "8000")]);
    cluster.restart_proxy(&[("MYCELIUM_FAILPOINTS", "coordinator.after_decision")]);
    let client = cluster.connect().await;
    transfer_statements(&client, a, b, 7).await.unwrap();
    assert!(client.batch_execute("COMMIT").await.is_err());
    assert!(cluster.proxy.exited(), "the failpoint stopped the proxy");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(cluster.prepared_on(1).await, 1);
    assert_eq!(
        records_on(&cluster, backend, 0).await,
        1,
        "the decider's record"
    );
    assert_eq!(balance_on(&cluster, &owner, a).await, INITIAL - 17);

    settled(&cluster).await;
    assert_eq!(balance_on(&cluster, &owner, b).await, INITIAL + 17);
    records_gone(&cluster, backend).await;
}

async fn total_through_proxy(client: &tokio_postgres::Client) -> i64 {
    let messages = client
        .simple_query("SELECT sum(balance) FROM accounts")
        .await
        .unwrap();
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .and_then(|v| v.parse().ok())
        .expect("a total")
}

async fn connect(port: u16) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={port} user=mycelium password=mycelium dbname=mycelium \
             connect_timeout=5"
        ),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn transfer(
    client: &tokio_postgres::Client,
    id: &str,
    from: i64,
    to: i64,
    amount: i64,
) -> Result<(), tokio_postgres::Error> {
    transfer_statements(client, from, to, amount).await?;
    client
        .execute(
            "INSERT INTO transfers (id, from_id, to_id, amount) VALUES ($1, $2, $3, $4)",
            &[&id, &from, &to, &amount],
        )
        .await?;
    client.batch_execute("COMMIT").await
}

crate::processes::on_every_backend!(
    writes_on_several_nodes_commit_atomically,
    a_participant_killed_after_its_vote_aborts_and_recovers,
    the_proxy_killed_after_the_votes_aborts_everywhere,
    the_proxy_killed_after_the_decision_commits_everywhere,
    the_proxy_killed_between_two_commits_commits_everywhere,
    a_participant_that_never_votes_is_aborted_after_prepare_timeout,
    bank_transfers_survive_random_kills,
    transaction_records_go_once_no_participant_needs_them,
    crossing_transactions_do_not_wait_for_each_other,
);
