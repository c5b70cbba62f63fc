//! Named bounds of the SDK: every queue, retry loop and timeout of the scheduler driver and the
//! coordination client has one here, with its unit in the name.

use std::time::Duration;

// ---- the scheduler driver -------------------------------------------------------------------

/// First delay between registration attempts.
pub const REGISTRATION_BACKOFF_MIN: Duration = Duration::from_secs(1);

/// Longest delay between registration attempts.
pub const REGISTRATION_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Most calls to the master (launches, kills, acknowledgements, ...) the driver holds until the
/// state writes before them commit; a call beyond it is dropped with a warning, as a call made
/// while no master is known is (the framework is far behind its own store and should slow
/// down).
pub const HELD_CALLS_MAX: usize = 100_000;

// ---- the coordination client ([`crate::coord::CoordClient`]) ------------------------------------

/// How long the client waits for the answer to a request's first attempt before it sends it
/// again (to whichever master leads then); each further attempt waits twice as long, up to
/// [`COORD_REQUEST_TIMEOUT_MAX`]. A raft commit takes a few network round trips, far less.
pub const COORD_REQUEST_TIMEOUT_MIN: Duration = Duration::from_millis(500);

/// Longest wait for the answer to one attempt of a request.
pub const COORD_REQUEST_TIMEOUT_MAX: Duration = Duration::from_secs(4);

/// Most sends of one request (retries after a timeout and resends after a redirect): a request
/// still unanswered then is reported with an unknown outcome.
pub const COORD_REQUEST_ATTEMPTS_MAX: u32 = 16;

/// Longest time a request is retried, from when it was made (a master failover takes a few
/// seconds; a group without a majority for longer than this fails the requests made meanwhile,
/// with an unknown outcome).
pub const COORD_REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// Most requests in flight at once: a request whose id is this far above the oldest one still
/// unanswered waits. Below the masters' `COORD_ANSWERS_PER_CLIENT_MAX` (64), so that the store
/// never refuses a write for too many unacknowledged answers.
pub const COORD_REQUESTS_IN_FLIGHT_MAX: u64 = 32;

/// Most requests a client holds (in flight or waiting); one more is refused at once as
/// overloaded.
pub const COORD_REQUESTS_QUEUED_MAX: usize = 4_096;

/// Most watches of one client (the masters accept 256 per session).
pub const COORD_CLIENT_WATCHES_MAX: usize = 64;

/// A watch with no notification for this long is registered again from its resume revision:
/// this finds a lost last notification (a gap in `seq` only shows at the next one) and a dead
/// master (no confirmation).
pub const COORD_WATCH_REFRESH_INTERVAL: Duration = Duration::from_secs(3);

/// Longest wait for the answer to a keep-alive before the followed master is suspected (and
/// the next keep-alive goes to whichever master leads then). Never more than a keep-alive
/// interval (a third of the ttl).
pub const COORD_KEEP_ALIVE_ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// Most keep-alives of a session sent and not yet answered. Each answer is credited to the
/// oldest of them sent to the answering master (never to a later one: see
/// [`crate::coord::CoordClient`]); beyond this no more are sent until one is answered (the
/// session is lost by then: they go out every third of its ttl).
pub const COORD_KEEP_ALIVES_OUTSTANDING_MAX: usize = 16;

/// The session ttl of an [`crate::coord::ElectionConfig`] by default: how long a crashed
/// leader keeps its election key before a standby may take over.
pub const COORD_SESSION_TTL_DEFAULT: Duration = Duration::from_secs(10);

/// Wait before a candidate tries again after a failed session grant or read (no master
/// answering within [`COORD_REQUEST_DEADLINE`], a limit).
pub const COORD_ELECTION_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Most keys one page of a [`crate::coord::ReplicatedState`] load reads.
pub const STATE_LOAD_PAGE_KEYS: u32 = 1_000;

/// Most writes of a [`crate::coord::ReplicatedState`] waiting for the one in flight to commit;
/// one more is refused (the framework writes faster than the masters commit).
pub const STATE_WRITES_QUEUED_MAX: usize = 4_096;
