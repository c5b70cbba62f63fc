//! Finding the leading master of a group: [`MasterDetector`], the pure core with which slaves
//! and scheduler drivers follow the leader (Mesos' master detector, with the masters
//! themselves answering instead of ZooKeeper).
//!
//! Pure: no I/O, no clock (time comes in as `now`, time since an arbitrary origin), no global
//! randomness (the jitter of the queries comes from the caller's RNG). The host — the slave
//! process, the scheduler driver — feeds it what it receives and carries out what it decides.
//!
//! # The rules
//!
//! A slave or framework is given [`Masters`], the list of masters it may follow
//! (`--master A,B,C`).
//!
//! - **One master** is the leader at once and for good, at term 0: nothing is queried, and a
//!   lost link to it is the host's business (it registers again with backoff, as it always
//!   did). News naming that master at a higher term (a group of one that held an election)
//!   makes the host register again; any other news is ignored, there is no one else to follow.
//! - **Several masters**: while no leader is known, every master is asked who leads
//!   ([`LeaderQueryMessage`]) at once, then again after [`LEADER_QUERY_INTERVAL_MIN`], the
//!   interval doubling up to [`LEADER_QUERY_INTERVAL_MAX`] (plus up to 10 % jitter, so that the
//!   slaves of a cluster do not ask in lockstep). Answers, a new leader's announcements and a
//!   follower's redirects are all [`NewMasterDetectedMessage`]s, and are judged alike:
//!   1. News is taken only from a listed master and only about a listed master: the list is
//!      what the slave or framework trusts.
//!   2. The detector keeps the highest term of a leader it heard of. News naming a leader at a
//!      lower term is stale (a deposed master's) and ignored; at an equal or higher term, the
//!      leader named is followed. A term given with "no leader" does not count: a candidate's
//!      term says nothing about who leads, and a partitioned candidate's terms run ahead.
//!   3. The followed leader saying that it does not lead (no leader, or another one) is
//!      believed whatever its term: it is forgotten (or the one it names is followed, if rule 2
//!      allows). Naming another leader, it is not followed again at a term no higher than the
//!      one it gave up. Naming no one, it may be: a master whose lease lapsed still leads its
//!      group's term, and takes office again in that same term when it hears from a majority
//!      again (it then tells the slaves and frameworks it knows, as any new leader does).
//!   4. The link to the followed leader breaking ([`MasterDetector::handle_exited`]) forgets
//!      it, and querying starts at once. It may be followed again: a partition breaks links
//!      too, and a dead leader is only replaced once the others have elected another.
//!
//! # Driving it
//!
//! After each input, and when [`MasterDetector::next_deadline`] comes, the host sends a
//! [`LeaderQueryMessage`] to each master [`MasterDetector::poll_queries`] returns, and acts on
//! [`MasterDetector::poll_change`]: a new leader (register with it, keeping its tasks) or none
//! (wait for one). Protocol messages are accepted only from [`MasterDetector::leader`],
//! compared as the whole `name@host:port`: the list must name the masters as they name
//! themselves.
//!
//! ```
//! use std::time::Duration;
//! use plateau_master::detector::{MasterDetector, Masters, News};
//! use plateau_master::messages::NewMasterDetectedMessage;
//! use plateau_runtime::Rng;
//!
//! let masters = Masters::parse("10.0.0.1:5050,10.0.0.2:5050,10.0.0.3:5050")?;
//! let (a, b) = (masters.as_slice()[0].clone(), masters.as_slice()[1].clone());
//! let mut detector = MasterDetector::new(masters);
//! let mut rng = Rng::seed_from_u64(7);
//!
//! // No leader known: ask all three at once.
//! assert_eq!(detector.poll_queries(Duration::ZERO, &mut rng).len(), 3);
//! // B answers that A leads, in term 4.
//! let answer = NewMasterDetectedMessage { leader: Some(a.clone()), term: 4 };
//! let news = detector.handle_new_master_detected(Duration::from_millis(2), &b, &answer);
//! assert_eq!(news, News::Followed);
//! assert_eq!(detector.leader(), Some(&a));
//! assert_eq!(detector.poll_change().and_then(|c| c.leader), Some(a.clone()));
//! // A deposed master's stale news (term 3) is ignored.
//! let stale = NewMasterDetectedMessage { leader: Some(b.clone()), term: 3 };
//! let news = detector.handle_new_master_detected(Duration::from_secs(1), &b, &stale);
//! assert_eq!(news, News::Stale);
//! assert_eq!(detector.leader(), Some(&a));
//! assert!(detector.poll_change().is_none());
//! # Ok::<(), plateau_master::MasterError>(())
//! ```
//!
//! [`LeaderQueryMessage`]: crate::messages::LeaderQueryMessage
//! [`LEADER_QUERY_INTERVAL_MIN`]: crate::limits::LEADER_QUERY_INTERVAL_MIN
//! [`LEADER_QUERY_INTERVAL_MAX`]: crate::limits::LEADER_QUERY_INTERVAL_MAX

use std::fmt;
use std::time::Duration;

use plateau_runtime::Upid;
use rand_core::RngCore;

use crate::error::MasterError;
use crate::limits::{LEADER_QUERY_INTERVAL_MAX, LEADER_QUERY_INTERVAL_MIN, MASTERS_MAX};
use crate::messages::NewMasterDetectedMessage;

// ---- the list of masters ------------------------------------------------------------------

/// The masters a slave or framework may follow: not empty, no master twice, at most
/// [`MASTERS_MAX`], in the order given (the order queries go out in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masters(Vec<Upid>);

impl Masters {
    /// The list, with repeated masters dropped (the first one stays in place).
    pub fn new(masters: Vec<Upid>) -> Result<Self, MasterError> {
        let given = masters.len();
        let mut list: Vec<Upid> = Vec::with_capacity(given.min(MASTERS_MAX));
        for master in masters {
            if !list.contains(&master) {
                list.push(master);
            }
            if list.len() > MASTERS_MAX {
                return Err(MasterError::TooMany {
                    what: "masters",
                    len: given,
                    max: MASTERS_MAX,
                });
            }
        }
        if list.is_empty() {
            return Err(MasterError::BadMasters {
                list: String::new(),
                reason: "no master given".into(),
            });
        }
        Ok(Masters(list))
    }

    /// A single master (which is then the leader for good).
    pub fn one(master: Upid) -> Self {
        Masters(vec![master])
    }

    /// A `--master` flag: comma-separated `HOST:PORT` entries (the process `master` on each)
    /// or whole `name@HOST:PORT` ids, e.g. `10.0.0.1:5050,10.0.0.2:5050,10.0.0.3:5050`.
    pub fn parse(text: &str) -> Result<Self, MasterError> {
        let bad = |reason: String| MasterError::BadMasters {
            list: text.to_string(),
            reason,
        };
        let mut list = Vec::new();
        for entry in text.split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(bad(
                    "an empty entry (expected HOST:PORT or HOST:PORT,HOST:PORT,...)".into(),
                ));
            }
            if list.len() >= MASTERS_MAX {
                return Err(MasterError::TooMany {
                    what: "masters",
                    len: text.split(',').count(),
                    max: MASTERS_MAX,
                });
            }
            let upid = if entry.contains('@') {
                entry.parse::<Upid>()
            } else {
                format!("master@{entry}").parse::<Upid>()
            };
            list.push(upid.map_err(|e| bad(e.to_string()))?);
        }
        Self::new(list)
    }

    /// The masters, in the order given.
    pub fn as_slice(&self) -> &[Upid] {
        &self.0
    }

    /// The first master given.
    pub fn first(&self) -> &Upid {
        &self.0[0]
    }

    /// True when `upid` is one of the masters (the whole `name@host:port`).
    pub fn contains(&self, upid: &Upid) -> bool {
        self.0.contains(upid)
    }

    /// True when there is one master only (the leader for good).
    pub fn is_single(&self) -> bool {
        self.0.len() == 1
    }
}

impl From<Upid> for Masters {
    fn from(master: Upid) -> Self {
        Masters::one(master)
    }
}

impl fmt::Display for Masters {
    /// The masters as `name@host:port`, comma-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, master) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{master}")?;
        }
        Ok(())
    }
}

// ---- the detector -------------------------------------------------------------------------

/// The leader followed changed (see [`MasterDetector::poll_change`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderChange {
    /// The leader followed until now, if any.
    pub previous: Option<Upid>,
    /// The leader to follow from now on; None: none is known (the detector queries).
    pub leader: Option<Upid>,
    /// The highest term of a leader heard of (the new leader's, when there is one).
    pub term: u64,
}

/// What the detector made of a [`NewMasterDetectedMessage`] (for the host's log; the host
/// acts on [`MasterDetector::poll_change`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum News {
    /// The leader named is followed now: another one, or the same at a higher term.
    Followed,
    /// The followed leader said it does not lead: it is forgotten, querying starts.
    Forgotten,
    /// Nothing new: the leader followed at the term followed, or no leader named by a master
    /// that is not the one followed.
    Unchanged,
    /// A leader named at a term below the highest heard of, or a leader that gave up its
    /// leadership named again at a term no higher: ignored.
    Stale,
    /// From a process that is not a listed master, or naming one that is not: ignored.
    Untrusted,
}

/// Follows the leading master of [`Masters`] (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct MasterDetector {
    masters: Masters,
    /// The leader followed.
    leader: Option<Upid>,
    /// The highest term of a leader heard of (the followed leader's, when there is one).
    term: u64,
    /// The last leader that said it no longer leads, and the term it gave up.
    deposed: Option<(Upid, u64)>,
    /// When the next round of queries is due: Some exactly when several masters are listed
    /// and no leader is followed.
    query_at: Option<Duration>,
    /// The wait after the next round of queries.
    query_interval: Duration,
    /// The leader and term the host last learned of through [`Self::poll_change`].
    reported: Option<(Upid, u64)>,
}

impl MasterDetector {
    /// A detector for `masters`: one master is the leader at once (term 0, and the host
    /// knows it without a [`LeaderChange`]); with several, none is known and the first round
    /// of queries is due at the first [`Self::poll_queries`].
    pub fn new(masters: Masters) -> Self {
        let (leader, query_at) = if masters.is_single() {
            (Some(masters.first().clone()), None)
        } else {
            (None, Some(Duration::ZERO))
        };
        MasterDetector {
            reported: leader.clone().map(|l| (l, 0)),
            masters,
            leader,
            term: 0,
            deposed: None,
            query_at,
            query_interval: LEADER_QUERY_INTERVAL_MIN,
        }
    }

    /// The masters followed.
    pub fn masters(&self) -> &Masters {
        &self.masters
    }

    /// The leader followed, if one is known.
    pub fn leader(&self) -> Option<&Upid> {
        self.leader.as_ref()
    }

    /// The highest term of a leader heard of (the followed leader's, when there is one).
    pub fn term(&self) -> u64 {
        self.term
    }

    /// True when `upid` is the leader followed (the whole `name@host:port`): the only process
    /// whose protocol messages are to be accepted.
    pub fn is_leader(&self, upid: &Upid) -> bool {
        self.leader.as_ref() == Some(upid)
    }

    /// True while no leader is known and the masters are being asked.
    pub fn is_querying(&self) -> bool {
        self.query_at.is_some()
    }

    /// When the detector next wants [`Self::poll_queries`] called (None: not querying).
    pub fn next_deadline(&self) -> Option<Duration> {
        self.query_at
    }

    /// A [`NewMasterDetectedMessage`] from `from`: an answer to a query, a new leader's
    /// announcement or a redirect (the rules are in the [module docs](self)).
    pub fn handle_new_master_detected(
        &mut self,
        now: Duration,
        from: &Upid,
        msg: &NewMasterDetectedMessage,
    ) -> News {
        if !self.masters.contains(from) {
            return News::Untrusted;
        }
        if let Some(named) = &msg.leader {
            if !self.masters.contains(named) {
                return News::Untrusted;
            }
        }
        if self.masters.is_single() {
            // The one master leads for good; only its re-election (a higher term) is news.
            return match &msg.leader {
                Some(_) if msg.term > self.term => {
                    self.term = msg.term;
                    News::Followed
                }
                Some(_) if msg.term < self.term => News::Stale,
                _ => News::Unchanged,
            };
        }
        // The followed leader saying someone else (or no one) leads is believed whatever the
        // term: its messages arrive in order, the last one is its current view.
        let disclaimed = self.is_leader(from) && msg.leader.as_ref() != Some(from);
        if disclaimed {
            // Deposed for its term only when it names another leader: naming no one, it may
            // take office again in the same term (its lease lapsed, rule 3).
            if msg.leader.is_some() {
                self.deposed = Some((from.clone(), self.term));
            }
            self.forget(now);
        }
        let ignored = if disclaimed {
            News::Forgotten
        } else {
            News::Unchanged
        };
        let Some(named) = &msg.leader else {
            return ignored;
        };
        if msg.term < self.term {
            return if disclaimed { ignored } else { News::Stale };
        }
        if let Some((deposed, gave_up)) = &self.deposed {
            if deposed == named && msg.term <= *gave_up {
                return if disclaimed { ignored } else { News::Stale };
            }
        }
        if self.is_leader(named) && msg.term == self.term {
            return News::Unchanged;
        }
        self.leader = Some(named.clone());
        self.term = msg.term;
        self.query_at = None;
        self.query_interval = LEADER_QUERY_INTERVAL_MIN;
        News::Followed
    }

    /// The link to `upid` broke. True when it was the leader followed: with several masters
    /// it is forgotten and querying starts at once; a single master stays the leader (the
    /// host registers with it again).
    pub fn handle_exited(&mut self, now: Duration, upid: &Upid) -> bool {
        if !self.is_leader(upid) {
            return false;
        }
        if !self.masters.is_single() {
            self.forget(now);
        }
        true
    }

    /// The masters to send a [`LeaderQueryMessage`](crate::messages::LeaderQueryMessage) to
    /// now (all of them, in order, when a round is due; none otherwise). The next round is
    /// then due after the current interval plus up to 10 % jitter; the interval doubles up to
    /// [`LEADER_QUERY_INTERVAL_MAX`].
    pub fn poll_queries(&mut self, now: Duration, rng: &mut impl RngCore) -> Vec<Upid> {
        match self.query_at {
            Some(at) if at <= now => {}
            _ => return Vec::new(),
        }
        let interval = self.query_interval;
        let jitter_range_ms = (interval.as_millis() as u64 / 10).max(1);
        let jitter = Duration::from_millis(rng.next_u64() % jitter_range_ms);
        self.query_at = Some(now + interval + jitter);
        self.query_interval = (interval * 2).min(LEADER_QUERY_INTERVAL_MAX);
        self.masters.as_slice().to_vec()
    }

    /// The change of leader since the last call, if any: another leader, the same one at a
    /// higher term (it was elected again: register again), or none. Changes in between are
    /// folded into one.
    pub fn poll_change(&mut self) -> Option<LeaderChange> {
        let current = self.leader.as_ref().map(|l| (l, self.term));
        if current == self.reported.as_ref().map(|(l, t)| (l, *t)) {
            return None;
        }
        let previous = self.reported.take().map(|(l, _)| l);
        self.reported = self.leader.clone().map(|l| (l, self.term));
        Some(LeaderChange {
            previous,
            leader: self.leader.clone(),
            term: self.term,
        })
    }

    /// No leader any more: query at once, from the shortest interval.
    fn forget(&mut self, now: Duration) {
        debug_assert!(
            !self.masters.is_single(),
            "a single master is never forgotten"
        );
        self.leader = None;
        self.query_at = Some(now);
        self.query_interval = LEADER_QUERY_INTERVAL_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plateau_runtime::{NodeAddr, Rng};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn master(i: u8) -> Upid {
        Upid::new("master", &NodeAddr::new(format!("10.0.0.{i}"), 5050))
    }

    fn group() -> (MasterDetector, Upid, Upid, Upid) {
        let (a, b, c) = (master(1), master(2), master(3));
        let masters = Masters::new(vec![a.clone(), b.clone(), c.clone()]).unwrap();
        (MasterDetector::new(masters), a, b, c)
    }

    fn news(leader: Option<&Upid>, term: u64) -> NewMasterDetectedMessage {
        NewMasterDetectedMessage {
            leader: leader.cloned(),
            term,
        }
    }

    /// A detector following `leader` at `term` (found through a query answered by `from`),
    /// with the change drained.
    fn following(leader: &Upid, term: u64) -> MasterDetector {
        let (mut d, _, _, c) = group();
        let mut rng = Rng::seed_from_u64(1);
        assert_eq!(d.poll_queries(ms(0), &mut rng).len(), 3);
        let n = d.handle_new_master_detected(ms(1), &c, &news(Some(leader), term));
        assert_eq!(n, News::Followed);
        assert!(d.poll_change().is_some());
        d
    }

    #[test]
    fn a_single_master_leads_at_once_and_is_never_queried_nor_forgotten() {
        let a = master(1);
        let mut d = MasterDetector::new(Masters::one(a.clone()));
        let mut rng = Rng::seed_from_u64(1);
        assert_eq!(d.leader(), Some(&a));
        assert_eq!(d.term(), 0);
        assert!(
            d.poll_change().is_none(),
            "the host knows the leader already"
        );
        assert!(d.poll_queries(ms(0), &mut rng).is_empty());
        assert_eq!(d.next_deadline(), None);
        // A lost link is the host's to handle: the master stays the leader.
        assert!(d.handle_exited(ms(5), &a));
        assert_eq!(d.leader(), Some(&a));
        assert!(!d.is_querying());
        assert!(d.poll_change().is_none());
        // "No leader" from the one master changes nothing: there is no one else.
        assert_eq!(
            d.handle_new_master_detected(ms(6), &a, &news(None, 3)),
            News::Unchanged
        );
        assert_eq!(d.leader(), Some(&a));
        // Its election at a higher term is news: register again.
        assert_eq!(
            d.handle_new_master_detected(ms(7), &a, &news(Some(&a), 2)),
            News::Followed
        );
        let change = d.poll_change().unwrap();
        assert_eq!(change.previous.as_ref(), Some(&a));
        assert_eq!(change.leader.as_ref(), Some(&a));
        assert_eq!(change.term, 2);
        assert_eq!(
            d.handle_new_master_detected(ms(8), &a, &news(Some(&a), 1)),
            News::Stale
        );
        assert!(d.poll_change().is_none());
    }

    #[test]
    fn several_masters_are_queried_at_once_then_with_backoff_until_a_leader_is_found() {
        let (mut d, a, b, c) = group();
        let mut rng = Rng::seed_from_u64(3);
        assert_eq!(d.leader(), None);
        assert_eq!(d.next_deadline(), Some(Duration::ZERO));
        assert_eq!(d.poll_queries(ms(0), &mut rng), vec![a.clone(), b, c]);
        // Nothing more before the deadline; each round waits longer, up to the cap.
        let mut previous_round = ms(0);
        let mut waits = Vec::new();
        for _ in 0..12 {
            let at = d.next_deadline().unwrap();
            assert!(d.poll_queries(at - ms(1), &mut rng).is_empty());
            assert_eq!(d.poll_queries(at, &mut rng).len(), 3);
            waits.push(at - previous_round);
            previous_round = at;
        }
        let jittered = |base: Duration| base..=base + base / 10;
        assert!(jittered(LEADER_QUERY_INTERVAL_MIN).contains(&waits[0]));
        assert!(jittered(LEADER_QUERY_INTERVAL_MIN * 2).contains(&waits[1]));
        for wait in &waits[6..] {
            assert!(
                jittered(LEADER_QUERY_INTERVAL_MAX).contains(wait),
                "{wait:?}"
            );
        }
        assert!(d.poll_change().is_none(), "still no leader");
        // An answer naming a leader ends the querying.
        let now = previous_round + ms(3);
        assert_eq!(
            d.handle_new_master_detected(now, &a, &news(Some(&a), 1)),
            News::Followed
        );
        assert!(!d.is_querying());
        assert_eq!(d.next_deadline(), None);
        assert!(d
            .poll_queries(now + Duration::from_secs(60), &mut rng)
            .is_empty());
    }

    #[test]
    fn the_first_answer_naming_a_leader_is_followed_and_the_others_change_nothing() {
        let (mut d, a, b, c) = group();
        let mut rng = Rng::seed_from_u64(1);
        d.poll_queries(ms(0), &mut rng);
        // A follower that does not know the leader yet: nothing learned.
        assert_eq!(
            d.handle_new_master_detected(ms(1), &c, &news(None, 0)),
            News::Unchanged
        );
        assert!(d.poll_change().is_none());
        assert_eq!(
            d.handle_new_master_detected(ms(2), &b, &news(Some(&a), 7)),
            News::Followed
        );
        assert_eq!(
            d.handle_new_master_detected(ms(3), &a, &news(Some(&a), 7)),
            News::Unchanged
        );
        assert_eq!(
            d.poll_change(),
            Some(LeaderChange {
                previous: None,
                leader: Some(a.clone()),
                term: 7
            })
        );
        assert!(d.poll_change().is_none(), "reported once");
        assert!(d.is_leader(&a));
        assert!(!d.is_leader(&b));
    }

    #[test]
    fn an_announcement_at_an_equal_or_higher_term_switches_the_leader() {
        let (a, b, c) = (master(1), master(2), master(3));
        let mut d = following(&a, 4);
        // B, elected in term 5, pushes its news.
        assert_eq!(
            d.handle_new_master_detected(ms(10), &b, &news(Some(&b), 5)),
            News::Followed
        );
        assert_eq!(
            d.poll_change(),
            Some(LeaderChange {
                previous: Some(a.clone()),
                leader: Some(b.clone()),
                term: 5
            })
        );
        // Equal term, another leader named: followed too (the rule is "at least the term").
        assert_eq!(
            d.handle_new_master_detected(ms(11), &c, &news(Some(&c), 5)),
            News::Followed
        );
        assert_eq!(d.leader(), Some(&c));
        assert_eq!(d.poll_change().unwrap().previous.as_ref(), Some(&b));
        // The same leader elected again at a higher term: a change (register again).
        assert_eq!(
            d.handle_new_master_detected(ms(12), &c, &news(Some(&c), 6)),
            News::Followed
        );
        let change = d.poll_change().unwrap();
        assert_eq!(change.previous.as_ref(), Some(&c));
        assert_eq!(change.leader.as_ref(), Some(&c));
        assert_eq!(change.term, 6);
    }

    #[test]
    fn news_at_a_lower_term_is_stale_and_ignored() {
        let (a, b, c) = (master(1), master(2), master(3));
        let mut d = following(&b, 5);
        // A, deposed in term 4, still believes it leads.
        assert_eq!(
            d.handle_new_master_detected(ms(10), &a, &news(Some(&a), 4)),
            News::Stale
        );
        assert_eq!(
            d.handle_new_master_detected(ms(11), &c, &news(Some(&c), 0)),
            News::Stale
        );
        assert_eq!(d.leader(), Some(&b));
        assert_eq!(d.term(), 5);
        assert!(d.poll_change().is_none());
        assert!(!d.is_querying());
    }

    #[test]
    fn the_leader_saying_no_one_leads_is_forgotten_and_followed_again_when_it_acts_again() {
        let (a, b, c) = (master(1), master(2), master(3));
        let mut d = following(&a, 4);
        let mut rng = Rng::seed_from_u64(1);
        // A stopped acting (its lease lapsed; it says so): forget it, query at once.
        assert_eq!(
            d.handle_new_master_detected(ms(100), &a, &news(None, 4)),
            News::Forgotten
        );
        assert_eq!(d.leader(), None);
        assert_eq!(
            d.poll_change(),
            Some(LeaderChange {
                previous: Some(a.clone()),
                leader: None,
                term: 4
            })
        );
        assert_eq!(d.poll_queries(ms(100), &mut rng).len(), 3);
        // A still leads the group's term 4 and takes office again in it: followed again, and
        // the host registers again (A runs a new core).
        assert_eq!(
            d.handle_new_master_detected(ms(101), &a, &news(Some(&a), 4)),
            News::Followed
        );
        assert_eq!(d.leader(), Some(&a));
        assert_eq!(
            d.poll_change(),
            Some(LeaderChange {
                previous: None,
                leader: Some(a.clone()),
                term: 4
            })
        );
        // And a leader elected in a later term is followed as always.
        assert_eq!(
            d.handle_new_master_detected(ms(900), &c, &news(Some(&b), 6)),
            News::Followed
        );
        assert_eq!(d.leader(), Some(&b));
    }

    #[test]
    fn the_leader_naming_another_switches_to_it_and_a_lower_term_only_forgets() {
        let (a, b, c) = (master(1), master(2), master(3));
        let mut d = following(&a, 4);
        assert_eq!(
            d.handle_new_master_detected(ms(10), &a, &news(Some(&b), 5)),
            News::Followed
        );
        assert_eq!(d.leader(), Some(&b));
        d.poll_change();
        // B disclaims, naming C at a term below B's: B is not the leader, C is not known to be.
        assert_eq!(
            d.handle_new_master_detected(ms(20), &b, &news(Some(&c), 3)),
            News::Forgotten
        );
        assert_eq!(d.leader(), None);
        assert!(d.is_querying());
        assert_eq!(d.poll_change().unwrap().leader, None);
    }

    #[test]
    fn a_term_given_with_no_leader_does_not_count() {
        let (mut d, a, b, c) = group();
        let mut rng = Rng::seed_from_u64(1);
        d.poll_queries(ms(0), &mut rng);
        // A partitioned candidate's term runs ahead of the real leader's.
        assert_eq!(
            d.handle_new_master_detected(ms(1), &c, &news(None, 50)),
            News::Unchanged
        );
        assert_eq!(
            d.handle_new_master_detected(ms(2), &b, &news(Some(&a), 5)),
            News::Followed
        );
        assert_eq!(d.leader(), Some(&a));
        // And "no leader" from a master that is not followed does not forget the leader.
        assert_eq!(
            d.handle_new_master_detected(ms(3), &c, &news(None, 51)),
            News::Unchanged
        );
        assert_eq!(d.leader(), Some(&a));
    }

    #[test]
    fn losing_the_link_to_the_leader_forgets_it_and_starts_querying() {
        let (a, b, _) = (master(1), master(2), master(3));
        let mut d = following(&a, 4);
        let mut rng = Rng::seed_from_u64(1);
        assert!(!d.handle_exited(ms(50), &b), "not the leader");
        assert_eq!(d.leader(), Some(&a));
        assert!(d.poll_change().is_none());
        assert!(d.handle_exited(ms(60), &a));
        assert_eq!(d.leader(), None);
        assert_eq!(d.next_deadline(), Some(ms(60)));
        assert_eq!(d.poll_change().unwrap().previous, Some(a.clone()));
        assert_eq!(d.poll_queries(ms(60), &mut rng).len(), 3);
        // A link breaks in a partition too: the same leader may be followed again.
        assert_eq!(
            d.handle_new_master_detected(ms(70), &b, &news(Some(&a), 4)),
            News::Followed
        );
        let change = d.poll_change().unwrap();
        assert_eq!((change.previous, change.leader), (None, Some(a.clone())));
        // Exited of nobody followed: false.
        let mut fresh = group().0;
        assert!(!fresh.handle_exited(ms(1), &a));
    }

    #[test]
    fn news_from_or_about_a_process_off_the_list_is_untrusted() {
        let (mut d, a, _, _) = group();
        let outsider = Upid::new("master", &NodeAddr::new("10.9.9.9", 5050));
        // Same host and port as A but another process: not A.
        let impostor = Upid::new("marathon", &a.node());
        for (from, named) in [(&outsider, &a), (&impostor, &a), (&a, &outsider)] {
            assert_eq!(
                d.handle_new_master_detected(ms(1), from, &news(Some(named), 9)),
                News::Untrusted
            );
        }
        assert_eq!(d.leader(), None);
        assert_eq!(d.term(), 0);
    }

    #[test]
    fn same_seed_same_query_schedule() {
        let schedule = |seed| {
            let mut d = group().0;
            let mut rng = Rng::seed_from_u64(seed);
            let mut at = Vec::new();
            for _ in 0..8 {
                let now = d.next_deadline().unwrap();
                d.poll_queries(now, &mut rng);
                at.push(now);
            }
            at
        };
        assert_eq!(schedule(11), schedule(11));
    }

    #[test]
    fn a_master_list_parses_from_the_flag() {
        let one = Masters::parse("127.0.0.1:5050").unwrap();
        assert!(one.is_single());
        assert_eq!(one.first().to_string(), "master@127.0.0.1:5050");
        let three = Masters::parse(" 10.0.0.1:5050, 10.0.0.2:5050 ,m2@10.0.0.3:5051").unwrap();
        assert_eq!(
            three.to_string(),
            "master@10.0.0.1:5050,master@10.0.0.2:5050,m2@10.0.0.3:5051"
        );
        // A master given twice is followed once.
        let twice = Masters::parse("10.0.0.1:5050,10.0.0.2:5050,10.0.0.1:5050").unwrap();
        assert_eq!(twice.as_slice().len(), 2);
        assert!(Masters::parse("10.0.0.1:5050,10.0.0.1:5050")
            .unwrap()
            .is_single());
        for bad in [
            "",
            "10.0.0.1:5050,",
            ",10.0.0.1:5050",
            "10.0.0.1",
            "a@b@c:1",
        ] {
            assert!(
                matches!(Masters::parse(bad), Err(MasterError::BadMasters { .. })),
                "{bad:?} accepted"
            );
        }
        let many = (0..=MASTERS_MAX)
            .map(|i| format!("10.0.1.{i}:5050"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(matches!(
            Masters::parse(&many),
            Err(MasterError::TooMany {
                what: "masters",
                ..
            })
        ));
        assert!(matches!(
            Masters::new(Vec::new()),
            Err(MasterError::BadMasters { .. })
        ));
        assert_eq!(Masters::from(master(1)), Masters::one(master(1)));
        assert!(Masters::one(master(1)).contains(&master(1)));
        assert!(!Masters::one(master(1)).contains(&master(2)));
    }
}
