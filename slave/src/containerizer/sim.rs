//! [`SimContainerizer`]: a containerizer for the simulator. Tasks run no process; they "run"
//! on the slave's virtual clock for as long as their command says, and end through the
//! termination callback when [`Containerizer::poll`] reaches their end. Deterministic: no
//! thread, no clock of its own, no randomness.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{
    CommandSpec, Containerizer, ContainerizerError, LaunchInfo, RecoverInfo, RecoveredTask, TaskId,
    TaskSpec, Termination, TerminationCallback, Usage,
};
use crate::limits;

/// How a simulated task behaves, read from its command.
///
/// A command `sim:<item>;<item>...` with items
/// - `run=<duration>` (`30s`, `500ms`, `2m`, `1h`): it ends after that long (default: never);
/// - `exit=<code>`: its exit code when it ends by itself (default 0);
/// - `oom`: it is OOM-killed at the end of its run (at once without `run=`);
/// - `launch-fail`: its launch fails;
/// - `ignore-term`: it ignores SIGTERM, so a kill takes the whole grace period (then SIGKILL).
///
/// Any other command (a real shell line) runs until killed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimBehaviour {
    /// How long it runs by itself; None: until killed.
    pub run_for: Option<Duration>,
    /// Exit code when it ends by itself.
    pub exit_code: i32,
    /// OOM-killed instead of exiting.
    pub oom: bool,
    /// The launch fails.
    pub launch_fails: bool,
    /// SIGTERM is ignored.
    pub ignores_sigterm: bool,
}

fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |i| text.split_at(i));
    let value: f64 = number.parse().ok()?;
    let factor = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    let secs = value * factor;
    (secs.is_finite() && (0.0..1e9).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

impl SimBehaviour {
    /// The behaviour of a command (see the type's docs).
    pub fn parse(command: &CommandSpec) -> Result<SimBehaviour, String> {
        let mut behaviour = SimBehaviour::default();
        let Some(items) = command.value.trim().strip_prefix("sim:") else {
            return Ok(behaviour);
        };
        for item in items.split(';').map(str::trim).filter(|i| !i.is_empty()) {
            match item.split_once('=') {
                Some(("run", d)) => {
                    behaviour.run_for =
                        Some(parse_duration(d).ok_or_else(|| format!("bad duration '{d}'"))?)
                }
                Some(("exit", code)) => {
                    behaviour.exit_code = code
                        .parse()
                        .map_err(|_| format!("bad exit code '{code}'"))?
                }
                None if item == "oom" => behaviour.oom = true,
                None if item == "launch-fail" => behaviour.launch_fails = true,
                None if item == "ignore-term" => behaviour.ignores_sigterm = true,
                _ => return Err(format!("unknown sim command item '{item}'")),
            }
        }
        Ok(behaviour)
    }
}

#[derive(Debug, Clone)]
struct SimTask {
    info: LaunchInfo,
    behaviour: SimBehaviour,
    cpus: f64,
    mem_mb: f64,
    /// When it ends by itself; set at the first poll after the launch.
    ends_at: Option<Duration>,
    /// A kill asked (grace), not yet seen by a poll.
    kill_requested: Option<Duration>,
    /// A kill seen by a poll: when it takes effect and with which signal.
    killed_at: Option<(Duration, i32)>,
}

impl SimTask {
    /// When it ends, if that is known.
    fn end_at(&self) -> Option<Duration> {
        match (self.ends_at, self.killed_at) {
            (Some(n), Some((k, _))) => Some(n.min(k)),
            (n, k) => n.or(k.map(|(at, _)| at)),
        }
    }

    /// How it ends, once [`SimTask::end_at`] is known: killed if the kill comes first, else
    /// by itself (OOM or its exit code).
    fn termination(&self) -> Termination {
        match self.killed_at {
            Some((at, signal)) if self.ends_at.is_none_or(|natural| at < natural) => Termination {
                exit_code: None,
                signal: Some(signal),
                oom_killed: false,
                message: "killed on request (simulated)".into(),
            },
            _ if self.behaviour.oom => Termination {
                exit_code: None,
                signal: Some(libc::SIGKILL),
                oom_killed: true,
                message: "Memory limit exceeded (simulated)".into(),
            },
            _ => Termination {
                exit_code: Some(self.behaviour.exit_code),
                signal: None,
                oom_killed: false,
                message: format!("exited with status {}", self.behaviour.exit_code),
            },
        }
    }
}

#[derive(Debug, Default)]
struct MachineState {
    tasks: BTreeMap<TaskId, SimTask>,
    next_pid: u32,
    /// Tasks launched or asked to die since the last poll: the poll gives them their end.
    fresh: Vec<TaskId>,
    /// When tasks end, earliest first. An entry whose task is gone or ends at another time
    /// (a kill that came first) is stale and skipped: a poll costs the tasks that end, not
    /// every task on the machine.
    ends: BTreeSet<(Duration, TaskId)>,
}

/// The simulated machine a slave runs on: its tasks survive a crash of the simulated slave
/// (clone the handle into the restarted slave's containerizer).
#[derive(Debug, Clone, Default)]
pub struct SimMachine {
    state: Arc<Mutex<MachineState>>,
}

impl SimMachine {
    /// A machine without tasks.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MachineState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ids of the tasks running on the machine.
    pub fn task_ids(&self) -> Vec<TaskId> {
        self.lock().tasks.keys().cloned().collect()
    }

    /// True when the task runs.
    pub fn is_running(&self, task_id: &str) -> bool {
        self.lock().tasks.contains_key(task_id)
    }

    /// The running tasks `which` selects no longer end by themselves (nor get OOM-killed):
    /// they run until killed. A kill already asked still ends them. Returns how many changed.
    pub fn run_until_killed(&self, which: impl Fn(&str) -> bool) -> usize {
        let mut guard = self.lock();
        let MachineState { tasks, ends, .. } = &mut *guard;
        let mut changed = 0;
        for (id, task) in tasks.iter_mut() {
            if !which(id) || (task.behaviour.run_for.is_none() && !task.behaviour.oom) {
                continue;
            }
            task.behaviour.run_for = None;
            task.behaviour.oom = false;
            // Its entry in the ends set is stale now (dropped when it comes due); a kill seen
            // already still needs one.
            task.ends_at = None;
            if let Some(at) = task.end_at() {
                ends.insert((at, id.clone()));
            }
            changed += 1;
        }
        changed
    }
}

/// The simulator's containerizer (see the [module docs](self)).
pub struct SimContainerizer {
    machine: SimMachine,
    on_termination: TerminationCallback,
}

impl SimContainerizer {
    /// A containerizer of `machine`; terminations are reported through `on_termination` from
    /// inside [`Containerizer::poll`].
    pub fn new(machine: SimMachine, on_termination: TerminationCallback) -> Self {
        SimContainerizer {
            machine,
            on_termination,
        }
    }

    /// The machine.
    pub fn machine(&self) -> &SimMachine {
        &self.machine
    }
}

impl Containerizer for SimContainerizer {
    fn launch(&mut self, spec: TaskSpec) -> Result<LaunchInfo, ContainerizerError> {
        let behaviour = SimBehaviour::parse(&spec.command).map_err(|reason| {
            ContainerizerError::InvalidSpec {
                task_id: spec.task_id.clone(),
                reason,
            }
        })?;
        if behaviour.launch_fails {
            return Err(ContainerizerError::Launch {
                task_id: spec.task_id.clone(),
                reason: "simulated launch failure".into(),
            });
        }
        let mut state = self.machine.lock();
        if state.tasks.contains_key(&spec.task_id) {
            return Err(ContainerizerError::AlreadyRunning(spec.task_id));
        }
        if state.tasks.len() >= limits::CONTAINERIZER_TASKS_MAX {
            return Err(ContainerizerError::TooManyTasks(
                limits::CONTAINERIZER_TASKS_MAX,
            ));
        }
        state.next_pid += 2;
        let pid = 1000 + state.next_pid;
        let info = LaunchInfo {
            task_id: spec.task_id.clone(),
            pid,
            supervisor_pid: pid - 1,
            supervisor_start_time: 0,
            cgroup: format!("sim/{}", super::task_dir_name(&spec.task_id)).into(),
            sandbox: spec.sandbox.clone(),
            run_dir: PathBuf::new(),
        };
        state.fresh.push(spec.task_id.clone());
        state.tasks.insert(
            spec.task_id.clone(),
            SimTask {
                info: info.clone(),
                behaviour,
                cpus: spec.cpus,
                mem_mb: spec.mem_mb,
                ends_at: None,
                kill_requested: None,
                killed_at: None,
            },
        );
        Ok(info)
    }

    fn kill(&mut self, task_id: &str, grace: Duration) -> Result<(), ContainerizerError> {
        let mut state = self.machine.lock();
        let task = state
            .tasks
            .get_mut(task_id)
            .ok_or_else(|| ContainerizerError::UnknownTask(task_id.to_string()))?;
        if task.killed_at.is_none() {
            task.kill_requested = Some(task.kill_requested.map_or(grace, |g| g.min(grace)));
            state.fresh.push(task_id.to_string());
        }
        Ok(())
    }

    fn usage(&self, task_id: &str) -> Result<Usage, ContainerizerError> {
        let state = self.machine.lock();
        let task = state
            .tasks
            .get(task_id)
            .ok_or_else(|| ContainerizerError::UnknownTask(task_id.to_string()))?;
        let mem_limit_bytes = (task.mem_mb * 1024.0 * 1024.0) as u64;
        Ok(Usage {
            cpus_limit: task.cpus,
            mem_limit_bytes,
            mem_rss_bytes: mem_limit_bytes / 2,
            mem_total_bytes: mem_limit_bytes / 2,
            processes: 1,
            ..Usage::default()
        })
    }

    fn recover(&mut self, known: Vec<RecoverInfo>) -> Vec<RecoveredTask> {
        let mut state = self.machine.lock();
        let mut recovered = Vec::with_capacity(known.len());
        let mut keep = std::collections::BTreeSet::new();
        for info in known {
            keep.insert(info.task_id.clone());
            match state.tasks.get(&info.task_id) {
                Some(task) => recovered.push(RecoveredTask::Running(task.info.clone())),
                None => recovered.push(RecoveredTask::Terminated {
                    info,
                    termination: Termination {
                        exit_code: None,
                        signal: None,
                        oom_killed: false,
                        message: "the task is not running on this machine".into(),
                    },
                }),
            }
        }
        state.tasks.retain(|id, _| keep.contains(id));
        recovered
    }

    fn forget(&mut self, _task_id: &str) {}

    fn destroy_all(&mut self) {
        let tasks = {
            let mut state = self.machine.lock();
            state.fresh.clear();
            state.ends.clear();
            std::mem::take(&mut state.tasks)
        };
        for (id, _) in tasks {
            (self.on_termination)(
                id,
                Termination {
                    exit_code: None,
                    signal: Some(libc::SIGKILL),
                    oom_killed: false,
                    message: "killed on request (simulated)".into(),
                },
            );
        }
    }

    fn poll(&mut self, now: Duration) -> Option<Duration> {
        let mut ended = Vec::new();
        let next = {
            let mut guard = self.machine.lock();
            let state = &mut *guard;
            for id in std::mem::take(&mut state.fresh) {
                let Some(task) = state.tasks.get_mut(&id) else {
                    continue;
                };
                if task.ends_at.is_none() {
                    task.ends_at = match (task.behaviour.run_for, task.behaviour.oom) {
                        (Some(d), _) => Some(now + d),
                        (None, true) => Some(now),
                        (None, false) => None,
                    };
                }
                if let Some(grace) = task.kill_requested.take() {
                    task.killed_at = Some(if task.behaviour.ignores_sigterm {
                        (now + grace, libc::SIGKILL)
                    } else {
                        (now, libc::SIGTERM)
                    });
                }
                if let Some(at) = task.end_at() {
                    state.ends.insert((at, id));
                }
            }
            // Due ends in time order; a stale entry is dropped when it comes due (until then
            // it may only make the next deadline early: one wake-up that finds nothing).
            while state.ends.first().is_some_and(|(at, _)| *at <= now) {
                let (at, id) = state.ends.pop_first().expect("checked above");
                if state.tasks.get(&id).and_then(SimTask::end_at) != Some(at) {
                    continue;
                }
                let task = state.tasks.remove(&id).expect("checked above");
                ended.push((id, task.termination()));
            }
            state.ends.first().map(|(at, _)| *at)
        };
        for (id, termination) in ended {
            (self.on_termination)(id, termination);
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, command: &str) -> TaskSpec {
        TaskSpec {
            task_id: id.into(),
            command: CommandSpec {
                shell: true,
                value: command.into(),
                arguments: vec![],
            },
            env: BTreeMap::new(),
            cpus: 1.0,
            mem_mb: 128.0,
            ports: vec![],
            sandbox: std::path::Path::new("/sandbox").into(),
            hostname: "h".into(),
            user: None,
        }
    }

    type Log = Arc<Mutex<Vec<(String, Termination)>>>;

    fn containerizer(machine: &SimMachine) -> (SimContainerizer, Log) {
        let log: Log = Arc::default();
        let sink = Arc::clone(&log);
        let c = SimContainerizer::new(
            machine.clone(),
            Arc::new(move |id, t| sink.lock().unwrap().push((id, t))),
        );
        (c, log)
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn parses_commands() {
        let b = SimBehaviour::parse(&spec("t", "sim:run=1.5s;exit=3").command).unwrap();
        assert_eq!(b.run_for, Some(Duration::from_millis(1500)));
        assert_eq!(b.exit_code, 3);
        assert!(
            SimBehaviour::parse(&spec("t", "sim:oom").command)
                .unwrap()
                .oom
        );
        assert_eq!(
            SimBehaviour::parse(&spec("t", "sim:run=2m").command)
                .unwrap()
                .run_for,
            Some(s(120))
        );
        assert_eq!(
            SimBehaviour::parse(&spec("t", "python -m http.server").command).unwrap(),
            SimBehaviour::default()
        );
        assert!(SimBehaviour::parse(&spec("t", "sim:run=abc").command).is_err());
        assert!(SimBehaviour::parse(&spec("t", "sim:fly").command).is_err());
    }

    #[test]
    fn tasks_end_when_their_time_is_up_or_when_killed() {
        let machine = SimMachine::new();
        let (mut c, log) = containerizer(&machine);
        c.launch(spec("short", "sim:run=10s;exit=2")).unwrap();
        c.launch(spec("forever", "sleep 1000")).unwrap();
        c.launch(spec("stubborn", "sim:ignore-term")).unwrap();
        assert!(matches!(
            c.launch(spec("bad", "sim:launch-fail")),
            Err(ContainerizerError::Launch { .. })
        ));
        assert!(matches!(
            c.launch(spec("short", "true")),
            Err(ContainerizerError::AlreadyRunning(_))
        ));
        assert_eq!(c.poll(s(5)), Some(s(15)));
        assert_eq!(c.poll(s(14)), Some(s(15)));
        assert!(log.lock().unwrap().is_empty());
        assert_eq!(c.poll(s(15)), None);
        assert_eq!(log.lock().unwrap()[0].0, "short");
        assert_eq!(log.lock().unwrap()[0].1.exit_code, Some(2));
        c.kill("forever", s(3)).unwrap();
        c.kill("stubborn", s(3)).unwrap();
        assert_eq!(c.poll(s(20)), Some(s(23)));
        assert_eq!(log.lock().unwrap()[1].1.signal, Some(libc::SIGTERM));
        c.poll(s(23));
        assert_eq!(log.lock().unwrap()[2].0, "stubborn");
        assert_eq!(log.lock().unwrap()[2].1.signal, Some(libc::SIGKILL));
        assert!(machine.task_ids().is_empty());
    }

    #[test]
    fn tasks_made_to_run_until_killed_end_only_when_killed() {
        let machine = SimMachine::new();
        let (mut c, log) = containerizer(&machine);
        c.launch(spec("a.1", "sim:run=10s")).unwrap();
        c.launch(spec("a.2", "sim:run=10s")).unwrap();
        c.launch(spec("b.1", "sim:run=10s")).unwrap();
        c.launch(spec("a.3", "sim:run=30s;ignore-term")).unwrap();
        assert_eq!(c.poll(s(1)), Some(s(11)));
        c.kill("a.3", s(5)).unwrap();
        assert_eq!(c.poll(s(2)), Some(s(7)), "a.3's kill comes first");
        // Not yet polled: made to run until killed before its end is known.
        c.launch(spec("a.4", "sim:oom")).unwrap();
        assert_eq!(machine.run_until_killed(|id| id.starts_with("a.")), 4);
        assert_eq!(machine.run_until_killed(|id| id.starts_with("a.")), 0);
        c.poll(s(3));
        c.poll(s(7));
        let ended = || -> Vec<String> {
            log.lock()
                .unwrap()
                .iter()
                .map(|(id, _)| id.clone())
                .collect()
        };
        assert_eq!(ended(), ["a.3"], "the kill still ends it");
        c.poll(s(11));
        assert_eq!(
            ended(),
            ["a.3", "b.1"],
            "only the task not selected ends by itself"
        );
        assert_eq!(c.poll(s(1000)), None);
        assert_eq!(machine.task_ids(), ["a.1", "a.2", "a.4"]);
        c.kill("a.1", s(5)).unwrap();
        c.poll(s(1001));
        assert_eq!(ended().len(), 3);
    }

    #[test]
    fn oom_and_recovery_after_a_slave_crash() {
        let machine = SimMachine::new();
        let (mut c, log) = containerizer(&machine);
        let kept = c.launch(spec("kept", "sim:run=100s")).unwrap();
        c.launch(spec("orphan", "sleep 1")).unwrap();
        c.launch(spec("hog", "sim:oom")).unwrap();
        c.poll(s(1));
        assert!(log.lock().unwrap()[0].1.oom_killed);
        drop(c);
        let (mut c, log) = containerizer(&machine);
        let mut lost = kept.clone();
        lost.task_id = "lost".into();
        let recovered = c.recover(vec![kept.clone(), lost]);
        assert!(matches!(&recovered[0], RecoveredTask::Running(i) if i.task_id == "kept"));
        assert!(matches!(&recovered[1], RecoveredTask::Terminated { .. }));
        assert_eq!(machine.task_ids(), vec!["kept".to_string()]);
        assert_eq!(c.poll(s(50)), Some(s(101)));
        c.poll(s(101));
        assert_eq!(log.lock().unwrap()[0].0, "kept");
        assert_eq!(
            c.usage("kept").map(|_| ()).unwrap_err().to_string(),
            "unknown task 'kept'"
        );
    }
}
