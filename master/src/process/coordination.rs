//! The coordination service as the leading master serves it (see [`crate::coord`] for the
//! store and the protocol).
//!
//! Every master applies coordination commands through its replica; this part drains what the
//! applies produce (watch events into the [`WatchHub`], lease grants and ends into the
//! [`LeaseClock`]) and, on the leader, answers clients, keeps leases alive, expires the ones
//! whose time ran out (proposing the expiry through the log), and sends watch events.

use std::collections::BTreeMap;
use std::time::Duration;

use plateau_replica::{Committed, ProposeError, Replica, Ticket};
use plateau_runtime::{Context, Message, TimerId, Upid};
use serde::{Deserialize, Serialize};

use crate::coord::{
    CoordCommand, CoordError, CoordOp, CoordOutcome, CoordRequestMessage, CoordResponse,
    CoordResponseMessage, KeepAliveOutcome, LeaderHint, LeaseClock, LeaseKeepAliveMessage,
    LeaseKeepAliveResponseMessage, RequestStamp, UnwatchMessage, WatchEnd, WatchEndedMessage,
    WatchEventsMessage, WatchHub, WatchMessage, WatchOutput,
};
use crate::limits::COORD_LEASE_GRACE;
use crate::replicated::{MasterCommand, MasterState};

/// Timer: leases may be due to expire.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LeaseExpiryTimer;
impl Message for LeaseExpiryTimer {
    const NAME: &'static str = "plateau.master.LeaseExpiryTimer";
}

/// What a coordination proposal is waiting to do once decided.
enum Waiting {
    /// Answer a client.
    Client { to: Upid, request_id: u64 },
    /// An expiry the leader decided: nothing to answer.
    Expiry,
}

/// The leader's side of the coordination service, and the watch history every master keeps.
pub(crate) struct CoordServer {
    hub: WatchHub<Upid>,
    clock: LeaseClock,
    waiting: BTreeMap<Ticket, Waiting>,
    timer: Option<(Duration, TimerId)>,
    restores_seen: u64,
    leading: bool,
}

impl CoordServer {
    pub(crate) fn new() -> Self {
        CoordServer {
            hub: WatchHub::new(0),
            clock: LeaseClock::new(),
            waiting: BTreeMap::new(),
            timer: None,
            restores_seen: 0,
            leading: false,
        }
    }

    /// A request from a client: refused at once if this master does not lead or the op is
    /// not allowed; otherwise proposed, answered when decided.
    pub(crate) fn handle_request(
        &mut self,
        ctx: &mut Context<'_>,
        replica: &mut Replica<MasterState>,
        hint: Option<LeaderHint>,
        from: &Upid,
        msg: CoordRequestMessage,
    ) {
        let answer = |ctx: &mut Context<'_>, outcome| {
            ctx.send(
                from,
                CoordResponseMessage {
                    request_id: msg.request_id,
                    outcome,
                },
            )
        };
        if let Some(hint) = hint {
            answer(ctx, CoordOutcome::NotLeader(hint));
            return;
        }
        if msg.op.is_leader_only() {
            answer(ctx, CoordOutcome::Done(Err(CoordError::LeaderOnly)));
            return;
        }
        if let Err(e) = msg.op.validate() {
            answer(ctx, CoordOutcome::Done(Err(e)));
            return;
        }
        let command = CoordCommand {
            stamp: msg.client.map(|client| RequestStamp {
                client,
                request_id: msg.request_id,
                first_unanswered: msg.first_unanswered,
            }),
            op: msg.op,
        };
        let ticket = replica.propose(ctx, MasterCommand::Coord(command).encode());
        self.waiting.insert(
            ticket,
            Waiting::Client {
                to: from.clone(),
                request_id: msg.request_id,
            },
        );
    }

    /// A keep-alive: extended on the leader's clock.
    pub(crate) fn handle_keep_alive(
        &mut self,
        ctx: &mut Context<'_>,
        hint: Option<LeaderHint>,
        from: &Upid,
        msg: LeaseKeepAliveMessage,
    ) {
        let outcome = match hint {
            Some(hint) => KeepAliveOutcome::NotLeader(hint),
            None => match self
                .clock
                .handle_keep_alive(ctx.now().since_origin(), msg.lease)
            {
                Ok(ttl) => KeepAliveOutcome::Alive {
                    ttl_ms: ttl.as_millis() as u64,
                },
                Err(e) => KeepAliveOutcome::Refused(e),
            },
        };
        ctx.send(
            from,
            LeaseKeepAliveResponseMessage {
                lease: msg.lease,
                outcome,
            },
        );
    }

    pub(crate) fn handle_watch(
        &mut self,
        ctx: &mut Context<'_>,
        hint: Option<LeaderHint>,
        from: &Upid,
        msg: WatchMessage,
    ) {
        if let Some(hint) = hint {
            ctx.send(
                from,
                WatchEndedMessage {
                    watch_id: msg.watch_id,
                    reason: WatchEnd::NotLeader(hint),
                },
            );
            return;
        }
        match self
            .hub
            .handle_watch(from.clone(), msg.watch_id, msg.selector, msg.start_revision)
        {
            Ok(outputs) => send_outputs(ctx, outputs),
            Err(e) => ctx.send(
                from,
                WatchEndedMessage {
                    watch_id: msg.watch_id,
                    reason: WatchEnd::Refused(e),
                },
            ),
        }
    }

    pub(crate) fn handle_unwatch(&mut self, from: &Upid, msg: UnwatchMessage) {
        self.hub.handle_unwatch(from, msg.watch_id);
    }

    /// A decided proposal: true if it was a coordination one.
    pub(crate) fn handle_outcome(
        &mut self,
        ctx: &mut Context<'_>,
        ticket: Ticket,
        outcome: &Result<Committed, ProposeError>,
    ) -> bool {
        let Some(waiting) = self.waiting.remove(&ticket) else {
            return false;
        };
        if let Waiting::Client { to, request_id } = waiting {
            let outcome = match outcome {
                Ok(committed) => match postcard::from_bytes::<CoordResponse>(&committed.answer) {
                    Ok(response) => CoordOutcome::Done(response),
                    Err(e) => {
                        tracing::error!(error = %e, "coordination answer does not decode");
                        return true;
                    }
                },
                // Not committed by this leader: the client retries wherever the leader is.
                Err(_) => CoordOutcome::NotLeader(LeaderHint {
                    leader: None,
                    term: 0,
                }),
            };
            ctx.send(
                &to,
                CoordResponseMessage {
                    request_id,
                    outcome,
                },
            );
        }
        true
    }

    /// After the replica applied entries (every master): feed the hub and the clock with
    /// what the store produced, and send watch events when leading.
    pub(crate) fn after_apply(&mut self, ctx: &mut Context<'_>, replica: &Replica<MasterState>) {
        let now = ctx.now().since_origin();
        let restores_seen = self.restores_seen;
        let (drained, changes, revision, restores, ttls) = replica.with_state(|s| {
            let drained = s.coord.drain_events();
            let changes = s.coord.drain_lease_changes();
            let ttls: Vec<_> = if changes.lost || s.restores != restores_seen {
                s.coord.lease_ttls().collect()
            } else {
                Vec::new()
            };
            (drained, changes, s.coord.revision(), s.restores, ttls)
        });
        let mut outputs = Vec::new();
        if restores != self.restores_seen {
            self.restores_seen = restores;
            outputs.extend(self.hub.reset(revision));
            if self.leading {
                self.clock.resync(now, ttls.iter().copied());
            }
        } else {
            if !drained.events.is_empty() || drained.lost_through.is_some() {
                outputs.extend(self.hub.handle_applied(drained, revision));
            }
            if self.leading && (!changes.changes.is_empty() || changes.lost) {
                self.clock
                    .handle_changes(now, &changes, ttls.iter().copied());
            }
        }
        if self.leading {
            send_outputs(ctx, outputs);
            self.schedule(ctx);
        }
    }

    /// This master now leads: every live lease gets a grace before it can expire.
    pub(crate) fn become_leader(&mut self, ctx: &mut Context<'_>, replica: &Replica<MasterState>) {
        let now = ctx.now().since_origin();
        let ttls: Vec<_> = replica.with_state(|s| {
            // Changes applied before this term were the old leader's business.
            s.coord.drain_lease_changes();
            s.coord.lease_ttls().collect()
        });
        self.clock.on_become_leader(now, COORD_LEASE_GRACE, ttls);
        self.leading = true;
        self.schedule(ctx);
    }

    /// This master no longer leads: watches end (their sessions watch anew at the leader),
    /// the clock and the pending answers are forgotten.
    pub(crate) fn step_down(&mut self, ctx: &mut Context<'_>, hint: LeaderHint) {
        if !self.leading {
            return;
        }
        self.leading = false;
        self.clock.clear();
        self.waiting.clear();
        for (session, watch_id) in self.hub.drop_all() {
            ctx.send(
                &session,
                WatchEndedMessage {
                    watch_id,
                    reason: WatchEnd::NotLeader(hint.clone()),
                },
            );
        }
        if let Some((_, timer)) = self.timer.take() {
            ctx.cancel(timer);
        }
    }

    /// The expiry timer fired: propose the expiry of the leases whose time ran out.
    pub(crate) fn handle_timer(
        &mut self,
        ctx: &mut Context<'_>,
        replica: &mut Replica<MasterState>,
    ) {
        self.timer = None;
        if !self.leading {
            return;
        }
        let due = self.clock.due(ctx.now().since_origin());
        if !due.is_empty() {
            tracing::info!(leases = ?due, "expiring coordination leases");
            let command = CoordCommand {
                stamp: None,
                op: CoordOp::ExpireLeases { leases: due },
            };
            let ticket = replica.propose(ctx, MasterCommand::Coord(command).encode());
            self.waiting.insert(ticket, Waiting::Expiry);
        }
        self.schedule(ctx);
    }

    fn schedule(&mut self, ctx: &mut Context<'_>) {
        let Some(at) = self.clock.poll_timeout() else {
            return;
        };
        if self.timer.is_some_and(|(set, _)| set <= at) {
            return;
        }
        if let Some((_, timer)) = self.timer.take() {
            ctx.cancel(timer);
        }
        let now = ctx.now().since_origin();
        let timer = ctx.delay(at.saturating_sub(now), LeaseExpiryTimer);
        self.timer = Some((at, timer));
    }

    /// Live watches (for tests and metrics).
    pub(crate) fn watches(&self) -> usize {
        self.hub.len()
    }
}

fn send_outputs(ctx: &mut Context<'_>, outputs: Vec<WatchOutput<Upid>>) {
    for output in outputs {
        match output {
            WatchOutput::Events {
                session,
                watch_id,
                seq,
                events,
            } => ctx.send(
                &session,
                WatchEventsMessage {
                    watch_id,
                    seq,
                    events,
                },
            ),
            WatchOutput::Ended {
                session,
                watch_id,
                reason,
            } => ctx.send(
                &session,
                WatchEndedMessage {
                    watch_id,
                    reason: WatchEnd::Hub(reason),
                },
            ),
        }
    }
}
