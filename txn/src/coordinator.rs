//! The coordinator side: the transactions one proxy runs, and how each one ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::future::join_all;
use mycelium_config::TransactionConfig;
use mycelium_config::failpoint;
use mycelium_protocol::{CommitPosition, DbError, Execute, NodeLink, NodeSession, Reply};
use tokio::sync::broadcast;

use crate::metrics;

/// A transaction's global id: unique across proxies and restarts (a UUID).
pub type TxId = Arc<str>;

/// Where a transaction is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    /// Running statements.
    Active,
    /// Collecting votes from the participants that wrote.
    Preparing,
    /// Every vote was yes; the decider is committing with the transaction record.
    Deciding,
    /// Decided to commit; the prepared participants are committing.
    Committing,
    Committed,
    Aborting,
    Aborted,
    /// The decision was sent but never confirmed: the nodes settle it among themselves.
    Unknown,
}

impl TxnState {
    pub fn as_str(self) -> &'static str {
        match self {
            TxnState::Active => "active",
            TxnState::Preparing => "preparing",
            TxnState::Deciding => "deciding",
            TxnState::Committing => "committing",
            TxnState::Committed => "committed",
            TxnState::Aborting => "aborting",
            TxnState::Aborted => "aborted",
            TxnState::Unknown => "unknown",
        }
    }
}

/// What subscribers hear about transactions.
#[derive(Debug, Clone)]
pub enum TxnEvent {
    StateChanged {
        tx_id: TxId,
        old_state: TxnState,
        new_state: TxnState,
    },
    Completed {
        tx_id: TxId,
        success: bool,
        duration: Duration,
    },
    Error {
        tx_id: TxId,
        error: DbError,
    },
}

/// A commit that succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub protocol: CommitProtocol,
    /// Where the prepared participants' commits landed in replication, for the session's read
    /// fences. A one-phase commit's and the decider's are their sessions' to report
    /// (`NodeSession::take_commit_positions`).
    pub positions: Vec<CommitPosition>,
}

/// One-phase (one node wrote) or two-phase commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitProtocol {
    OnePhase,
    TwoPhase,
}

impl CommitProtocol {
    fn label(self) -> &'static str {
        match self {
            CommitProtocol::OnePhase => "1pc",
            CommitProtocol::TwoPhase => "2pc",
        }
    }
}

/// A transaction as `SHOW MYCELIUM TRANSACTIONS` lists it.
#[derive(Debug, Clone)]
pub struct TxnView {
    pub tx_id: TxId,
    pub state: TxnState,
    /// Every node the transaction reached, in the order it reached them.
    pub participants: Vec<String>,
    /// The nodes it wrote on.
    pub writers: Vec<String>,
    /// The node whose record decides a two-phase commit, once chosen.
    pub decider: Option<String>,
    pub age: Duration,
}

/// A node the transaction reached, as the commit needs it: the session holding the
/// transaction there, and the link for requests outside that session.
pub struct Participant<'a> {
    pub node: String,
    pub link: Arc<dyn NodeLink>,
    pub session: &'a mut dyn NodeSession,
    pub writes: bool,
}

struct Entry {
    state: TxnState,
    participants: Vec<(String, bool)>,
    decider: Option<String>,
    started: Instant,
}

/// Runs the transactions of one proxy. Cheap to share (`Arc`).
pub struct Coordinator {
    config: TransactionConfig,
    events: broadcast::Sender<TxnEvent>,
    active: Mutex<HashMap<TxId, Entry>>,
}

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

/// Waits for `work` on `link`'s node `timeout` long, and then for as long as the node is up
/// (answers heartbeats): a transaction that wrote a million rows prepares and commits in as
/// long as its node needs, while a node that is down or cut off ends the wait. `None` when the
/// wait ended without an answer.
async fn while_up<T>(
    link: &dyn NodeLink,
    timeout: Duration,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let mut work = std::pin::pin!(work);
    let mut waited = Duration::ZERO;
    loop {
        match tokio::time::timeout(timeout, &mut work).await {
            Ok(answer) => return Some(answer),
            Err(_) if link.is_up() => {
                waited += timeout;
                tracing::info!(node = %link.node_id(), waited_ms = waited.as_millis() as u64, "a node that is up is still working on a transaction; waiting on");
            }
            Err(_) => return None,
        }
    }
}

impl Coordinator {
    pub fn new(config: TransactionConfig) -> Coordinator {
        let (events, _) = broadcast::channel(1024);
        Coordinator {
            config,
            events,
            active: Mutex::new(HashMap::new()),
        }
    }

    fn active(&self) -> MutexGuard<'_, HashMap<TxId, Entry>> {
        self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a transaction. Refused with 53400 past `max_transactions`.
    pub fn begin(&self) -> Result<TxId, DbError> {
        let mut active = self.active();
        if active.len() >= self.config.max_transactions {
            return Err(DbError::new(
                "53400",
                format!(
                    "too many transactions in progress on this proxy (max_transactions = {})",
                    self.config.max_transactions
                ),
            ));
        }
        let tx_id: TxId = Arc::from(uuid::Uuid::new_v4().to_string());
        active.insert(
            tx_id.clone(),
            Entry {
                state: TxnState::Active,
                participants: Vec::new(),
                decider: None,
                started: Instant::now(),
            },
        );
        Ok(tx_id)
    }

    /// Records that a statement of `tx_id` runs on `node` (writing rows or not). A
    /// transaction open longer than `default_timeout_ms` is refused more work (25P04), so no
    /// client holds locks on a node indefinitely.
    pub fn add_operation(&self, tx_id: &TxId, node: &str, writes: bool) -> Result<(), DbError> {
        let mut active = self.active();
        let Some(entry) = active.get_mut(tx_id) else {
            return Err(DbError::new(
                "25P01",
                format!("transaction {tx_id} is not in progress"),
            ));
        };
        if entry.started.elapsed() > ms(self.config.default_timeout_ms) {
            return Err(DbError::new(
                "25P04",
                format!(
                    "transaction {tx_id} has been open longer than default_timeout ({} ms); \
                     roll it back and retry",
                    self.config.default_timeout_ms
                ),
            ));
        }
        match entry.participants.iter_mut().find(|(n, _)| n == node) {
            Some((_, wrote)) => *wrote |= writes,
            None => entry.participants.push((node.to_owned(), writes)),
        }
        Ok(())
    }

    /// Every transaction event from now on. Slow subscribers miss events (lagged), they
    /// never slow transactions down.
    pub fn subscribe(&self) -> broadcast::Receiver<TxnEvent> {
        self.events.subscribe()
    }

    /// The transactions in progress, oldest first.
    pub fn transactions(&self) -> Vec<TxnView> {
        let mut views: Vec<TxnView> = self
            .active()
            .iter()
            .map(|(tx_id, entry)| TxnView {
                tx_id: tx_id.clone(),
                state: entry.state,
                participants: entry.participants.iter().map(|(n, _)| n.clone()).collect(),
                writers: entry
                    .participants
                    .iter()
                    .filter(|(_, w)| *w)
                    .map(|(n, _)| n.clone())
                    .collect(),
                decider: entry.decider.clone(),
                age: entry.started.elapsed(),
            })
            .collect();
        views.sort_by_key(|v| std::cmp::Reverse(v.age));
        views
    }

    fn set_state(&self, tx_id: &TxId, new_state: TxnState) {
        let old_state = {
            let mut active = self.active();
            let Some(entry) = active.get_mut(tx_id) else {
                return;
            };
            std::mem::replace(&mut entry.state, new_state)
        };
        if old_state != new_state {
            let _ = self.events.send(TxnEvent::StateChanged {
                tx_id: tx_id.clone(),
                old_state,
                new_state,
            });
        }
    }

    fn set_decider(&self, tx_id: &TxId, decider: &str) {
        if let Some(entry) = self.active().get_mut(tx_id) {
            entry.decider = Some(decider.to_owned());
        }
    }

    /// The transaction is over: `success` means committed.
    fn complete(&self, tx_id: &TxId, success: bool, error: Option<&DbError>) {
        let started = self.active().remove(tx_id).map(|e| e.started);
        let duration = started.map(|s| s.elapsed()).unwrap_or_default();
        if let Some(error) = error {
            let _ = self.events.send(TxnEvent::Error {
                tx_id: tx_id.clone(),
                error: error.clone(),
            });
        }
        let _ = self.events.send(TxnEvent::Completed {
            tx_id: tx_id.clone(),
            success,
            duration,
        });
    }

    /// Commits `tx_id` on its participants: in one phase when at most one of them wrote,
    /// else in two. On error nothing was committed, except for 08007 (the outcome is
    /// unknown to this proxy and is settled by the nodes).
    pub async fn commit(
        &self,
        tx_id: &TxId,
        mut participants: Vec<Participant<'_>>,
    ) -> Result<Committed, DbError> {
        let started = Instant::now();
        let writers = participants.iter().filter(|p| p.writes).count();
        let protocol = if writers > 1 {
            CommitProtocol::TwoPhase
        } else {
            CommitProtocol::OnePhase
        };
        let outcome = match protocol {
            CommitProtocol::OnePhase => self
                .commit_one_phase(tx_id, &mut participants)
                .await
                .map(|()| Vec::new()),
            CommitProtocol::TwoPhase => self.commit_two_phase(tx_id, &mut participants).await,
        };
        let label = protocol.label();
        match &outcome {
            Ok(_) => {
                metrics::COMMITS.with_label_values(&[label]).inc();
                metrics::COMMIT_SECONDS
                    .with_label_values(&[label])
                    .observe(started.elapsed().as_secs_f64());
            }
            Err(error) if error.code == "08007" => {
                metrics::UNKNOWN_OUTCOMES.with_label_values(&[label]).inc();
            }
            Err(error) => {
                metrics::ABORTS
                    .with_label_values(&[label, abort_reason(error)])
                    .inc();
            }
        }
        self.complete(tx_id, outcome.is_ok(), outcome.as_ref().err());
        outcome.map(|positions| Committed {
            protocol,
            positions,
        })
    }

    /// Forgets a transaction whose client went away without ending it. Its node sessions roll
    /// it back when they are dropped (a node rolls back what a closed connection left open).
    pub fn abandon(&self, tx_id: &TxId) {
        if self.active().contains_key(tx_id) {
            self.set_state(tx_id, TxnState::Aborted);
            metrics::ABORTS
                .with_label_values(&["1pc", "abandoned"])
                .inc();
            self.complete(tx_id, false, None);
        }
    }

    /// Rolls `tx_id` back everywhere; returns the first error a node reported.
    pub async fn rollback(
        &self,
        tx_id: &TxId,
        mut participants: Vec<Participant<'_>>,
    ) -> Result<(), DbError> {
        self.set_state(tx_id, TxnState::Aborting);
        let mut first_error = None;
        for participant in &mut participants {
            if let Err(e) = run(participant.session, "ROLLBACK").await {
                first_error.get_or_insert(e);
            }
        }
        self.set_state(tx_id, TxnState::Aborted);
        self.complete(tx_id, false, first_error.as_ref());
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn commit_one_phase(
        &self,
        tx_id: &TxId,
        participants: &mut [Participant<'_>],
    ) -> Result<(), DbError> {
        self.set_state(tx_id, TxnState::Committing);
        // Readers first: the writer's COMMIT is the one that can fail and must be last.
        participants.sort_by_key(|p| p.writes);
        let mut first_error = None;
        for participant in participants.iter_mut() {
            if let Err(e) = run(participant.session, "COMMIT").await {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            None => {
                self.set_state(tx_id, TxnState::Committed);
                Ok(())
            }
            Some(e) => {
                self.set_state(tx_id, TxnState::Aborted);
                Err(e)
            }
        }
    }

    async fn commit_two_phase(
        &self,
        tx_id: &TxId,
        participants: &mut [Participant<'_>],
    ) -> Result<Vec<CommitPosition>, DbError> {
        let gid: &str = tx_id;
        // Readers hold nothing worth preparing; ending them first releases their snapshots.
        for reader in participants.iter_mut().filter(|p| !p.writes) {
            if let Err(e) = run(reader.session, "COMMIT").await {
                tracing::warn!(tx = gid, node = %reader.node, error = %e.message, "a read-only participant failed to commit");
            }
        }
        let (decider, others): (Vec<_>, Vec<_>) = participants
            .iter_mut()
            .filter(|p| p.writes)
            .enumerate()
            .partition(|(i, _)| *i == 0);
        let Some((_, decider)) = decider.into_iter().next() else {
            return Ok(Vec::new());
        };
        let mut others: Vec<&mut Participant<'_>> = others.into_iter().map(|(_, p)| p).collect();
        let decider_id = decider.node.clone();
        let decider_link = decider.link.clone();
        self.set_decider(tx_id, &decider_id);
        let writers: Vec<String> = std::iter::once(decider_id.clone())
            .chain(others.iter().map(|p| p.node.clone()))
            .collect();

        self.set_state(tx_id, TxnState::Preparing);
        let prepare_timeout = ms(self.config.prepare_timeout_ms);
        let prepare_started = Instant::now();
        let votes = join_all(others.iter_mut().map(|p| {
            let node = p.node.clone();
            let link = p.link.clone();
            let vote = p.session.prepare(gid, &decider_id);
            async move {
                match while_up(link.as_ref(), prepare_timeout, vote).await {
                    Some(Ok(())) => Ok(()),
                    Some(Err(e)) => Err(vote_no(&node, e)),
                    None => Err(DbError::new(
                        "08006",
                        format!(
                            "node {node} did not answer PREPARE within prepare_timeout ({} ms) \
                             and is down; the transaction was rolled back",
                            prepare_timeout.as_millis()
                        ),
                    )),
                }
            }
        }))
        .await;
        metrics::PREPARE_SECONDS
            .with_label_values(&["2pc"])
            .observe(prepare_started.elapsed().as_secs_f64());
        if let Some(error) = votes.into_iter().find_map(Result::err) {
            self.abort_prepared(tx_id, Some(&mut *decider.session), links(&others))
                .await;
            return Err(error);
        }
        failpoint::hit("coordinator.after_prepare");

        self.set_state(tx_id, TxnState::Deciding);
        let commit_timeout = ms(self.config.commit_timeout_ms);
        let decision = while_up(
            decider_link.as_ref(),
            commit_timeout,
            decider.session.commit_decision(gid, &writers),
        )
        .await;
        match decision {
            Some(Ok(())) => {}
            Some(Err(e)) if !lost(&e) => {
                // The decider refused (an abort record, or its own commit failed): nothing
                // committed anywhere.
                self.abort_prepared(tx_id, None, links(&others)).await;
                return Err(vote_no(&decider_id, e));
            }
            outcome => {
                self.set_state(tx_id, TxnState::Unknown);
                let why = match outcome {
                    Some(Err(e)) => e.message,
                    _ => format!(
                        "no answer within commit_timeout ({} ms), and the node is down",
                        commit_timeout.as_millis()
                    ),
                };
                return Err(DbError::new(
                    "08007",
                    format!(
                        "transaction resolution unknown: the commit decision was sent to node \
                         {decider_id} but not confirmed ({why}); the nodes settle the outcome \
                         among themselves within the recovery timeout"
                    ),
                ));
            }
        }
        failpoint::hit("coordinator.after_decision");

        self.set_state(tx_id, TxnState::Committing);
        // The decision is durable: from here the transaction is committed whatever happens,
        // and a participant this proxy cannot reach learns it from the decider.
        let mut all_finished = true;
        let mut positions = Vec::new();
        for (i, (node, link)) in links(&others).iter().enumerate() {
            if i == 1 {
                failpoint::hit("coordinator.between_commits");
            }
            let finished = while_up(
                link.as_ref(),
                commit_timeout,
                link.finish_prepared(gid, true),
            )
            .await;
            if let Some(Ok(landed)) = finished {
                positions.extend(landed);
            } else {
                all_finished = false;
                tracing::warn!(tx = gid, node = %node, "commit of a prepared participant not confirmed; the node will learn the outcome from the decider");
            }
        }
        self.set_state(tx_id, TxnState::Committed);
        if all_finished {
            forget(decider_link, gid.to_owned(), commit_timeout);
        }
        Ok(positions)
    }

    /// Aborts after a "no", a timeout, or a refused decision: the decider's open transaction
    /// (when it still has one) rolls back, the prepared participants are told to roll back.
    /// A participant that does not hear it presumes abort on its own.
    async fn abort_prepared(
        &self,
        tx_id: &TxId,
        decider: Option<&mut dyn NodeSession>,
        prepared: Vec<(String, Arc<dyn NodeLink>)>,
    ) {
        self.set_state(tx_id, TxnState::Aborting);
        if let Some(session) = decider
            && let Err(e) = run(session, "ROLLBACK").await
        {
            tracing::warn!(tx = %tx_id, error = %e.message, "rolling back the decider failed");
        }
        let timeout = ms(self.config.commit_timeout_ms);
        join_all(prepared.iter().map(|(node, link)| {
            let gid: &str = tx_id;
            async move {
                let done = tokio::time::timeout(timeout, link.finish_prepared(gid, false)).await;
                if !matches!(done, Ok(Ok(_))) {
                    tracing::warn!(tx = gid, node = %node, "rollback of a prepared participant not confirmed; the node will presume abort");
                }
            }
        }))
        .await;
        self.set_state(tx_id, TxnState::Aborted);
    }
}

/// Tells the decider, in the background, to delete the record of a transaction every
/// prepared writer acknowledged: none of them holds it any more, so none will ask. When the
/// request is lost, the decider's sweep deletes the record later.
fn forget(decider: Arc<dyn NodeLink>, gid: String, timeout: Duration) {
    tokio::spawn(async move {
        match tokio::time::timeout(timeout, decider.forget_txn(&gid)).await {
            Ok(Ok(())) => metrics::RECORDS_DELETED
                .with_label_values(&["forget"])
                .inc(),
            Ok(Err(e)) => {
                tracing::debug!(tx = %gid, node = %decider.node_id(), error = %e.message, "the decider did not forget the transaction record; its sweep will");
            }
            Err(_) => {
                tracing::debug!(tx = %gid, node = %decider.node_id(), "the decider did not confirm forgetting the transaction record; its sweep will");
            }
        }
    });
}

/// The nodes and links of participants, for requests outside their sessions.
fn links(participants: &[&mut Participant<'_>]) -> Vec<(String, Arc<dyn NodeLink>)> {
    participants
        .iter()
        .map(|p| (p.node.clone(), p.link.clone()))
        .collect()
}

/// A lost connection or a node shutting down: the request may or may not have run.
fn lost(error: &DbError) -> bool {
    error.code.starts_with("08") || error.code == "57P01"
}

/// A participant's refusal, as the client sees it: connection losses keep their SQLSTATE,
/// anything else is a serialization failure naming the node.
fn vote_no(node: &str, error: DbError) -> DbError {
    if lost(&error) {
        let message = if error.message.contains(node) {
            error.message
        } else {
            format!("node {node}: {}", error.message)
        };
        return DbError::new(&error.code, message);
    }
    DbError::new(
        "40001",
        format!(
            "could not commit: node {node} voted no ({}: {})",
            error.code, error.message
        ),
    )
}

fn abort_reason(error: &DbError) -> &'static str {
    if lost(error) {
        "participant_lost"
    } else if error.code == "40001" {
        "voted_no"
    } else {
        "error"
    }
}

/// Runs a transaction-control statement on a session and waits for its end.
async fn run(session: &mut dyn NodeSession, sql: &str) -> Result<(), DbError> {
    let mut stream = session.execute(Execute::simple(sql)).await?;
    loop {
        match stream.recv().await {
            Some(Ok(Reply::Complete { .. })) => return Ok(()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e),
            None => return Err(DbError::new("08006", "the node stopped answering")),
        }
    }
}
