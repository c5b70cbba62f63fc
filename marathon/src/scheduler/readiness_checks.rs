//! Readiness checks during deployments: probes of tasks that wait for one, and their verdicts.

use super::*;

impl MarathonScheduler {
    /// A task launched while a deployment of its app is in progress waits for the app's
    /// readiness check (Marathon: "a deployment will only finish when all new tasks are
    /// ready"); replacements outside deployments do not.
    pub(super) fn readiness_for_launch(&self, app: &AppDefinition) -> Option<ReadinessRecord> {
        let check = app.readiness_checks.first()?;
        let deploying = self.has_current_action(&app.id, |a| a != ActionKind::StopApplication);
        deploying.then(|| ReadinessRecord {
            name: check.name.clone(),
            ready: false,
            last_response: None,
        })
    }

    /// Starts a readiness probe of `task_id` if it awaits one and none is in flight.
    pub(super) fn probe_readiness(&mut self, d: &mut Driver<'_, '_>, task_id: &TaskId) {
        if !self.is_acting() || self.readiness_in_flight.contains_key(task_id) {
            return;
        }
        let Some(instance) = self.instances.get(task_id) else {
            return;
        };
        if !instance.awaits_readiness() {
            return;
        }
        let Some(app) = self.apps.get(&instance.app_id).map(|r| &r.app) else {
            return;
        };
        let Some(check) = app.readiness_checks.first() else {
            return;
        };
        let port = port_index_of(app, &check.port_name)
            .and_then(|index| instance.ports.get(index))
            .and_then(|port| u16::try_from(*port).ok());
        let request = port.map(|port| ReadinessRequest {
            task_id: task_id.clone(),
            probe_id: self.next_probe_id + 1,
            host: instance.host.clone(),
            port,
            path: check.path.clone(),
            timeout: Duration::from_secs(u64::from(check.timeout_seconds.max(1))),
        });
        let missing_port = format!("the task has no host port named {}", check.port_name);
        self.next_probe_id += 1;
        self.readiness_in_flight
            .insert(task_id.clone(), self.next_probe_id);
        let mailbox = d.ctx().mailbox();
        match request {
            Some(request) => self.prober.probe(request, mailbox),
            None => mailbox.post(ReadinessResult {
                task_id: task_id.clone(),
                probe_id: self.next_probe_id,
                outcome: Err(missing_port),
            }),
        }
    }

    pub(super) fn handle_readiness_result(
        &mut self,
        d: &mut Driver<'_, '_>,
        result: ReadinessResult,
    ) {
        self.touch(d);
        if self.readiness_in_flight.get(&result.task_id) != Some(&result.probe_id) {
            return;
        }
        self.readiness_in_flight.remove(&result.task_id);
        if !self.is_acting() {
            return;
        }
        let Some(mut instance) = self
            .instances
            .get(&result.task_id)
            .filter(|i| i.awaits_readiness())
            .cloned()
        else {
            return;
        };
        let Some(check) = self
            .apps
            .get(&instance.app_id)
            .and_then(|r| r.app.readiness_checks.first())
            .cloned()
        else {
            return;
        };
        let ready = matches!(&result.outcome,
            Ok(r) if check.http_status_codes_for_ready.contains(&r.status));
        let last_response = if check.preserve_last_response {
            result.outcome.as_ref().ok().cloned()
        } else {
            None
        };
        if let Err(why) = &result.outcome {
            tracing::debug!(task = %result.task_id, %why, "readiness probe failed");
        }
        let record = instance.readiness.as_mut().expect("awaits readiness");
        if record.ready != ready || record.last_response != last_response {
            record.ready = ready;
            record.last_response = last_response;
            if !self.persist(d, &[StoreOp::PutInstance(Box::new(instance.clone()))]) {
                return;
            }
            self.instances.insert(instance.task_id.clone(), instance);
        }
        if ready {
            tracing::info!(task = %result.task_id, "task is ready");
            self.converge(d);
        } else {
            let interval = Duration::from_secs(u64::from(check.interval_seconds.max(1)));
            d.ctx().delay(
                interval,
                ReadinessDue {
                    task_id: result.task_id,
                },
            );
        }
    }

    /// `readinessCheckResults` of an app's live instances that have a readiness check.
    pub(super) fn readiness_results(&self, app_id: &str) -> Vec<Value> {
        self.app_instances(app_id)
            .filter(|i| i.is_alive())
            .filter_map(|i| i.readiness.as_ref().map(|r| r.to_json(&i.task_id)))
            .collect()
    }
}

/// The index of the port named `name` (host networking: `portDefinitions`; otherwise the
/// container's `portMappings`), which is also the index of its host port in a task's ports.
pub(super) fn port_index_of(app: &AppDefinition, name: &str) -> Option<usize> {
    if app.is_host_networking() {
        app.port_definitions
            .iter()
            .position(|p| p.name.as_deref() == Some(name))
    } else {
        app.container
            .as_ref()
            .and_then(|c| c.port_mappings.as_ref())
            .and_then(|m| m.iter().position(|p| p.name.as_deref() == Some(name)))
    }
}
