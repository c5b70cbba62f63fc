//! Driving the pure coordination cores from a process: the thin glue between a
//! [`Context`] and [`CoordClient`] or [`Coordination`].
//!
//! A process that hosts a client installs handlers for the four coordination messages it
//! receives (`CoordResponseMessage`, `LeaseKeepAliveResponseMessage`, `WatchEventsMessage`,
//! `WatchEndedMessage`), for `NewMasterDetectedMessage` (the answers to its leader queries),
//! and for [`CoordTimer`]; each handler feeds the core with `ctx.now()` and then calls
//! [`flush_client`] (or [`flush`]), which sends what the core wants sent and arms the one
//! timer at the core's next deadline. The scheduler driver does all this itself when given a
//! [`LeaderConfig`](crate::LeaderConfig).

use std::time::Duration;

use plateau_runtime::{Context, Message, TimerId};
use serde::{Deserialize, Serialize};

use super::client::{CoordClient, Outgoing, Transmit};
use super::coordination::Coordination;

/// To self: the coordination core's deadline came ([`TimerSlot`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct CoordTimer;

impl Message for CoordTimer {
    const NAME: &'static str = "sdk.coord.CoordTimer";
}

/// The one timer a coordination core needs: armed at its next deadline.
#[derive(Debug, Default)]
pub struct TimerSlot {
    armed: Option<(TimerId, Duration)>,
}

impl TimerSlot {
    /// No timer armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// The timer fired (call from the [`CoordTimer`] handler, before handling the timeout).
    pub fn fired(&mut self) {
        self.armed = None;
    }

    /// Arms the timer at `at` (`None`: none), replacing one armed for another time.
    pub fn arm(&mut self, ctx: &mut Context<'_>, at: Option<Duration>) {
        if self.armed.map(|(_, t)| t) == at {
            return;
        }
        if let Some((id, _)) = self.armed.take() {
            ctx.cancel(id);
        }
        if let Some(at) = at {
            let now = ctx.now().since_origin();
            let id = ctx.delay(at.saturating_sub(now), CoordTimer);
            self.armed = Some((id, at));
        }
    }
}

/// Sends one message a core asked for.
pub fn send(ctx: &mut Context<'_>, transmit: Transmit) {
    let to = &transmit.to;
    match transmit.message {
        Outgoing::Request(m) => ctx.send(to, m),
        Outgoing::KeepAlive(m) => ctx.send(to, m),
        Outgoing::Watch(m) => ctx.send(to, m),
        Outgoing::Unwatch(m) => ctx.send(to, m),
        Outgoing::LeaderQuery(m) => ctx.send(to, m),
    }
}

/// Sends what `client` wants sent and arms `timer` at its next deadline. Its events stay
/// queued for the caller ([`CoordClient::poll_event`]).
pub fn flush_client(ctx: &mut Context<'_>, client: &mut CoordClient, timer: &mut TimerSlot) {
    while let Some(transmit) = client.poll_transmit() {
        send(ctx, transmit);
    }
    timer.arm(ctx, client.poll_timeout());
}

/// Sends what `coordination` wants sent and arms `timer` at its next deadline. Its events
/// stay queued for the caller ([`Coordination::poll_event`]).
pub fn flush(ctx: &mut Context<'_>, coordination: &mut Coordination, timer: &mut TimerSlot) {
    while let Some(transmit) = coordination.poll_transmit() {
        send(ctx, transmit);
    }
    timer.arm(ctx, coordination.poll_timeout());
}
