//! Named maxima of the slave crate: every map or buffer that grows from outside input is bounded
//! by one of these.

use std::time::Duration;

/// Most tasks one containerizer tracks at once (launched or recovered, not yet terminated).
pub const CONTAINERIZER_TASKS_MAX: usize = 4096;

/// Longest task id accepted, in bytes (Marathon ids with a UUID stay far below).
pub const TASK_ID_LEN_MAX: usize = 512;

/// Most environment variables given to one task (from the task spec, before the ones the
/// containerizer adds).
pub const TASK_ENV_VARS_MAX: usize = 1024;

/// Largest total size of a task's environment (names plus values), in bytes.
pub const TASK_ENV_BYTES_MAX: usize = 1 << 20;

/// Largest command line of a task (value plus arguments), in bytes.
pub const TASK_COMMAND_BYTES_MAX: usize = 1 << 20;

/// Most ports assigned to one task.
pub const TASK_PORTS_MAX: usize = 256;

/// Smallest memory limit given to a task's cgroup, as in Mesos (`MIN_MEMORY`): below this a
/// shell cannot even start reliably.
pub const TASK_MEMORY_LIMIT_MIN_BYTES: u64 = 32 << 20;

/// Smallest CPU share value (the kernel's minimum for `cpu.shares`, as in Mesos).
pub const TASK_CPU_SHARES_MIN: u64 = 2;

/// Smallest CFS quota per period, in microseconds (1 ms, as in Mesos).
pub const TASK_CPU_QUOTA_MIN_US: u64 = 1_000;

/// CFS period for every task, in microseconds (100 ms).
pub const TASK_CPU_PERIOD_US: u64 = 100_000;

/// Longest wait for a freshly spawned supervisor to report that the task was started.
pub const SUPERVISOR_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Largest handshake line a supervisor may write.
pub const SUPERVISOR_HANDSHAKE_BYTES_MAX: usize = 4096;

/// Longest status or spec file the containerizer reads back from a run directory.
pub const RUN_FILE_BYTES_MAX: u64 = 4 << 20;

/// How often a supervisor looks at its task's OOM counter and kill request while the task runs.
pub const SUPERVISOR_TICK: Duration = Duration::from_millis(250);

/// How long a supervisor waits for the processes of a finished task's cgroup to disappear.
pub const CGROUP_EMPTY_TIMEOUT: Duration = Duration::from_secs(10);

/// Extra time after a kill's grace period after which the containerizer itself SIGKILLs the
/// task's cgroup, should its supervisor not have done so.
pub const KILL_ESCALATION_MARGIN: Duration = Duration::from_secs(5);

/// Longest wait of [`crate::containerizer::Containerizer::destroy_all`] for supervisors to exit.
pub const DESTROY_ALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest chunk returned by one sandbox file read (`/files/read`).
pub const SANDBOX_READ_LENGTH_MAX: u64 = 4 << 20;

/// Longest relative path accepted for a sandbox file, in bytes.
pub const SANDBOX_PATH_LEN_MAX: usize = 4096;

/// Default `pids.max` of a task's cgroup.
pub const TASK_PIDS_MAX_DEFAULT: u64 = 4096;

/// Most tasks the slave keeps in its books at once (live, or terminal with an unacknowledged
/// update). A RunTask beyond it fails the task at once.
pub const SLAVE_TASKS_MAX: usize = CONTAINERIZER_TASKS_MAX;

/// Most frameworks the slave keeps in its books at once.
pub const SLAVE_FRAMEWORKS_MAX: usize = 1024;

/// Most unacknowledged status updates queued for one task. Beyond it, new non-terminal updates
/// (health flaps of a task whose framework stopped acknowledging) are dropped; a terminal update
/// is always queued.
pub const TASK_UPDATES_PENDING_MAX: usize = 64;

/// Most kills remembered for tasks that have not arrived yet (a KillTask overtaking its
/// RunTask): the oldest is forgotten first.
pub const KILLS_BEFORE_LAUNCH_MAX: usize = 1024;

/// First delay between two registration attempts, and between two sends of one status update.
pub const RETRY_BACKOFF_INITIAL: Duration = Duration::from_secs(1);

/// Longest delay between two registration attempts or two sends of one status update.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Default grace period between SIGTERM and SIGKILL when a task is killed (Mesos: 3 s).
pub const KILL_GRACE_PERIOD_DEFAULT: Duration = Duration::from_secs(3);

/// Shortest interval between two probes of one health check (protects the slave from a
/// health check with `interval_secs: 0`).
pub const HEALTH_CHECK_INTERVAL_MIN: Duration = Duration::from_millis(100);

/// Longest time one health probe may take, whatever the health check says.
pub const HEALTH_CHECK_TIMEOUT_MAX: Duration = Duration::from_secs(300);

/// Probes waiting for a worker of the real prober; beyond it probes fail at once.
pub const HEALTH_PROBES_QUEUED_MAX: usize = 4096;

/// Worker threads of the real health prober.
pub const HEALTH_PROBER_THREADS: usize = 4;

/// Launcher threads of the real containerizer: launches (cgroups, spec file, supervisor start
/// and handshake) run there, off the slave's actor thread, a few at a time. Launches mostly
/// wait (fork/exec, the supervisor's handshake), so a few more threads than cores pay off.
pub const LAUNCHER_THREADS: usize = 4;

/// Largest HTTP response head read by an HTTP health probe.
pub const HEALTH_HTTP_RESPONSE_BYTES_MAX: usize = 8192;

/// Largest checkpoint record (a task with its pending updates), in bytes.
pub const CHECKPOINT_RECORD_BYTES_MAX: usize = 16 << 20;

/// Default interval between heartbeats until the master says otherwise.
pub const HEARTBEAT_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);

/// Shortest heartbeat interval accepted from a master.
pub const HEARTBEAT_INTERVAL_MIN: Duration = Duration::from_millis(10);

/// Longest task user name the slave looks up, in bytes.
pub const TASK_USER_NAME_LEN_MAX: usize = 256;

/// Largest buffer given to `getpwnam_r` / `getgrouplist` while looking a task user up, in
/// bytes (the buffer doubles from 16 KiB while the C library asks for more).
pub const USER_LOOKUP_BUFFER_BYTES_MAX: usize = 1 << 20;

/// Most supplementary groups a task user may have (Linux' `NGROUPS_MAX`).
pub const TASK_USER_GROUPS_MAX: usize = 65_536;

/// How often a slave reports its tasks' real use to the master (the web console's charts
/// sample every 10 s).
pub const USAGE_REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Most entries `/files/browse` lists of one sandbox directory.
pub const SANDBOX_BROWSE_ENTRIES_MAX: usize = 10_000;
