//! Unit tests of the coordination client, the election and the replicated state, driven with a
//! fake `now` against fake masters made of the masters' own pure parts (the store, the lease
//! clock, the watch hub): messages are delivered at once, or dropped when a test says so.

use std::time::Duration;

use plateau_master::coord::{
    ClientId, CoordCommand, CoordError, CoordOp, CoordOutcome, CoordReply, CoordResponse,
    CoordResponseMessage, CoordStore, Expect, KeepAliveOutcome, KeySelector, LeaderHint,
    LeaseClock, LeaseKeepAliveResponseMessage, RequestStamp, TxnOp, WatchEnd, WatchEndedMessage,
    WatchEventsMessage, WatchHub, WatchOutput,
};
use plateau_master::detector::Masters;
use plateau_master::limits::{COORD_LEASE_GRACE, COORD_TXN_OPS_MAX, COORD_VALUE_BYTES_MAX};
use plateau_master::messages::NewMasterDetectedMessage;
use plateau_runtime::Upid;

use super::*;
use crate::limits::{
    COORD_REQUESTS_IN_FLIGHT_MAX, COORD_REQUEST_DEADLINE, COORD_WATCH_REFRESH_INTERVAL,
    STATE_LOAD_PAGE_KEYS,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn master(i: usize) -> Upid {
    format!("master@10.0.0.{}:5050", i + 1).parse().unwrap()
}

fn client_upid(i: usize) -> Upid {
    format!("framework@10.1.0.{}:8080", i + 1).parse().unwrap()
}

/// What a fake master sends a client.
#[derive(Debug, Clone)]
enum Incoming {
    Response(CoordResponseMessage),
    KeepAlive(LeaseKeepAliveResponseMessage),
    Events(WatchEventsMessage),
    Ended(WatchEndedMessage),
    Detected(NewMasterDetectedMessage),
}

/// A group of masters with one store: one of them leads, the others redirect to it.
struct FakeMasters {
    masters: Vec<Upid>,
    leader: usize,
    term: u64,
    store: CoordStore,
    clock: LeaseClock,
    hub: WatchHub<Upid>,
    /// Messages to deliver: (to client, from master, message).
    out: Vec<(Upid, Upid, Incoming)>,
    /// Every command applied, with its revision (to count applies).
    applied: Vec<(u64, CoordOp)>,
}

impl FakeMasters {
    fn new(n: usize) -> Self {
        let mut clock = LeaseClock::new();
        clock.on_become_leader(Duration::ZERO, COORD_LEASE_GRACE, []);
        FakeMasters {
            masters: (0..n).map(master).collect(),
            leader: 0,
            term: 1,
            store: CoordStore::new(),
            clock,
            hub: WatchHub::new(0),
            out: Vec::new(),
            applied: Vec::new(),
        }
    }

    fn masters(&self) -> Masters {
        Masters::new(self.masters.clone()).unwrap()
    }

    fn hint(&self) -> LeaderHint {
        LeaderHint {
            leader: Some(self.masters[self.leader].clone()),
            term: self.term,
        }
    }

    fn send(&mut self, to: &Upid, from: &Upid, message: Incoming) {
        self.out.push((to.clone(), from.clone(), message));
    }

    fn apply(&mut self, now: Duration, command: CoordCommand) -> CoordResponse {
        let revision = self.store.revision() + 1;
        self.applied.push((revision, command.op.clone()));
        let response = self.store.apply_command(revision, &command);
        let drained = self.store.drain_events();
        let changes = self.store.drain_lease_changes();
        let ttls: Vec<_> = self.store.lease_ttls().collect();
        self.clock.handle_changes(now, &changes, ttls);
        let outputs = self.hub.handle_applied(drained, self.store.revision());
        self.send_outputs(outputs);
        response
    }

    fn send_outputs(&mut self, outputs: Vec<WatchOutput<Upid>>) {
        let from = self.masters[self.leader].clone();
        for output in outputs {
            match output {
                WatchOutput::Events {
                    session,
                    watch_id,
                    seq,
                    events,
                } => self.send(
                    &session,
                    &from,
                    Incoming::Events(WatchEventsMessage {
                        watch_id,
                        seq,
                        events,
                    }),
                ),
                WatchOutput::Ended {
                    session,
                    watch_id,
                    reason,
                } => self.send(
                    &session,
                    &from,
                    Incoming::Ended(WatchEndedMessage {
                        watch_id,
                        reason: WatchEnd::Hub(reason),
                    }),
                ),
            }
        }
    }

    /// A message from client `from` to master `to`.
    fn receive(&mut self, now: Duration, from: &Upid, to: &Upid, message: Outgoing) {
        let index = self.masters.iter().position(|m| m == to).unwrap();
        let leads = index == self.leader;
        match message {
            Outgoing::LeaderQuery(_) => {
                let news = NewMasterDetectedMessage {
                    leader: Some(self.masters[self.leader].clone()),
                    term: self.term,
                };
                self.send(from, to, Incoming::Detected(news));
            }
            Outgoing::Request(request) if !leads => {
                let response = CoordResponseMessage {
                    request_id: request.request_id,
                    outcome: CoordOutcome::NotLeader(self.hint()),
                };
                self.send(from, to, Incoming::Response(response));
            }
            Outgoing::Request(request) => {
                let stamp = request.client.map(|client| RequestStamp {
                    client,
                    request_id: request.request_id,
                    first_unanswered: request.first_unanswered,
                });
                let outcome = if let Err(e) = request.op.validate() {
                    Err(e)
                } else {
                    self.apply(
                        now,
                        CoordCommand {
                            stamp,
                            op: request.op,
                        },
                    )
                };
                let response = CoordResponseMessage {
                    request_id: request.request_id,
                    outcome: CoordOutcome::Done(outcome),
                };
                self.send(from, to, Incoming::Response(response));
            }
            Outgoing::KeepAlive(keep_alive) => {
                let outcome = if !leads {
                    KeepAliveOutcome::NotLeader(self.hint())
                } else {
                    match self.clock.handle_keep_alive(now, keep_alive.lease) {
                        Ok(ttl) => KeepAliveOutcome::Alive {
                            ttl_ms: ttl.as_millis() as u64,
                        },
                        Err(e) => KeepAliveOutcome::Refused(e),
                    }
                };
                let response = LeaseKeepAliveResponseMessage {
                    lease: keep_alive.lease,
                    outcome,
                };
                self.send(from, to, Incoming::KeepAlive(response));
            }
            Outgoing::Watch(watch) if !leads => {
                let ended = WatchEndedMessage {
                    watch_id: watch.watch_id,
                    reason: WatchEnd::NotLeader(self.hint()),
                };
                self.send(from, to, Incoming::Ended(ended));
            }
            Outgoing::Watch(watch) => {
                match self.hub.handle_watch(
                    from.clone(),
                    watch.watch_id,
                    watch.selector,
                    watch.start_revision,
                ) {
                    Ok(outputs) => self.send_outputs(outputs),
                    Err(e) => {
                        let ended = WatchEndedMessage {
                            watch_id: watch.watch_id,
                            reason: WatchEnd::Refused(e),
                        };
                        self.send(from, to, Incoming::Ended(ended));
                    }
                }
            }
            Outgoing::Unwatch(unwatch) => {
                if leads {
                    self.hub.handle_unwatch(from, unwatch.watch_id);
                }
            }
        }
    }

    /// Applies `op` as the leader's own (unstamped); it must succeed.
    fn admin(&mut self, now: Duration, op: CoordOp) -> CoordReply {
        self.apply(now, CoordCommand { stamp: None, op }).unwrap()
    }

    /// The leader's expiry timer.
    fn expire(&mut self, now: Duration) {
        let due = self.clock.due(now);
        if !due.is_empty() {
            self.admin(now, CoordOp::ExpireLeases { leases: due });
        }
    }

    /// The leader crashed; `to` leads in a new term (its clock grants every lease a grace).
    fn fail_over(&mut self, now: Duration, to: usize) {
        self.leader = to;
        self.term += 1;
        let ttls: Vec<_> = self.store.lease_ttls().collect();
        self.clock.on_become_leader(now, COORD_LEASE_GRACE, ttls);
        // The new leader has the history but no watches.
        self.hub.drop_all();
    }
}

/// A pure endpoint driven by the world.
trait Endpoint {
    type Event;
    fn poll_transmit(&mut self) -> Option<Transmit>;
    fn poll_event(&mut self) -> Option<Self::Event>;
    fn poll_timeout(&self) -> Option<Duration>;
    fn handle_timeout(&mut self, now: Duration);
    fn deliver(&mut self, now: Duration, from: &Upid, message: Incoming);
}

impl Endpoint for CoordClient {
    type Event = ClientEvent;
    fn poll_transmit(&mut self) -> Option<Transmit> {
        CoordClient::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<ClientEvent> {
        CoordClient::poll_event(self)
    }
    fn poll_timeout(&self) -> Option<Duration> {
        CoordClient::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Duration) {
        CoordClient::handle_timeout(self, now)
    }
    fn deliver(&mut self, now: Duration, from: &Upid, message: Incoming) {
        match message {
            Incoming::Response(m) => self.handle_response(now, from, m),
            Incoming::KeepAlive(m) => self.handle_keep_alive_response(now, from, m),
            Incoming::Events(m) => self.handle_watch_events(now, from, m),
            Incoming::Ended(m) => self.handle_watch_ended(now, from, m),
            Incoming::Detected(m) => self.handle_new_master_detected(now, from, &m),
        }
    }
}

impl Endpoint for Coordination {
    type Event = CoordinationEvent;
    fn poll_transmit(&mut self) -> Option<Transmit> {
        Coordination::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<CoordinationEvent> {
        Coordination::poll_event(self)
    }
    fn poll_timeout(&self) -> Option<Duration> {
        Coordination::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Duration) {
        Coordination::handle_timeout(self, now)
    }
    fn deliver(&mut self, now: Duration, from: &Upid, message: Incoming) {
        match message {
            Incoming::Response(m) => self.handle_response(now, from, m),
            Incoming::KeepAlive(m) => self.handle_keep_alive_response(now, from, m),
            Incoming::Events(m) => self.handle_watch_events(now, from, m),
            Incoming::Ended(m) => self.handle_watch_ended(now, from, m),
            Incoming::Detected(m) => self.handle_new_master_detected(now, from, &m),
        }
    }
}

/// Decides whether a message from endpoint `i` is dropped.
type DropOut = Box<dyn FnMut(usize, &Transmit) -> bool>;
/// Decides whether a message to endpoint `i` is dropped.
type DropIn = Box<dyn FnMut(usize, &Incoming) -> bool>;
/// Acts on the masters just before they receive a message.
type Intercept = Box<dyn FnMut(Duration, &mut FakeMasters, &Transmit)>;

/// Fake masters and endpoints on a fake clock; messages are delivered at once unless a
/// filter drops them.
struct World<E: Endpoint> {
    now: Duration,
    masters: FakeMasters,
    endpoints: Vec<E>,
    /// Events, with when and by which endpoint.
    events: Vec<(Duration, usize, E::Event)>,
    /// Drops a message from endpoint i to a master (true: dropped).
    drop_out: DropOut,
    /// Drops a message from a master to endpoint i.
    drop_in: DropIn,
    /// Endpoints cut off from every master (both ways).
    isolated: Vec<bool>,
    intercept: Option<Intercept>,
    /// Sends from endpoints, (i, to, message) (for assertions).
    sent: Vec<(usize, Transmit)>,
}

impl<E: Endpoint> World<E> {
    fn new(masters: FakeMasters, endpoints: Vec<E>) -> Self {
        let n = endpoints.len();
        World {
            now: Duration::ZERO,
            masters,
            endpoints,
            events: Vec::new(),
            drop_out: Box::new(|_, _| false),
            drop_in: Box::new(|_, _| false),
            isolated: vec![false; n],
            intercept: None,
            sent: Vec::new(),
        }
    }

    /// Delivers every message in flight, in both directions, until none is left.
    fn exchange(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.endpoints.len() {
                while let Some(t) = self.endpoints[i].poll_transmit() {
                    moved = true;
                    self.sent.push((i, t.clone()));
                    if self.isolated[i] || (self.drop_out)(i, &t) {
                        continue;
                    }
                    if let Some(intercept) = &mut self.intercept {
                        intercept(self.now, &mut self.masters, &t);
                    }
                    self.masters
                        .receive(self.now, &client_upid(i), &t.to, t.message);
                }
                while let Some(e) = self.endpoints[i].poll_event() {
                    self.events.push((self.now, i, e));
                }
            }
            for (to, from, message) in std::mem::take(&mut self.masters.out) {
                moved = true;
                let i = (0..self.endpoints.len())
                    .find(|&i| client_upid(i) == to)
                    .unwrap();
                if self.isolated[i] || (self.drop_in)(i, &message) {
                    continue;
                }
                self.endpoints[i].deliver(self.now, &from, message);
            }
            if !moved {
                return;
            }
        }
    }

    /// Runs to `until`: messages at once, timeouts and the masters' expiries when due.
    fn run_until(&mut self, until: Duration) {
        self.exchange();
        loop {
            let next = self
                .endpoints
                .iter()
                .filter_map(|e| e.poll_timeout())
                .chain(self.masters.clock.poll_timeout())
                .min();
            match next {
                Some(at) if at <= until => {
                    self.now = self.now.max(at);
                    self.masters.expire(self.now);
                    for e in &mut self.endpoints {
                        if e.poll_timeout().is_some_and(|t| t <= self.now) {
                            e.handle_timeout(self.now);
                        }
                    }
                    self.exchange();
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
        self.exchange();
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    fn take_events(&mut self) -> Vec<(Duration, usize, E::Event)> {
        std::mem::take(&mut self.events)
    }
}

fn client(masters: &FakeMasters, i: usize) -> CoordClient {
    CoordClient::new(CoordClientConfig {
        masters: masters.masters(),
        label: format!("client-{i}"),
        seed: i as u64,
    })
}

fn answers(
    events: &[(Duration, usize, ClientEvent)],
) -> Vec<(RequestId, Result<CoordReply, RequestError>)> {
    events
        .iter()
        .filter_map(|(_, _, e)| match e {
            ClientEvent::Answered { request, outcome } => Some((*request, outcome.clone())),
            _ => None,
        })
        .collect()
}

fn put(key: &str, value: &str) -> CoordOp {
    CoordOp::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        expect: Expect::Any,
        lease: None,
    }
}

// ---- the client: requests ---------------------------------------------------------------------

#[test]
fn requests_find_the_leader_register_and_are_stamped() {
    let masters = FakeMasters::new(3);
    let c = client(&masters, 0);
    let mut w = World::new(masters, vec![c]);
    let now = w.now;
    let a = w.endpoints[0].request(now, put("a", "1")).unwrap();
    let b = w.endpoints[0]
        .request(now, CoordOp::Get { key: "a".into() })
        .unwrap();
    w.run_for(ms(10));
    let got = answers(&w.take_events());
    assert_eq!(got.len(), 2);
    assert!(matches!(got[0], (id, Ok(CoordReply::Put { .. })) if id == a));
    let (
        id,
        Ok(CoordReply::Value {
            entry: Some(entry), ..
        }),
    ) = &got[1]
    else {
        panic!("{got:?}")
    };
    assert_eq!((*id, entry.value.as_slice()), (b, &b"1"[..]));
    // Leader queries went to all three; the requests only to the leader, after registering.
    let requests: Vec<(Upid, CoordOp, Option<ClientId>)> = w
        .sent
        .iter()
        .filter_map(|(_, t)| match &t.message {
            Outgoing::Request(r) => Some((t.to.clone(), r.op.clone(), r.client)),
            _ => None,
        })
        .collect();
    assert!(matches!(requests[0].1, CoordOp::RegisterClient { .. }));
    assert_eq!(requests[0].2, None);
    assert!(requests.iter().all(|(to, _, _)| *to == master(0)));
    assert!(requests[1..].iter().all(|(_, _, c)| c.is_some()));
    assert_eq!(w.endpoints[0].requests_pending(), 0);
}

#[test]
fn a_write_whose_answer_is_lost_is_retried_and_applied_once() {
    let masters = FakeMasters::new(3);
    let c = client(&masters, 0);
    let mut w = World::new(masters, vec![c]);
    w.run_for(ms(10));
    // Lose the first two answers to the put.
    let mut lost = 0;
    w.drop_in = Box::new(move |_, m| {
        if let Incoming::Response(r) = m {
            if matches!(r.outcome, CoordOutcome::Done(Ok(CoordReply::Put { .. }))) && lost < 2 {
                lost += 1;
                return true;
            }
        }
        false
    });
    let now = w.now;
    let id = w.endpoints[0].request(now, put("k", "v")).unwrap();
    w.run_for(secs(5));
    let got = answers(&w.take_events());
    assert_eq!(got.len(), 1);
    assert!(matches!(got[0], (i, Ok(CoordReply::Put { .. })) if i == id));
    let puts: Vec<_> = w
        .masters
        .applied
        .iter()
        .filter(|(_, op)| matches!(op, CoordOp::Put { .. }))
        .collect();
    assert_eq!(puts.len(), 3, "three copies reached the log");
    // ... and the store applied the first only: one modification.
    assert_eq!(w.masters.store.get("k").unwrap().mod_revision, puts[0].0);
    // Three sends, all with the same request id.
    let sends = w
        .sent
        .iter()
        .filter(|(_, t)| matches!(&t.message, Outgoing::Request(r) if r.request_id == id.0))
        .count();
    assert_eq!(sends, 3);
}

#[test]
fn a_redirect_is_followed_at_once() {
    let mut masters = FakeMasters::new(3);
    masters.leader = 2;
    let c = client(&masters, 0);
    let mut w = World::new(masters, vec![c]);
    w.run_for(ms(10));
    // The leader moves; the client still follows master 3.
    w.masters.leader = 1;
    w.masters.term += 1;
    let now = w.now;
    let id = w.endpoints[0].request(now, put("k", "v")).unwrap();
    w.run_for(ms(1));
    let got = answers(&w.take_events());
    assert!(matches!(got[..], [(i, Ok(_))] if i == id), "{got:?}");
    assert_eq!(w.endpoints[0].leader(), Some(&master(1)));
}

#[test]
fn a_request_never_answered_is_given_up_and_its_late_copies_never_apply() {
    let masters = FakeMasters::new(1);
    let c = client(&masters, 0);
    let mut w = World::new(masters, vec![c]);
    w.run_for(ms(10));
    // Every copy of the put is lost on its way to the master.
    w.drop_out = Box::new(
        |_, t| matches!(&t.message, Outgoing::Request(r) if matches!(r.op, CoordOp::Put { .. })),
    );
    let now = w.now;
    let id = w.endpoints[0].request(now, put("k", "v")).unwrap();
    w.run_for(COORD_REQUEST_DEADLINE + secs(1));
    let got = answers(&w.take_events());
    assert!(
        matches!(got[..], [(i, Err(RequestError::Unknown { .. }))] if i == id),
        "{got:?}"
    );
    // A late copy, stamped as the client stamped it, is refused once the client moved on.
    let late = w
        .sent
        .iter()
        .rev()
        .find_map(|(_, t)| match &t.message {
            Outgoing::Request(r) if r.request_id == id.0 => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    w.drop_out = Box::new(|_, _| false);
    let now = w.now;
    let next = w.endpoints[0].request(now, put("other", "v")).unwrap();
    w.run_for(ms(10));
    assert!(matches!(answers(&w.take_events())[..], [(i, Ok(_))] if i == next));
    let stamp = RequestStamp {
        client: late.client.unwrap(),
        request_id: late.request_id,
        first_unanswered: late.first_unanswered,
    };
    let answer = w.masters.apply(
        w.now,
        CoordCommand {
            stamp: Some(stamp),
            op: late.op,
        },
    );
    assert!(
        matches!(answer, Err(CoordError::StaleRequest { .. })),
        "{answer:?}"
    );
    assert!(w.masters.store.get("k").is_none());
}

#[test]
fn at_most_a_window_of_requests_is_in_flight() {
    let masters = FakeMasters::new(1);
    let c = client(&masters, 0);
    let mut w = World::new(masters, vec![c]);
    let now = w.now;
    w.endpoints[0].request(now, put("first", "v")).unwrap();
    w.run_for(ms(10));
    w.sent.clear();
    // Nothing is answered.
    w.drop_in = Box::new(|_, m| matches!(m, Incoming::Response(_)));
    let now = w.now;
    for i in 0..50 {
        w.endpoints[0]
            .request(now, put(&format!("k{i}"), "v"))
            .unwrap();
    }
    w.exchange();
    let ids: std::collections::BTreeSet<u64> = w
        .sent
        .iter()
        .filter_map(|(_, t)| match &t.message {
            Outgoing::Request(r) if matches!(r.op, CoordOp::Put { .. }) => Some(r.request_id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len() as u64, COORD_REQUESTS_IN_FLIGHT_MAX);
}

// ---- the client: the session ------------------------------------------------------------------

#[test]
fn a_session_is_kept_alive_every_third_of_its_ttl_and_known_valid_from_send_times() {
    let masters = FakeMasters::new(1);
    let c = client(&masters, 0);
    let mut w = World::new(masters, vec![c]);
    let now = w.now;
    w.endpoints[0].start_session(now, secs(9)).unwrap();
    w.run_for(ms(1));
    let lease = match &w.take_events()[..] {
        [(_, 0, ClientEvent::SessionStarted { lease })] => *lease,
        other => panic!("{other:?}"),
    };
    w.run_for(secs(30));
    let keep_alives = w
        .sent
        .iter()
        .filter(|(_, t)| matches!(t.message, Outgoing::KeepAlive(_)))
        .count();
    // One at once, then every 3 s.
    assert_eq!(keep_alives, 1 + 10);
    let session = w.endpoints[0].session().unwrap();
    assert_eq!(session.lease, lease);
    // The last keep-alive went at 30 s (the first at once, then every 3 s).
    assert_eq!(session.valid_until, secs(30) + secs(9));
    assert!(w.masters.store.lease(lease).is_some());
}

#[test]
fn a_session_whose_keep_alives_go_unanswered_is_lost_at_the_last_confirmed_send_plus_ttl() {
    let masters = FakeMasters::new(1);
    let c = client(&masters, 0);
    let mut w = World::new(masters, vec![c]);
    let now = w.now;
    w.endpoints[0].start_session(now, secs(3)).unwrap();
    w.run_for(secs(2));
    let confirmed = w.endpoints[0].session().unwrap().valid_until;
    w.take_events();
    // From now on no keep-alive answer arrives.
    w.drop_in = Box::new(|_, m| matches!(m, Incoming::KeepAlive(_)));
    w.run_for(secs(10));
    let events = w.take_events();
    let lost: Vec<_> = events
        .iter()
        .filter(|(_, _, e)| {
            matches!(
                e,
                ClientEvent::SessionLost {
                    reason: SessionLost::Unconfirmed,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(lost.len(), 1, "{events:?}");
    assert_eq!(lost[0].0, confirmed);
    assert!(w.endpoints[0].session().is_none());
}

#[test]
fn an_answer_is_credited_to_the_oldest_unanswered_keep_alive() {
    let masters = FakeMasters::new(1);
    let c = client(&masters, 0);
    let mut w = World::new(masters, vec![c]);
    let now = w.now;
    w.endpoints[0].start_session(now, secs(3)).unwrap();
    w.run_for(ms(1));
    let before = w.endpoints[0].session().unwrap().valid_until;
    assert_eq!(before, secs(3));
    // The next keep-alive (at 1 s) is lost on its way; the one after (at 2 s) answered.
    let mut dropped = false;
    w.drop_out = Box::new(move |_, t| {
        if matches!(t.message, Outgoing::KeepAlive(_)) && !dropped {
            dropped = true;
            return true;
        }
        false
    });
    w.run_until(ms(1_500));
    assert_eq!(w.endpoints[0].session().unwrap().valid_until, before);
    w.run_until(ms(2_100));
    // The answer to the 2 s keep-alive counts as from the 1 s one.
    assert_eq!(
        w.endpoints[0].session().unwrap().valid_until,
        secs(1) + secs(3)
    );
    // Two were unanswered when it came: a barrier (a read of the empty key, refused at once)
    // went to the master, and its answer showed the 1 s one lost: the 2 s one is forgotten,
    // and the 3 s answer counts as its own.
    let barriers = w
        .sent
        .iter()
        .filter(|(_, t)| {
            matches!(&t.message, Outgoing::Request(r) if r.op == CoordOp::Get { key: String::new() })
        })
        .count();
    assert_eq!(barriers, 1);
    w.run_until(ms(3_100));
    assert_eq!(
        w.endpoints[0].session().unwrap().valid_until,
        secs(3) + secs(3)
    );
    w.run_until(ms(20_100));
    assert_eq!(
        w.endpoints[0].session().unwrap().valid_until,
        secs(20) + secs(3)
    );
}

#[test]
fn a_refused_keep_alive_loses_the_session() {
    let masters = FakeMasters::new(1);
    let c = client(&masters, 0);
    let mut w = World::new(masters, vec![c]);
    let now = w.now;
    w.endpoints[0].start_session(now, secs(3)).unwrap();
    w.run_for(ms(1));
    let lease = w.endpoints[0].session().unwrap().lease;
    w.take_events();
    let now = w.now;
    w.masters.admin(now, CoordOp::RevokeLease { lease });
    w.run_for(secs(2));
    let events = w.take_events();
    assert!(
        matches!(
            &events[..],
            [(
                _,
                0,
                ClientEvent::SessionLost {
                    reason: SessionLost::Refused(CoordError::UnknownLease { .. }),
                    ..
                }
            )]
        ),
        "{events:?}"
    );
}

#[test]
fn a_session_survives_a_master_failover_within_the_grace() {
    let masters = FakeMasters::new(3);
    let c = client(&masters, 0);
    let mut w = World::new(masters, vec![c]);
    let now = w.now;
    w.endpoints[0].start_session(now, secs(6)).unwrap();
    w.run_for(secs(3));
    // The leader dies: nothing reaches master 1 until master 2 is elected, 2 s later.
    w.drop_out = Box::new(|_, t| t.to == master(0));
    w.run_for(secs(2));
    let now = w.now;
    w.masters.fail_over(now, 1);
    w.run_for(secs(20));
    let events = w.take_events();
    assert!(
        !events
            .iter()
            .any(|(_, _, e)| matches!(e, ClientEvent::SessionLost { .. })),
        "{events:?}"
    );
    assert_eq!(w.endpoints[0].leader(), Some(&master(1)));
    assert!(w.endpoints[0].session().unwrap().valid_until > w.now);
}

// ---- the client: watches ----------------------------------------------------------------------

fn watch_events(events: &[(Duration, usize, ClientEvent)]) -> Vec<(u64, String)> {
    events
        .iter()
        .flat_map(|(_, _, e)| match e {
            ClientEvent::WatchEvents { events, .. } => {
                events.iter().map(|e| (e.revision, e.key.clone())).collect()
            }
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn a_watch_resumes_after_a_failover_without_losing_or_repeating_events() {
    let masters = FakeMasters::new(3);
    let c = client(&masters, 0);
    let mut w = World::new(masters, vec![c]);
    let now = w.now;
    w.endpoints[0]
        .watch(now, KeySelector::Prefix("p/".into()), 1)
        .unwrap();
    w.run_for(ms(10));
    for i in 0..3 {
        let now = w.now;
        w.masters.admin(now, put(&format!("p/{i}"), "v"));
    }
    w.run_for(ms(10));
    // The leader dies with two more writes the watch never heard of.
    w.drop_in = Box::new(|_, m| matches!(m, Incoming::Events(_)));
    for i in 3..5 {
        let now = w.now;
        w.masters.admin(now, put(&format!("p/{i}"), "v"));
    }
    w.drop_in = Box::new(|_, _| false);
    let now = w.now;
    w.masters.fail_over(now, 2);
    let now = w.now;
    w.masters.admin(now, put("p/5", "v"));
    // The watch learns of the new leader at its next refresh (no confirmation), or sooner.
    w.run_for(COORD_WATCH_REFRESH_INTERVAL + secs(3));
    let seen = watch_events(&w.take_events());
    let keys: Vec<&str> = seen.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(keys, ["p/0", "p/1", "p/2", "p/3", "p/4", "p/5"]);
    let registered_at = w
        .sent
        .iter()
        .rev()
        .find_map(|(_, t)| matches!(t.message, Outgoing::Watch(_)).then_some(t.to.clone()));
    assert_eq!(registered_at, Some(master(2)));
}

#[test]
fn a_lost_last_notification_is_found_by_the_refresh_and_a_gap_by_the_next_one() {
    let masters = FakeMasters::new(1);
    let c = client(&masters, 0);
    let mut w = World::new(masters, vec![c]);
    let now = w.now;
    w.endpoints[0]
        .watch(now, KeySelector::Key("k".into()), 1)
        .unwrap();
    w.run_for(ms(10));
    let mut lose = 1;
    w.drop_in = Box::new(move |_, m| {
        if matches!(m, Incoming::Events(e) if e.seq > 0) && lose > 0 {
            lose -= 1;
            return true;
        }
        false
    });
    let now = w.now;
    w.masters.admin(now, put("k", "1"));
    w.run_for(ms(10));
    assert!(watch_events(&w.take_events()).is_empty(), "lost");
    w.run_for(COORD_WATCH_REFRESH_INTERVAL);
    assert_eq!(
        watch_events(&w.take_events()).len(),
        1,
        "found by the refresh"
    );
    // A gap: one notification lost, the next one shows it.
    let mut lose = 1;
    w.drop_in = Box::new(move |_, m| {
        if matches!(m, Incoming::Events(e) if e.seq > 0) && lose > 0 {
            lose -= 1;
            return true;
        }
        false
    });
    for v in ["2", "3"] {
        let now = w.now;
        w.masters.admin(now, put("k", v));
        w.exchange();
    }
    w.run_for(ms(10));
    let revisions: Vec<u64> = watch_events(&w.take_events())
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(revisions.len(), 2, "{revisions:?}");
    assert!(revisions[0] < revisions[1]);
}

#[test]
fn a_watch_from_a_compacted_revision_is_lost() {
    let masters = FakeMasters::new(1);
    let c = client(&masters, 0);
    let mut w = World::new(masters, vec![c]);
    for i in 0..6 {
        let now = w.now;
        w.masters.admin(now, put(&format!("x{i}"), "v"));
    }
    // The master's history starts after revision 6.
    w.masters.hub = WatchHub::new(6);
    let now = w.now;
    let id = w.endpoints[0]
        .watch(now, KeySelector::Prefix(String::new()), 2)
        .unwrap();
    w.run_for(ms(10));
    let events = w.take_events();
    assert!(
        matches!(
            &events[..],
            [(_, 0, ClientEvent::WatchLost { watch, reason: WatchLost::Compacted { oldest_revision: 7 } })] if *watch == id
        ),
        "{events:?}"
    );
    assert_eq!(w.endpoints[0].watches(), 0);
}

// ---- the election -----------------------------------------------------------------------------

fn candidate(masters: &FakeMasters, i: usize, ttl: Duration) -> Coordination {
    Coordination::new(
        CoordClientConfig {
            masters: masters.masters(),
            label: format!("candidate-{i}"),
            seed: i as u64,
        },
        ElectionConfig::new("/fw/leader", format!("10.1.0.{}:8080", i + 1)).with_ttl(ttl),
        "/fw/state/".into(),
    )
}

fn leading_at(w: &World<Coordination>) -> Vec<usize> {
    (0..w.endpoints.len())
        .filter(|&i| w.endpoints[i].is_leading(w.now))
        .collect()
}

/// Runs `d` in 10 ms steps, asserting that at most one candidate leads at every step.
fn run_checked(w: &mut World<Coordination>, d: Duration) {
    let until = w.now + d;
    while w.now < until {
        w.run_for(ms(10));
        let leading = leading_at(w);
        assert!(
            leading.len() <= 1,
            "two leaders at {:?}: {leading:?}",
            w.now
        );
    }
}

#[test]
fn one_of_two_candidates_leads_and_the_other_follows_it() {
    let masters = FakeMasters::new(3);
    let a = candidate(&masters, 0, secs(6));
    let b = candidate(&masters, 1, secs(6));
    let mut w = World::new(masters, vec![a, b]);
    let now = w.now;
    w.endpoints[0].campaign(now);
    w.endpoints[1].campaign(now);
    run_checked(&mut w, secs(20));
    assert_eq!(leading_at(&w), vec![0]);
    let events = w.take_events();
    let leading: Vec<(usize, u64)> = events
        .iter()
        .filter_map(|(_, i, e)| match e {
            CoordinationEvent::Leading { token } => Some((*i, token.epoch)),
            _ => None,
        })
        .collect();
    assert_eq!(leading.len(), 1);
    assert_eq!(
        w.masters
            .store
            .fencing()
            .holder("/fw/leader")
            .unwrap()
            .epoch,
        leading[0].1
    );
    // The standby knows where the leader is.
    assert_eq!(
        w.endpoints[1].election().leader(),
        Some(&b"10.1.0.1:8080"[..])
    );
    assert!(events.iter().any(|(_, i, e)| *i == 1
        && matches!(e, CoordinationEvent::LeaderChanged { leader: Some(v) } if v == b"10.1.0.1:8080")));
}

#[test]
fn a_cut_off_leader_is_deposed_before_the_standby_is_elected() {
    let masters = FakeMasters::new(1);
    let a = candidate(&masters, 0, secs(6));
    let b = candidate(&masters, 1, secs(6));
    let mut w = World::new(masters, vec![a, b]);
    let now = w.now;
    w.endpoints[0].campaign(now);
    w.run_for(ms(10));
    let now = w.now;
    w.endpoints[1].campaign(now);
    run_checked(&mut w, secs(5));
    assert_eq!(leading_at(&w), vec![0]);
    w.take_events();
    w.isolated[0] = true;
    run_checked(&mut w, secs(20));
    assert_eq!(leading_at(&w), vec![1]);
    let events = w.take_events();
    let deposed = events
        .iter()
        .find(|(_, i, e)| {
            *i == 0
                && matches!(
                    e,
                    CoordinationEvent::Deposed {
                        reason: Deposed::Unconfirmed,
                        ..
                    }
                )
        })
        .unwrap()
        .0;
    let elected = events
        .iter()
        .find(|(_, i, e)| *i == 1 && matches!(e, CoordinationEvent::Leading { .. }))
        .unwrap()
        .0;
    assert!(
        deposed < elected,
        "deposed at {deposed:?}, other elected at {elected:?}"
    );
    assert!(!events
        .iter()
        .any(|(_, _, e)| matches!(e, CoordinationEvent::Client(_))));
    // Deposed a margin (a fifth of the ttl) before the lease could expire.
    assert!(elected - deposed >= secs(6) / 5);
}

#[test]
fn a_crashed_leader_is_replaced_once_its_lease_expires() {
    let masters = FakeMasters::new(1);
    let a = candidate(&masters, 0, secs(6));
    let b = candidate(&masters, 1, secs(6));
    let mut w = World::new(masters, vec![a, b]);
    let now = w.now;
    w.endpoints[0].campaign(now);
    w.run_for(ms(10));
    let now = w.now;
    w.endpoints[1].campaign(now);
    run_checked(&mut w, secs(5));
    let crashed_at = w.now;
    w.isolated[0] = true; // and never heard of again
    w.endpoints[0] = candidate(&w.masters, 0, secs(6));
    w.take_events();
    let mut elected = None;
    while elected.is_none() {
        run_checked(&mut w, ms(100));
        if leading_at(&w) == vec![1] {
            elected = Some(w.now);
        }
        assert!(w.now < crashed_at + secs(30));
    }
    let took = elected.unwrap() - crashed_at;
    assert!(took <= secs(6) + secs(2), "took {took:?}");
}

#[test]
fn a_leader_whose_key_is_deleted_is_deposed_and_campaigns_again() {
    let masters = FakeMasters::new(1);
    let a = candidate(&masters, 0, secs(6));
    let mut w = World::new(masters, vec![a]);
    let now = w.now;
    w.endpoints[0].campaign(now);
    w.run_for(ms(10));
    let first = w.endpoints[0].election().token().unwrap();
    let now = w.now;
    w.masters.admin(
        now,
        CoordOp::Delete {
            key: "/fw/leader".into(),
            expect: Expect::Any,
        },
    );
    w.run_for(ms(10));
    let events = w.take_events();
    assert!(
        events.iter().any(|(_, _, e)| matches!(
            e,
            CoordinationEvent::Deposed {
                reason: Deposed::KeyLost,
                ..
            }
        )),
        "{events:?}"
    );
    let second = w.endpoints[0].election().token().unwrap();
    assert!(second.epoch > first.epoch);
    assert!(w.endpoints[0].is_leading(w.now));
}

#[test]
fn a_campaign_whose_answer_is_lost_finds_out_it_won_by_reading() {
    let masters = FakeMasters::new(1);
    let a = candidate(&masters, 0, secs(6));
    let mut w = World::new(masters, vec![a]);
    // Every answer to the campaign put is lost: its retries answer the same (deduplicated).
    w.drop_in = Box::new(
        |_, m| matches!(m, Incoming::Response(r) if matches!(r.outcome, CoordOutcome::Done(Ok(CoordReply::Put { .. })))),
    );
    let now = w.now;
    w.endpoints[0].campaign(now);
    w.run_for(COORD_REQUEST_DEADLINE + secs(2));
    assert!(w.endpoints[0].is_leading(w.now));
    let puts = w
        .masters
        .applied
        .iter()
        .filter(|(_, op)| matches!(op, CoordOp::Put { .. }))
        .count();
    assert!(puts > 1);
}

#[test]
fn a_stale_observation_of_the_key_does_not_depose_the_new_holder() {
    let mut masters = FakeMasters::new(1);
    masters.admin(Duration::ZERO, put("/fw/leader", "someone else"));
    let a = candidate(&masters, 0, secs(6));
    let mut w = World::new(masters, vec![a]);
    // The other holder's key goes just before this candidate's put arrives (its read saw it)...
    w.intercept = Some(Box::new(|now, masters, t| {
        if let Outgoing::Request(r) = &t.message {
            if matches!(&r.op, CoordOp::Put { key, .. } if key == "/fw/leader")
                && masters
                    .store
                    .get("/fw/leader")
                    .is_some_and(|e| e.value == b"someone else")
            {
                masters.admin(
                    now,
                    CoordOp::Delete {
                        key: "/fw/leader".into(),
                        expect: Expect::Any,
                    },
                );
            }
        }
    }));
    // ... and the watch hears of that delete only after it was elected (a lost notification,
    // replayed when the gap shows).
    let mut lost = false;
    w.drop_in = Box::new(move |_, m| match m {
        Incoming::Events(e)
            if !lost
                && e.events
                    .iter()
                    .any(|e| e.change == plateau_master::coord::Change::Delete) =>
        {
            lost = true;
            true
        }
        _ => false,
    });
    let now = w.now;
    w.endpoints[0].campaign(now);
    w.run_for(secs(10));
    let events = w.take_events();
    assert!(
        events
            .iter()
            .any(|(_, _, e)| matches!(e, CoordinationEvent::Leading { .. })),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|(_, _, e)| matches!(e, CoordinationEvent::Deposed { .. })),
        "{events:?}"
    );
    assert!(w.endpoints[0].is_leading(w.now));
}

// ---- the replicated state ---------------------------------------------------------------------

/// One candidate elected with its state loaded.
fn elected_world(preload: usize) -> World<Coordination> {
    let mut masters = FakeMasters::new(1);
    for i in 0..preload {
        let now = Duration::ZERO;
        masters.admin(now, put(&format!("/fw/state/k{i:05}"), "v"));
    }
    let a = candidate(&masters, 0, secs(6));
    let mut w = World::new(masters, vec![a]);
    let now = w.now;
    w.endpoints[0].campaign(now);
    w.run_for(ms(10));
    assert!(w.endpoints[0].is_leading(w.now));
    w
}

#[test]
fn the_state_is_loaded_in_pages_before_leading() {
    let keys = 2 * STATE_LOAD_PAGE_KEYS as usize + 5;
    let mut w = elected_world(keys);
    assert_eq!(w.endpoints[0].state().len(), keys);
    assert_eq!(w.endpoints[0].state().get("k00000"), Some(&b"v"[..]));
    let events = w.take_events();
    let position =
        |f: &dyn Fn(&CoordinationEvent) -> bool| events.iter().position(|(_, _, e)| f(e));
    assert!(position(&|e| matches!(e, CoordinationEvent::Leading { .. })).is_some());
    let ranges = w
        .sent
        .iter()
        .filter(|(_, t)| matches!(&t.message, Outgoing::Request(r) if matches!(r.op, CoordOp::Range { .. })))
        .count();
    assert_eq!(ranges, 3);
}

#[test]
fn writes_commit_in_order_merged_while_one_is_in_flight() {
    let mut w = elected_world(0);
    // Hold the first transaction's answer back by cutting answers, write three more.
    w.drop_in = Box::new(
        |_, m| matches!(m, Incoming::Response(r) if matches!(r.outcome, CoordOutcome::Done(Ok(CoordReply::Txn { .. })))),
    );
    let now = w.now;
    let put_op = |k: &str, v: &str| StateOp::Put {
        key: k.into(),
        value: v.as_bytes().to_vec(),
    };
    let w1 = w.endpoints[0].write(now, vec![put_op("a", "1")]).unwrap();
    let w2 = w.endpoints[0]
        .write(now, vec![put_op("a", "2"), put_op("b", "1")])
        .unwrap();
    let w3 = w.endpoints[0]
        .write(now, vec![StateOp::Delete { key: "b".into() }])
        .unwrap();
    w.exchange();
    w.drop_in = Box::new(|_, _| false);
    w.run_for(secs(2)); // the first is retried and answered, then the merged rest
    let committed: Vec<WriteId> = w
        .take_events()
        .into_iter()
        .filter_map(|(_, _, e)| match e {
            CoordinationEvent::Committed { write, .. } => Some(write),
            _ => None,
        })
        .collect();
    assert_eq!(committed, vec![w1, w2, w3]);
    let state = w.endpoints[0].state();
    assert_eq!(state.get("a"), Some(&b"2"[..]));
    assert_eq!(state.get("b"), None);
    assert_eq!(w.masters.store.get("/fw/state/a").unwrap().value, b"2");
    let txns: Vec<usize> = w
        .masters
        .applied
        .iter()
        .filter_map(|(_, op)| match op {
            CoordOp::Txn { ops, .. } => Some(ops.len()),
            _ => None,
        })
        .collect();
    // The first, retried (deduplicated), then w2 and w3 merged into one (a and b).
    assert_eq!(txns.last(), Some(&2));
}

#[test]
fn a_write_of_a_deposed_leader_is_refused_and_it_steps_down() {
    let mut w = elected_world(0);
    let token = w.endpoints[0].election().token().unwrap();
    // Another holder takes the key (the lease was revoked behind the leader's back, say).
    let now = w.now;
    let lease = w
        .masters
        .store
        .fencing()
        .holder("/fw/leader")
        .unwrap()
        .lease
        .unwrap();
    w.masters.admin(now, CoordOp::RevokeLease { lease });
    w.masters.admin(now, put("/fw/leader", "intruder"));
    // Before it hears of it (the watch events are lost), the leader writes.
    w.drop_in = Box::new(|_, m| matches!(m, Incoming::Events(_)));
    let before = w.masters.store.revision();
    let put_op = StateOp::Put {
        key: "a".into(),
        value: b"1".to_vec(),
    };
    let write = w.endpoints[0].write(now, vec![put_op]).unwrap();
    w.run_for(ms(10));
    let events = w.take_events();
    assert!(events.iter().any(|(_, _, e)| matches!(e,
        CoordinationEvent::WriteFailed { write: id, error: StateError::Request(RequestError::Refused(CoordError::StaleGuard { epoch, .. })) }
            if *id == write && *epoch == token.epoch)), "{events:?}");
    assert!(events
        .iter()
        .any(|(_, _, e)| matches!(e, CoordinationEvent::Deposed { .. })));
    assert!(
        !events
            .iter()
            .any(|(_, _, e)| matches!(e, CoordinationEvent::Client(_))),
        "the state's and the election's own answers are theirs: {events:?}"
    );
    assert!(w.masters.store.get("/fw/state/a").is_none());
    assert!(w.masters.store.revision() > before);
    assert!(!w.endpoints[0].is_leading(w.now));
    assert_eq!(
        w.endpoints[0].write(w.now, vec![]),
        Err(StateError::NotLoaded)
    );
}

#[test]
fn oversized_writes_are_refused_with_the_key_named() {
    let mut w = elected_world(0);
    let now = w.now;
    let big = StateOp::Put {
        key: "apps/huge".into(),
        value: vec![0; COORD_VALUE_BYTES_MAX + 1],
    };
    let err = w.endpoints[0].write(now, vec![big]).unwrap_err();
    assert!(matches!(&err, StateError::ValueTooLarge { key, .. } if key == "apps/huge"));
    assert!(
        err.to_string().contains("split it into several keys"),
        "{err}"
    );
    let many: Vec<StateOp> = (0..=COORD_TXN_OPS_MAX)
        .map(|i| StateOp::Delete {
            key: format!("k{i}"),
        })
        .collect();
    assert!(matches!(
        w.endpoints[0].write(now, many),
        Err(StateError::TooManyOps { .. })
    ));
    assert_eq!(
        w.endpoints[0].write(now, vec![StateOp::Delete { key: String::new() }]),
        Err(StateError::EmptyKey)
    );
    // Nothing was sent, nothing broke.
    let ok = w.endpoints[0].write(now, vec![StateOp::Delete { key: "k".into() }]);
    assert!(ok.is_ok());
}

#[test]
fn guarded_transactions_carry_the_token() {
    let mut w = elected_world(0);
    let token = w.endpoints[0].election().token().unwrap();
    let now = w.now;
    w.endpoints[0]
        .write(
            now,
            vec![StateOp::Put {
                key: "a".into(),
                value: vec![1],
            }],
        )
        .unwrap();
    w.run_for(ms(10));
    let guard = w.sent.iter().rev().find_map(|(_, t)| match &t.message {
        Outgoing::Request(r) => match &r.op {
            CoordOp::Txn { guard, ops } => Some((guard.clone(), ops.clone())),
            _ => None,
        },
        _ => None,
    });
    let expected_op = TxnOp::Put {
        key: "/fw/state/a".into(),
        value: vec![1],
    };
    assert_eq!(guard, Some((Some(token), vec![expected_op])));
}
