//! [`WatchHub`]: the watches of sessions, and a bounded history of recent events to replay.
//!
//! Every replica feeds the events its store applied to its hub (so that a new leader has the
//! recent history), but only the leader has watches: sessions register with it, and lose
//! their watches when it stops leading.
//!
//! A watch's notifications are numbered from 0 (`seq`); notification 0 is sent at once, even
//! empty, and confirms the watch. The transport may lose a message: a session that sees a gap
//! in `seq` watches again from the revision after the last event it received.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::ops::{CoordError, KeySelector, Limit, WatchEvent};
use super::store::DrainedEvents;
use crate::limits::{
    COORD_WATCHES_PER_SESSION_MAX, COORD_WATCH_EVENTS_PER_MESSAGE_MAX,
    COORD_WATCH_HISTORY_BYTES_MAX, COORD_WATCH_HISTORY_EVENTS_MAX, COORD_WATCH_SESSIONS_MAX,
};

/// Why a watch ended without being asked to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatchEndReason {
    /// Events up to this revision were dropped before they reached the watch (an overflow,
    /// or a snapshot installed): read again and watch from the read's revision + 1.
    EventsLost {
        /// The last revision whose events may be missing.
        through_revision: u64,
    },
}

/// What the hub asks its host to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchOutput<S> {
    /// Events for one watch (at most [`COORD_WATCH_EVENTS_PER_MESSAGE_MAX`]).
    Events {
        /// The session.
        session: S,
        /// The session's id for the watch.
        watch_id: u64,
        /// The notification's number for this watch (0 confirms the watch).
        seq: u64,
        /// The events, in revision order.
        events: Vec<WatchEvent>,
    },
    /// The watch ended; the session must read again and watch anew.
    Ended {
        /// The session.
        session: S,
        /// The session's id for the watch.
        watch_id: u64,
        /// Why.
        reason: WatchEndReason,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Watch {
    selector: KeySelector,
    /// Events before this revision are not sent.
    start_revision: u64,
    next_seq: u64,
}

/// Watches by session, and the recent events. `S` names a session (the host uses the
/// client's `Upid`). Pure: no clock, no I/O.
#[derive(Debug, Clone)]
pub struct WatchHub<S> {
    /// The last revision the store applied, as told to the hub.
    applied_revision: u64,
    /// Recent events, in revision order: complete for every revision from `history_start`
    /// to `applied_revision`.
    history: VecDeque<WatchEvent>,
    history_bytes: usize,
    history_start: u64,
    watches: BTreeMap<S, BTreeMap<u64, Watch>>,
}

impl<S: Ord + Clone> WatchHub<S> {
    /// A hub for a store at `applied_revision`, with no history (a watch can start at
    /// `applied_revision + 1` or later).
    pub fn new(applied_revision: u64) -> Self {
        WatchHub {
            applied_revision,
            history: VecDeque::new(),
            history_bytes: 0,
            history_start: applied_revision + 1,
            watches: BTreeMap::new(),
        }
    }

    /// The oldest revision a watch can start at.
    pub fn oldest_revision(&self) -> u64 {
        self.history_start
    }

    /// The store was replaced (a snapshot installed) at `applied_revision`: the history is
    /// dropped and every watch ends.
    pub fn reset(&mut self, applied_revision: u64) -> Vec<WatchOutput<S>> {
        let ended = self.end_all(WatchEndReason::EventsLost {
            through_revision: applied_revision,
        });
        *self = Self::new(applied_revision);
        ended
    }

    /// Feeds the events the store applied (from [`super::CoordStore::drain_events`]), up to
    /// `applied_revision`: they join the history and go to the matching watches.
    pub fn handle_applied(
        &mut self,
        drained: DrainedEvents,
        applied_revision: u64,
    ) -> Vec<WatchOutput<S>> {
        debug_assert!(applied_revision >= self.applied_revision);
        let mut out = Vec::new();
        if let Some(lost) = drained.lost_through {
            out = self.end_all(WatchEndReason::EventsLost {
                through_revision: lost,
            });
            self.history.clear();
            self.history_bytes = 0;
            self.history_start = lost + 1;
        }
        let mut batches: BTreeMap<(S, u64), Vec<WatchEvent>> = BTreeMap::new();
        for event in drained.events {
            for (session, watches) in &self.watches {
                for (watch_id, watch) in watches {
                    if event.revision >= watch.start_revision && watch.selector.matches(&event.key)
                    {
                        batches
                            .entry((session.clone(), *watch_id))
                            .or_default()
                            .push(event.clone());
                    }
                }
            }
            self.remember(event);
        }
        self.applied_revision = self.applied_revision.max(applied_revision);
        for ((session, watch_id), events) in batches {
            self.send(&mut out, &session, watch_id, events, false);
        }
        out
    }

    /// `session` watches the keys of `selector` from `start_revision` (default: the next
    /// revision). Registering an id again replaces the watch (a retried request). Answers the
    /// notifications to send now: the confirmation (seq 0) and the kept events from
    /// `start_revision` on.
    pub fn handle_watch(
        &mut self,
        session: S,
        watch_id: u64,
        selector: KeySelector,
        start_revision: Option<u64>,
    ) -> Result<Vec<WatchOutput<S>>, CoordError> {
        selector.validate()?;
        let start = start_revision.unwrap_or(self.applied_revision + 1);
        if start < self.history_start {
            return Err(CoordError::Compacted {
                oldest_revision: self.history_start,
            });
        }
        match self.watches.get(&session) {
            None if self.watches.len() >= COORD_WATCH_SESSIONS_MAX => {
                return Err(Limit::WatchSessions.exceeded());
            }
            Some(w) if !w.contains_key(&watch_id) && w.len() >= COORD_WATCHES_PER_SESSION_MAX => {
                return Err(Limit::WatchesPerSession.exceeded());
            }
            _ => {}
        }
        let replay: Vec<WatchEvent> = self
            .history
            .iter()
            .filter(|e| e.revision >= start && selector.matches(&e.key))
            .cloned()
            .collect();
        self.watches.entry(session.clone()).or_default().insert(
            watch_id,
            Watch {
                selector,
                start_revision: start,
                next_seq: 0,
            },
        );
        let mut out = Vec::new();
        self.send(&mut out, &session, watch_id, replay, true);
        Ok(out)
    }

    /// `session` stops watching `watch_id`; whether it was watching.
    pub fn handle_unwatch(&mut self, session: &S, watch_id: u64) -> bool {
        let Some(watches) = self.watches.get_mut(session) else {
            return false;
        };
        let removed = watches.remove(&watch_id).is_some();
        if watches.is_empty() {
            self.watches.remove(session);
        }
        removed
    }

    /// Drops every watch of `session` (it ended or its link broke); how many it had.
    pub fn drop_session(&mut self, session: &S) -> usize {
        self.watches.remove(session).map_or(0, |w| w.len())
    }

    /// Drops every watch (this master stopped leading), naming them so that the host can tell
    /// their sessions where the leader is.
    pub fn drop_all(&mut self) -> Vec<(S, u64)> {
        let all = std::mem::take(&mut self.watches);
        all.into_iter()
            .flat_map(|(session, watches)| watches.into_keys().map(move |id| (session.clone(), id)))
            .collect()
    }

    /// Number of watches.
    pub fn len(&self) -> usize {
        self.watches.values().map(BTreeMap::len).sum()
    }

    /// Whether there is no watch.
    pub fn is_empty(&self) -> bool {
        self.watches.is_empty()
    }

    fn end_all(&mut self, reason: WatchEndReason) -> Vec<WatchOutput<S>> {
        self.drop_all()
            .into_iter()
            .map(|(session, watch_id)| WatchOutput::Ended {
                session,
                watch_id,
                reason: reason.clone(),
            })
            .collect()
    }

    fn remember(&mut self, event: WatchEvent) {
        self.history_bytes += event.bytes();
        self.history.push_back(event);
        while self.history.len() > COORD_WATCH_HISTORY_EVENTS_MAX
            || self.history_bytes > COORD_WATCH_HISTORY_BYTES_MAX
        {
            // Forget whole revisions: the history stays complete from `history_start` on.
            let oldest = self.history.front().map(|e| e.revision).expect("not empty");
            while self.history.front().is_some_and(|e| e.revision == oldest) {
                let gone = self.history.pop_front().expect("front exists");
                self.history_bytes -= gone.bytes();
            }
            self.history_start = oldest + 1;
        }
    }

    /// Queues `events` for one watch in notifications of bounded size (an empty one only if
    /// `even_empty`).
    fn send(
        &mut self,
        out: &mut Vec<WatchOutput<S>>,
        session: &S,
        watch_id: u64,
        events: Vec<WatchEvent>,
        even_empty: bool,
    ) {
        let Some(watch) = self
            .watches
            .get_mut(session)
            .and_then(|w| w.get_mut(&watch_id))
        else {
            return;
        };
        if events.is_empty() {
            if even_empty {
                out.push(WatchOutput::Events {
                    session: session.clone(),
                    watch_id,
                    seq: watch.next_seq,
                    events,
                });
                watch.next_seq += 1;
            }
            return;
        }
        let mut events = events.into_iter().peekable();
        while events.peek().is_some() {
            let chunk: Vec<WatchEvent> = events
                .by_ref()
                .take(COORD_WATCH_EVENTS_PER_MESSAGE_MAX)
                .collect();
            out.push(WatchOutput::Events {
                session: session.clone(),
                watch_id,
                seq: watch.next_seq,
                events: chunk,
            });
            watch.next_seq += 1;
        }
    }
}
