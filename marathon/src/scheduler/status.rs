//! Status updates, (re-)registration and reconciliation, and the periodic housekeeping tick.

use super::*;

impl MarathonScheduler {
    pub(super) fn handle_status(&mut self, d: &mut Driver<'_, '_>, status: &TaskStatus) {
        self.touch(d);
        if !self.is_acting() {
            return;
        }
        let Some(mut instance) = self.instances.get(&status.task_id).cloned() else {
            if !status.state.is_terminal() && status.state != TaskState::Unknown {
                tracing::info!(task = %status.task_id, state = status.state.as_str(), "unknown task; killing it");
                d.kill_task(&status.task_id);
            }
            // Nothing to write: acknowledged with the next commit, after the updates before it.
            self.persist_status(d, Vec::new(), status);
            return;
        };
        let app = self.apps.get(&instance.app_id).map(|r| r.app.clone());
        let previous_state = instance.state;
        let previous_alive = instance.health.as_ref().map(|h| h.alive);
        let mut ops = Vec::new();
        let mut events: Vec<(&'static str, Value)> = Vec::new();
        if let Some(slave) = &status.slave_id {
            instance.slave_id = Some(slave.clone());
        }
        match status.state {
            TaskState::Staging | TaskState::Starting | TaskState::Running | TaskState::Killing => {
                instance.state = status.state;
                instance.unreachable_since_ms = None;
                if status.state == TaskState::Running && instance.started_at_ms.is_none() {
                    instance.started_at_ms = Some(self.wall_ms);
                }
                if status.state == TaskState::Running && previous_state != TaskState::Running {
                    tracing::info!(app_id = %instance.app_id, task_id = %instance.task_id, host = %instance.host, "instance running");
                }
                if let Some(healthy) = status.healthy {
                    let health = instance.health.get_or_insert_with(HealthRecord::default);
                    health.alive = healthy;
                    if healthy {
                        health.consecutive_failures = 0;
                        health.last_success_ms = Some(self.wall_ms);
                        health.first_success_ms.get_or_insert(self.wall_ms);
                    } else {
                        health.consecutive_failures += 1;
                        health.last_failure_ms = Some(self.wall_ms);
                        health.last_failure_cause = status.message.clone();
                    }
                    if previous_alive != Some(healthy) {
                        events.push((
                            "health_status_changed_event",
                            json!({"eventType": "health_status_changed_event", "timestamp": ts(self.wall_ms),
                                   "appId": instance.app_id, "instanceId": instance.instance_id(),
                                   "taskId": instance.task_id.as_str(), "version": instance.version, "alive": healthy}),
                        ));
                    }
                    if healthy {
                        self.backoffs.remove(&instance.app_id);
                    }
                }
                if instance.is_killing() && status.state == TaskState::Running {
                    // A kill is in flight; the task still counts as running until it ends.
                }
                ops.push(StoreOp::PutInstance(Box::new(instance.clone())));
                self.instances
                    .insert(instance.task_id.clone(), instance.clone());
            }
            TaskState::Unreachable | TaskState::Lost => {
                instance.state = TaskState::Unreachable;
                if instance.unreachable_since_ms.is_none() {
                    instance.unreachable_since_ms = Some(self.wall_ms);
                }
                if let Some(UnreachableStrategy::Enabled {
                    inactive_after_seconds,
                    expunge_after_seconds,
                }) = app.as_ref().map(|a| a.unreachable_strategy)
                {
                    for secs in [inactive_after_seconds, expunge_after_seconds] {
                        if secs > 0 {
                            d.ctx().delay(Duration::from_secs(secs), MarathonWake);
                        }
                    }
                }
                ops.push(StoreOp::PutInstance(Box::new(instance.clone())));
                self.instances
                    .insert(instance.task_id.clone(), instance.clone());
            }
            _ => {
                // Terminal (or unknown to the master): expunge; the app is short and queues a
                // replacement.
                instance.state = status.state;
                self.instances.remove(&instance.task_id);
                ops.push(StoreOp::DeleteInstance(instance.task_id.clone()));
                let is_failure = matches!(
                    status.state,
                    TaskState::Failed | TaskState::Finished | TaskState::Error
                ) && !instance.is_killing();
                tracing::info!(
                    app_id = %instance.app_id,
                    task_id = %instance.task_id,
                    host = %instance.host,
                    state = status.state.as_str(),
                    killed = instance.is_killing(),
                    failed = is_failure,
                    message = status.message.as_deref().unwrap_or(""),
                    "instance ended"
                );
                if matches!(
                    status.state,
                    TaskState::Failed | TaskState::Error | TaskState::Lost | TaskState::Gone
                ) || is_failure
                {
                    self.last_failures.insert(
                        instance.app_id.clone(),
                        TaskFailure {
                            app_id: instance.app_id.clone(),
                            host: instance.host.clone(),
                            message: status.message.clone().unwrap_or_default(),
                            state: status.state.as_str().to_string(),
                            task_id: instance.task_id.to_string(),
                            timestamp_ms: self.wall_ms,
                            version: instance.version.clone(),
                            slave_id: instance.slave_id.as_ref().map(|s| s.to_string()),
                        },
                    );
                }
                if is_failure {
                    if let Some(app) = &app {
                        let strategy = BackoffStrategy::of_app(app);
                        let backoff = self.backoffs.entry(instance.app_id.clone()).or_default();
                        backoff.handle_failure(self.mono, &strategy);
                        let wait = backoff.delay_until.saturating_sub(self.mono);
                        d.ctx().delay(wait, MarathonWake);
                    }
                }
                if status.reason == Some(Reason::TaskUnhealthy) {
                    events.push((
                        "unhealthy_instance_kill_event",
                        json!({"eventType": "unhealthy_instance_kill_event", "timestamp": ts(self.wall_ms),
                               "appId": instance.app_id, "taskId": instance.task_id.as_str(),
                               "instanceId": instance.instance_id(), "version": instance.version,
                               "reason": status.message.clone().unwrap_or_default(),
                               "host": instance.host,
                               "slaveId": instance.slave_id.as_ref().map(|s| s.to_string())}),
                    ));
                }
            }
        }
        self.persist_status(d, ops, status);
        if !self.is_acting() {
            return;
        }
        if previous_state != instance.state || status.state.is_terminal() {
            events.push((
                "status_update_event",
                self.status_update_event(&instance, status),
            ));
            events.push((
                "instance_changed_event",
                self.instance_changed_event(&instance),
            ));
        }
        for (kind, event) in events {
            self.events.publish(kind, &event);
        }
        if status.state == TaskState::Running {
            self.probe_readiness(d, &instance.task_id);
        }
        self.converge(d);
    }

    pub(super) fn status_update_event(&self, i: &Instance, status: &TaskStatus) -> Value {
        json!({
            "eventType": "status_update_event",
            "timestamp": ts(self.wall_ms),
            "slaveId": i.slave_id.as_ref().map(|s| s.to_string()).unwrap_or_default(),
            "taskId": i.task_id.as_str(),
            "taskStatus": status.state.as_str(),
            "message": status.message.clone().unwrap_or_default(),
            "appId": i.app_id,
            "host": i.host,
            "ipAddresses": [{"ipAddress": i.host, "protocol": "IPv4"}],
            "ports": i.ports,
            "version": i.version,
        })
    }

    pub(super) fn instance_changed_event(&self, i: &Instance) -> Value {
        json!({
            "eventType": "instance_changed_event",
            "timestamp": ts(self.wall_ms),
            "instanceId": i.instance_id(),
            "condition": i.condition(),
            "runSpecId": i.app_id,
            "agentId": i.slave_id.as_ref().map(|s| s.to_string()).unwrap_or_default(),
            "host": i.host,
            "runSpecVersion": i.version,
        })
    }

    // ---- registration, reconciliation, timers ----------------------------------------------

    pub(super) fn handle_registered(&mut self, d: &mut Driver<'_, '_>, id: Option<&FrameworkId>) {
        self.touch(d);
        if let Some(id) = id {
            if self.framework_id.as_ref() != Some(id) {
                if !self.persist(d, &[StoreOp::PutFrameworkId(id.clone())]) {
                    return;
                }
                self.framework_id = Some(id.clone());
            }
        }
        self.suppressed = false;
        self.last_demand = 0;
        self.reconcile(d);
        // Kills that were never confirmed are sent again now that the master listens.
        let pending: Vec<TaskId> = self
            .instances
            .values()
            .filter(|i| i.is_alive() && i.is_killing())
            .map(|i| i.task_id.clone())
            .collect();
        self.flush_routes(d);
        for id in pending {
            d.kill_task(&id);
        }
        self.converge(d);
    }

    pub(super) fn reconcile(&mut self, d: &mut Driver<'_, '_>) {
        let tasks: Vec<(TaskId, Option<SlaveId>)> = self
            .instances
            .values()
            .filter(|i| i.is_alive())
            .map(|i| (i.task_id.clone(), i.slave_id.clone()))
            .collect();
        if !tasks.is_empty() {
            d.reconcile_tasks(tasks);
        }
        d.reconcile_tasks(Vec::new());
    }

    pub(super) fn handle_tick(&mut self, d: &mut Driver<'_, '_>) {
        self.touch(d);
        d.ctx().delay(self.config.tick_interval, MarathonTick);
        if !self.is_acting() {
            return;
        }
        let mono = self.mono;
        let apps = &self.apps;
        self.backoffs.retain(|app_id, b| match apps.get(app_id) {
            Some(r) => !b.is_expired(mono, &BackoffStrategy::of_app(&r.app)),
            None => false,
        });
        // Apps without health checks: a task running long enough resets the backoff.
        let reset_ms = self.config.backoff_reset_after_running.as_millis() as i64;
        let reset: Vec<String> = self
            .backoffs
            .keys()
            .filter(|app_id| {
                self.app_instances(app_id).any(|i| {
                    i.state == TaskState::Running
                        && !i.has_health_check
                        && i.started_at_ms
                            .is_some_and(|s| self.wall_ms - s >= reset_ms)
                })
            })
            .cloned()
            .collect();
        for app_id in reset {
            self.backoffs.remove(&app_id);
        }
        // Launches that never reached RUNNING (a lost launch, a slave that cannot start it):
        // killed, and replaced once the kill is confirmed (Marathon's overdue tasks).
        let timeout_ms = self.config.task_launch_timeout.as_millis() as i64;
        let stuck: Vec<TaskId> = self
            .instances
            .values()
            .filter(|i| {
                i.is_staged() && !i.is_killing() && self.wall_ms - i.staged_at_ms >= timeout_ms
            })
            .map(|i| i.task_id.clone())
            .collect();
        if !stuck.is_empty() {
            let mut ops = Vec::new();
            for id in &stuck {
                if let Some(i) = self.instances.get_mut(id) {
                    tracing::warn!(task = %id, "not running within the task launch timeout: killing it");
                    i.kill_requested_ms = Some(self.wall_ms);
                    ops.push(StoreOp::PutInstance(Box::new(i.clone())));
                }
            }
            if !self.persist(d, &ops) {
                return;
            }
            if d.is_connected() {
                for id in &stuck {
                    d.kill_task(id);
                }
            }
        }
        if d.is_connected() {
            let retry_ms = self.config.kill_retry.as_millis() as i64;
            let overdue: Vec<TaskId> = self
                .instances
                .values()
                .filter(|i| {
                    i.is_alive()
                        && i.kill_requested_ms
                            .is_some_and(|at| self.wall_ms - at >= retry_ms)
                })
                .map(|i| i.task_id.clone())
                .collect();
            self.flush_routes(d);
            for id in overdue {
                d.kill_task(&id);
            }
        }
        self.converge(d);
    }
}
