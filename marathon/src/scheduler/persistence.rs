//! Where the scheduler's state goes, and when an answer may leave: one piece of code for both
//! modes.
//!
//! - **One Marathon** ([`Backend::Local`]): every change is applied to a [`Store`] (redb, or
//!   memory in tests), durably, before [`MarathonScheduler::persist`] returns; whatever the
//!   scheduler does next (an API answer, a launch, a kill) happens after the write.
//! - **Leader + standbys** ([`Backend::Replicated`]): every change becomes a write of the
//!   framework's replicated state ([`crate::replicated`], `Driver::write`), which commits
//!   later. The driver holds every call to the master made after a write until it commits,
//!   so launches and kills still follow their writes; API answers wait too: [`ApiAnswer`] is
//!   `Pending` until [`Scheduler::committed`](plateau_sdk::Scheduler::committed) says the last
//!   write made before the answer committed. When leadership ends
//!   ([`MarathonScheduler::handle_deposed`]) pending answers fail with 503, the model is
//!   dropped, and the instance stands by until it is elected again with the state loaded
//!   afresh ([`MarathonScheduler::handle_elected`]).
//!
//! The scheduler's logic does not know which mode it runs in: it calls `persist` before it
//! acts, and the HTTP layer turns every answer into an [`ApiAnswer`] with
//! [`MarathonScheduler::answer`].

use std::collections::VecDeque;

use plateau_master::coord::FencingToken;
use plateau_sdk::coord::{StateError, WriteId};
use tokio::sync::oneshot;

use super::*;
use crate::replicated::{self, StateLayout};

/// Where the state is written.
pub(super) enum Backend {
    /// A local store: writes are durable when `apply` returns.
    Local(Box<dyn Store>),
    /// The framework's replicated state (leader + standbys): writes commit later.
    Replicated(StateLayout),
}

/// Whether this instance acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The only Marathon (a local store): always acts.
    Single,
    /// One of several: another leads (or none does yet).
    Standby,
    /// One of several, elected at `epoch`, with the state loaded.
    Leading {
        /// The election's epoch (its fencing token).
        epoch: u64,
    },
}

/// An API answer: now, or once the state writes made before it commit.
#[derive(Debug)]
pub enum ApiAnswer {
    /// Send it.
    Ready(ApiResponse),
    /// Wait for it.
    Pending(PendingAnswer),
}

/// An answer that waits for a state write to commit (or leadership to end: then a 503).
#[derive(Debug)]
pub struct PendingAnswer {
    rx: oneshot::Receiver<ApiResponse>,
}

impl PendingAnswer {
    /// The answer once it is decided (tests, the simulator); `None` while it waits.
    pub fn try_take(&mut self) -> Option<ApiResponse> {
        match self.rx.try_recv() {
            Ok(response) => Some(response),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(leadership_lost()),
        }
    }

    /// Waits for the answer.
    pub async fn wait(self) -> ApiResponse {
        self.rx.await.unwrap_or_else(|_| leadership_lost())
    }
}

impl ApiAnswer {
    /// The answer if it is decided (tests, the simulator).
    pub fn try_take(&mut self) -> Option<ApiResponse> {
        match self {
            ApiAnswer::Ready(response) => Some(response.clone()),
            ApiAnswer::Pending(pending) => pending.try_take(),
        }
    }
}

fn leadership_lost() -> ApiResponse {
    ApiResponse::message(
        503,
        "Leadership was lost before the change was committed: its outcome is unknown; try again",
    )
}

/// An answer waiting for `after` to commit.
pub(super) struct Waiting {
    after: WriteId,
    response: ApiResponse,
    reply: oneshot::Sender<ApiResponse>,
}

/// Answers waiting for commits, oldest first.
#[derive(Default)]
pub(super) struct PendingAnswers {
    queue: VecDeque<Waiting>,
}

impl PendingAnswers {
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }
}

impl MarathonScheduler {
    /// The role of this instance.
    pub fn role(&self) -> Role {
        self.role
    }

    /// True when this instance may act: the only Marathon, or the leader (and its state could
    /// be written so far).
    pub fn is_acting(&self) -> bool {
        self.failed.is_none() && self.role != Role::Standby
    }

    /// True unless this instance stands by (a standby's API is proxied to the leader; a
    /// request that reaches it anyway is answered 503).
    pub fn serves_api(&self) -> bool {
        self.role != Role::Standby
    }

    /// True when this Marathon is one of several (leader election through the masters).
    pub fn is_replicated(&self) -> bool {
        matches!(self.backend, Backend::Replicated(_))
    }

    /// The leader's advertised address (`host:port`): this one's when it acts, as last seen
    /// otherwise (`None`: nobody leads now).
    pub fn leader(&self) -> Option<String> {
        if self.is_acting() {
            Some(self.advertised_address())
        } else {
            self.leader.clone()
        }
    }

    /// This instance's advertised address (`host:port` of its API).
    pub fn advertised_address(&self) -> String {
        format!("{}:{}", self.config.hostname, self.config.http_port)
    }

    /// Answers waiting for state writes to commit.
    pub fn pending_answers(&self) -> usize {
        self.answers.len()
    }

    /// `response` to an API request, sent now, or once every state write made so far has
    /// committed (leader + standbys): nothing is acknowledged that a new leader could miss,
    /// and nothing is shown that may never land.
    pub fn answer(&mut self, d: &mut Driver<'_, '_>, response: ApiResponse) -> ApiAnswer {
        let Backend::Replicated(_) = self.backend else {
            return ApiAnswer::Ready(response);
        };
        let after = match d.state() {
            Some(state) if state.has_uncommitted() => state.last_write().expect("a write"),
            _ => return ApiAnswer::Ready(response),
        };
        if self.answers.queue.len() >= limits::PENDING_ANSWERS_MAX {
            return ApiAnswer::Ready(ApiResponse::message(
                503,
                format!(
                    "{} answers wait for the state to commit; try again",
                    limits::PENDING_ANSWERS_MAX
                ),
            ));
        }
        let (reply, rx) = oneshot::channel();
        self.answers.queue.push_back(Waiting {
            after,
            response,
            reply,
        });
        ApiAnswer::Pending(PendingAnswer { rx })
    }

    /// Writes `ops`, with the status-update writes still pending before them, then
    /// acknowledges those updates. Every write that must land before Marathon acts (an API
    /// answer, a launch, a kill) goes through here. False when nothing more may be done: the
    /// store failed (the scheduler stops), or leadership is ending.
    pub(super) fn persist(&mut self, d: &mut Driver<'_, '_>, ops: &[StoreOp]) -> bool {
        if !self.is_acting() {
            return false;
        }
        let all: Vec<StoreOp> = if self.pending_ops.is_empty() {
            ops.to_vec()
        } else {
            let mut all = std::mem::take(&mut self.pending_ops);
            all.extend(ops.iter().cloned());
            all
        };
        let result = match &mut self.backend {
            Backend::Local(store) => store.apply(&all).map_err(|e| Some(e.to_string())),
            Backend::Replicated(layout) => write_replicated(d, layout, &all),
        };
        match result {
            Ok(()) => {
                // Held by the driver until the writes commit (leader + standbys).
                for status in std::mem::take(&mut self.pending_acks) {
                    d.acknowledge(&status);
                }
                true
            }
            // Leadership is ending: the deposition drops the model.
            Err(None) => false,
            Err(Some(message)) => {
                tracing::error!(error = %message, "cannot write Marathon's state; stopping (failover)");
                self.failed = Some(message);
                d.stop(true);
                false
            }
        }
    }

    /// Whether `ops` can be written (the replicated state refuses records beyond its limits):
    /// an API change is checked before anything changes, and refused with a 422.
    pub(super) fn check_writable(&self, ops: &[StoreOp]) -> Result<(), ApiResponse> {
        match &self.backend {
            Backend::Local(_) => Ok(()),
            Backend::Replicated(layout) => layout.check(ops).map_err(|refusal| {
                ApiResponse::json(
                    422,
                    json!({"message": "Object is not valid",
                           "details": [{"path": "/", "errors": [refusal.message]}]}),
                )
            }),
        }
    }

    /// Records a status update's writes for the next group commit and acknowledges the update
    /// only after it: the updates queued behind this one are handled first (a [`MarathonFlush`]
    /// to self comes after them), then one commit covers them all. Until then the change is in
    /// memory only; if Marathon dies first, the master redelivers the unacknowledged updates.
    pub(super) fn persist_status(
        &mut self,
        d: &mut Driver<'_, '_>,
        ops: Vec<StoreOp>,
        status: &TaskStatus,
    ) {
        if !self.is_acting() {
            return;
        }
        self.pending_ops.extend(ops);
        if status.uuid.is_some() {
            self.pending_acks.push(status.clone());
        }
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            let me = d.ctx().self_upid().clone();
            d.ctx().send(&me, MarathonFlush);
        }
    }

    /// Commits what [`Self::persist_status`] collected (a [`MarathonFlush`] arrived).
    pub fn on_flush_message(&mut self, d: &mut Driver<'_, '_>) {
        self.flush_scheduled = false;
        if !self.pending_ops.is_empty() || !self.pending_acks.is_empty() {
            self.persist(d, &[]);
        }
        self.flush_routes(d);
    }

    /// The answer when a change could not be made.
    pub(super) fn unavailable(&self) -> ApiResponse {
        match &self.failed {
            Some(why) => {
                ApiResponse::message(503, format!("Marathon cannot write its state: {why}"))
            }
            None => {
                ApiResponse::message(503, "This Marathon is not the leader (any more); try again")
            }
        }
    }

    // ---- leader + standbys -------------------------------------------------------------------

    /// Elected, the state loaded: rebuild the model from it and lead.
    pub fn handle_elected(&mut self, d: &mut Driver<'_, '_>, token: &FencingToken) {
        self.touch(d);
        let Some(state) = d.state() else {
            tracing::error!("elected without a loaded state");
            return;
        };
        let (stored, layout, unreadable) = replicated::load(state);
        for record in &unreadable {
            // Left in place: the next leader of a fixed version may read it.
            tracing::error!(key = %record.key, error = %record.error, "a record of the replicated state cannot be read; ignored");
        }
        tracing::info!(
            epoch = token.epoch,
            apps = stored.apps.len(),
            instances = stored.instances.len(),
            deployments = stored.deployments.len(),
            "marathon elected: leading"
        );
        self.drop_model();
        self.install_state(stored);
        self.backend = Backend::Replicated(layout);
        self.role = Role::Leading { epoch: token.epoch };
        self.leader = Some(self.advertised_address());
        self.started_wall_ms = Some(self.wall_ms);
        // Readiness checks that were not done resume (as after a restart).
        let waiting: Vec<TaskId> = self
            .instances
            .values()
            .filter(|i| i.awaits_readiness())
            .map(|i| i.task_id.clone())
            .collect();
        for task_id in &waiting {
            self.probe_readiness(d, task_id);
        }
        let current = crate::routes::routes_of(&self.apps, &self.instances);
        self.routes.elected(d.ctx(), token.epoch, current);
    }

    /// Leadership ended: answers waiting for commits fail, the model is dropped, event streams
    /// end (their clients reconnect to the new leader); balancers are told.
    pub fn handle_deposed(&mut self, d: &mut Driver<'_, '_>, why: &str) {
        self.touch(d);
        tracing::warn!(%why, waiting = self.answers.len(), "marathon deposed: standing by");
        for waiting in std::mem::take(&mut self.answers.queue) {
            let _ = waiting.reply.send(leadership_lost());
        }
        self.role = Role::Standby;
        self.leader = None;
        self.drop_model();
        self.events.disconnect_all();
        self.routes.deposed(d.ctx(), None);
    }

    /// A state write committed (and every one before it): the answers and the route changes
    /// that waited for it go.
    pub fn handle_committed(&mut self, d: &mut Driver<'_, '_>, write: WriteId) {
        if let Some(routes) = self.routes_waiting.release(write) {
            self.routes.flush(d.ctx(), routes);
        }
        while self.answers.queue.front().is_some_and(|w| w.after <= write) {
            let waiting = self.answers.queue.pop_front().expect("front exists");
            // The client may have gone: nothing to do then.
            let _ = waiting.reply.send(waiting.response);
        }
    }

    /// Another instance leads now (or none: `None`).
    pub fn handle_leader_changed(&mut self, d: &mut Driver<'_, '_>, leader: Option<&str>) {
        if self.role == Role::Standby {
            self.leader = leader.map(str::to_string);
            self.routes.leader_changed(d.ctx(), leader);
        }
    }

    /// Forgets everything derived from the state (a standby keeps no model).
    fn drop_model(&mut self) {
        self.apps.clear();
        self.instances.clear();
        self.deployments.clear();
        self.next_deployment_sequence = 0;
        self.backoffs.clear();
        self.queue_since.clear();
        self.offer_stats.clear();
        self.last_failures.clear();
        self.slaves.clear();
        self.suppressed = false;
        self.last_demand = 0;
        self.readiness_in_flight.clear();
        self.routes_waiting.clear();
        self.pending_ops.clear();
        self.pending_acks.clear();
    }
}

/// Writes `ops` to the replicated state. `Err(None)`: leadership is ending (nothing more may
/// be done; the deposition follows); `Err(Some(why))`: the state cannot take them.
fn write_replicated(
    d: &mut Driver<'_, '_>,
    layout: &mut StateLayout,
    ops: &[StoreOp],
) -> Result<(), Option<String>> {
    if !d.is_leading() {
        return Err(None);
    }
    let writes = layout.translate(ops).map_err(|r| Some(r.message))?;
    for write in writes {
        match d.write(write) {
            Ok(_) => {}
            Err(StateError::NotLoaded | StateError::Deposed | StateError::Failed { .. }) => {
                return Err(None)
            }
            Err(e) => return Err(Some(format!("replicated state: {e}"))),
        }
    }
    Ok(())
}
