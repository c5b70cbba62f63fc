//! What each app needs now (the launch queue count, the kills of a scale-down or a rolling
//! restart) and convergence: kills, deployment steps, offer interest.

use super::*;

/// `(minHealthy, maxCapacity)` of a rolling restart of `n` instances.
pub fn restart_bounds(
    n: u32,
    minimum_health_capacity: f64,
    maximum_over_capacity: f64,
) -> (u32, u32) {
    let n_f = f64::from(n);
    // The epsilon keeps 3 × 0.7 = 2.0999… from rounding the wrong way.
    let min_healthy = (n_f * minimum_health_capacity - 1e-9).ceil().max(0.0) as u32;
    let mut max_capacity = (n_f * (1.0 + maximum_over_capacity) + 1e-9).floor() as u32;
    if min_healthy >= max_capacity {
        max_capacity = min_healthy + 1;
    }
    (min_healthy.min(n), max_capacity)
}

impl MarathonScheduler {
    pub(super) fn desired_instances(&self, record: &AppRecord) -> u32 {
        if is_one_per_agent(&record.app) {
            self.slaves
                .values()
                .filter(|s| agent_matches(&record.app.constraints, &s.placement, &[]))
                .count() as u32
        } else {
            record.app.instances
        }
    }

    pub(super) fn is_inactive(&self, instance: &Instance, app: Option<&AppDefinition>) -> bool {
        if instance.state != TaskState::Unreachable {
            return false;
        }
        let strategy = app.map(|a| a.unreachable_strategy).unwrap_or_default();
        match strategy {
            UnreachableStrategy::Disabled => false,
            UnreachableStrategy::Enabled {
                inactive_after_seconds,
                ..
            } => {
                let since = instance.unreachable_since_ms.unwrap_or(self.wall_ms);
                self.wall_ms - since >= (inactive_after_seconds as i64).saturating_mul(1000)
            }
        }
    }

    /// Alive, not being killed, not inactive: counts toward `instances`.
    pub(super) fn is_active(&self, instance: &Instance, app: &AppDefinition) -> bool {
        instance.is_alive() && !instance.is_killing() && !self.is_inactive(instance, Some(app))
    }

    /// True when a deployment's current step has an action on `app_id` that `matches`.
    pub(super) fn has_current_action(
        &self,
        app_id: &str,
        matches: impl Fn(ActionKind) -> bool,
    ) -> bool {
        self.deployments.values().any(|d| {
            d.current_actions()
                .iter()
                .any(|a| a.app == app_id && matches(a.action))
        })
    }

    pub(super) fn is_restarting(&self, app_id: &str) -> bool {
        self.has_current_action(app_id, |a| a == ActionKind::RestartApplication)
    }

    pub(super) fn kill_candidates(instances: &[&Instance]) -> Vec<KillCandidate> {
        instances
            .iter()
            .map(|i| KillCandidate {
                placement: i.placement(),
                priority: match i.state {
                    TaskState::Unreachable => KillPriority::Unreachable,
                    TaskState::Staging => KillPriority::Staging,
                    TaskState::Starting => KillPriority::Starting,
                    _ => KillPriority::Running,
                },
                started_at_ms: i.started_at_ms.or(Some(i.staged_at_ms)),
            })
            .collect()
    }

    pub(super) fn app_plan(&self, app_id: &str) -> AppPlan {
        let Some(record) = self.apps.get(app_id) else {
            return AppPlan::default();
        };
        let app = &record.app;
        let n = self.desired_instances(record);
        let alive: Vec<&Instance> = self
            .app_instances(app_id)
            .filter(|i| i.is_alive() && !self.is_inactive(i, Some(app)))
            .collect();
        let active: Vec<&Instance> = alive
            .iter()
            .copied()
            .filter(|i| self.is_active(i, app))
            .collect();
        let mut plan = AppPlan::default();
        if self.is_restarting(app_id) {
            let config_version = record.config_version();
            let (new, old): (Vec<&Instance>, Vec<&Instance>) = active
                .iter()
                .copied()
                .partition(|i| i.config_version == config_version);
            let old_alive = alive
                .iter()
                .filter(|i| i.config_version != config_version)
                .count() as u32;
            let new_alive = alive.len() as u32 - old_alive;
            let (min_healthy, max_capacity) = restart_bounds(
                n,
                app.upgrade_strategy.minimum_health_capacity,
                app.upgrade_strategy.maximum_over_capacity,
            );
            let mut ready = active.iter().filter(|i| i.is_ready()).count() as u32;
            // Old instances that are not ready do not hold capacity: replace them at once.
            for i in old.iter().filter(|i| !i.is_ready()) {
                plan.kills.push(i.task_id.clone());
            }
            let old_ready: Vec<&Instance> = old.iter().copied().filter(|i| i.is_ready()).collect();
            let order = crate::constraints::kill_order(
                &Self::kill_candidates(&old_ready),
                app.kill_selection,
            );
            for index in order {
                if ready <= min_healthy {
                    break;
                }
                plan.kills.push(old_ready[index].task_id.clone());
                ready -= 1;
            }
            if new.len() as u32 > n {
                let candidates = Self::kill_candidates(&new);
                for index in select_instances_to_kill(
                    &app.constraints,
                    &candidates,
                    new.len() - n as usize,
                    app.kill_selection,
                ) {
                    plan.kills.push(new[index].task_id.clone());
                }
            }
            let missing = n.saturating_sub(new.len() as u32);
            let room = max_capacity.saturating_sub(old_alive + new_alive);
            plan.to_launch = missing.min(room);
            plan.done = old_alive == 0
                && new.len() as u32 == n
                && new_alive == n
                && new.iter().all(|i| i.is_ready());
        } else if let Some(moving) = self.instances_to_move(app, &active) {
            // Moving off draining slaves: a rolling replacement in which the instances on
            // draining slaves are the old ones. Replacements start elsewhere within
            // maxCapacity; one on a draining slave is killed only while the ready instances
            // left stay at or above minHealthy (not-ready ones hold no capacity: at once).
            let staying: Vec<&Instance> = active
                .iter()
                .copied()
                .filter(|i| !moving.iter().any(|m| m.task_id == i.task_id))
                .collect();
            let (min_healthy, max_capacity) = restart_bounds(
                n,
                app.upgrade_strategy.minimum_health_capacity,
                app.upgrade_strategy.maximum_over_capacity,
            );
            let mut ready = active.iter().filter(|i| i.is_ready()).count() as u32;
            for i in moving.iter().filter(|i| !i.is_ready()) {
                plan.kills.push(i.task_id.clone());
            }
            let moving_ready: Vec<&Instance> =
                moving.iter().copied().filter(|i| i.is_ready()).collect();
            let order = crate::constraints::kill_order(
                &Self::kill_candidates(&moving_ready),
                app.kill_selection,
            );
            for index in order {
                if ready <= min_healthy {
                    break;
                }
                plan.kills.push(moving_ready[index].task_id.clone());
                ready -= 1;
            }
            if staying.len() as u32 > n {
                let candidates = Self::kill_candidates(&staying);
                for index in select_instances_to_kill(
                    &app.constraints,
                    &candidates,
                    staying.len() - n as usize,
                    app.kill_selection,
                ) {
                    plan.kills.push(staying[index].task_id.clone());
                }
            }
            let missing = n.saturating_sub(staying.len() as u32);
            let room = max_capacity.saturating_sub(alive.len() as u32);
            plan.to_launch = missing.min(room);
            plan.done = false;
        } else {
            if active.len() as u32 > n {
                let candidates = Self::kill_candidates(&active);
                for index in select_instances_to_kill(
                    &app.constraints,
                    &candidates,
                    active.len() - n as usize,
                    app.kill_selection,
                ) {
                    plan.kills.push(active[index].task_id.clone());
                }
            }
            plan.to_launch = n.saturating_sub(active.len() as u32);
            plan.done = active.len() as u32 == n
                && alive.len() as u32 == n
                && active.iter().all(|i| i.is_ready());
        }
        plan
    }

    /// The active instances of `app` on draining slaves, when some must move (never for
    /// one-per-agent apps, which have nowhere else to go); `None` when none.
    pub(super) fn instances_to_move<'a>(
        &self,
        app: &AppDefinition,
        active: &[&'a Instance],
    ) -> Option<Vec<&'a Instance>> {
        if self.draining.is_empty() || is_one_per_agent(app) {
            return None;
        }
        let moving: Vec<&Instance> = active
            .iter()
            .copied()
            .filter(|i| self.is_draining(i.slave_id.as_ref()))
            .collect();
        (!moving.is_empty()).then_some(moving)
    }

    pub(super) fn is_backed_off(&self, app_id: &str) -> bool {
        self.backoffs
            .get(app_id)
            .is_some_and(|b| b.is_backed_off(self.mono))
    }

    /// Instances to launch now, per app (backed-off apps excluded).
    pub(super) fn launchable(&self) -> BTreeMap<String, u32> {
        self.apps
            .keys()
            .filter(|id| !self.is_backed_off(id))
            .map(|id| (id.clone(), self.app_plan(id).to_launch))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    // ---- convergence -----------------------------------------------------------------------

    /// Kills what must go, advances deployments, adjusts offer interest. Called after every
    /// change.
    pub(super) fn converge(&mut self, d: &mut Driver<'_, '_>) {
        if !self.is_acting() {
            return;
        }
        let mut kills: BTreeSet<TaskId> = BTreeSet::new();
        // Instances of apps that no longer exist.
        for i in self.instances.values() {
            if i.is_alive() && !i.is_killing() && !self.apps.contains_key(&i.app_id) {
                kills.insert(i.task_id.clone());
            }
        }
        let mut expunge = Vec::new();
        for i in self.instances.values() {
            if i.state == TaskState::Unreachable {
                let app = self.apps.get(&i.app_id).map(|r| &r.app);
                if let Some(UnreachableStrategy::Enabled {
                    expunge_after_seconds,
                    ..
                }) = app.map(|a| a.unreachable_strategy)
                {
                    let since = i.unreachable_since_ms.unwrap_or(self.wall_ms);
                    if self.wall_ms - since >= (expunge_after_seconds as i64).saturating_mul(1000) {
                        expunge.push(i.task_id.clone());
                    }
                }
            }
        }
        let app_ids: Vec<String> = self.apps.keys().cloned().collect();
        for app_id in &app_ids {
            kills.extend(self.app_plan(app_id).kills);
        }
        let mut ops = Vec::new();
        for id in &expunge {
            self.instances.remove(id);
            ops.push(StoreOp::DeleteInstance(id.clone()));
        }
        for id in &kills {
            if let Some(i) = self.instances.get_mut(id) {
                i.kill_requested_ms = Some(self.wall_ms);
                ops.push(StoreOp::PutInstance(Box::new(i.clone())));
            }
        }
        let events = self.advance_deployments(&mut ops);
        // Queue bookkeeping (`since`).
        for app_id in &app_ids {
            let queued = self.app_plan(app_id).to_launch > 0;
            if queued {
                self.queue_since
                    .entry(app_id.clone())
                    .or_insert(self.wall_ms);
            } else {
                self.queue_since.remove(app_id);
            }
        }
        if !ops.is_empty() && !self.persist(d, &ops) {
            return;
        }
        for (kind, event) in events {
            self.events.publish(kind, &event);
        }
        self.flush_routes(d); // balancers drain before the kills go out
        for id in &kills {
            if d.is_connected() {
                d.kill_task(id);
            }
        }
        self.update_offer_interest(d);
    }

    pub(super) fn advance_deployments(
        &mut self,
        ops: &mut Vec<StoreOp>,
    ) -> Vec<(&'static str, Value)> {
        let mut events = Vec::new();
        let ids: Vec<String> = self.sorted_deployment_ids();
        for id in ids {
            while let Some(deployment) = self.deployments.get(&id) {
                if deployment.current_step >= deployment.steps.len() {
                    break;
                }
                let done = deployment.current_actions().iter().all(|a| match a.action {
                    ActionKind::StopApplication => !self
                        .instances
                        .values()
                        .any(|i| i.app_id == a.app && i.is_alive()),
                    _ => self.app_plan(&a.app).done,
                });
                if !done {
                    break;
                }
                let deployment = self.deployments.get_mut(&id).expect("present");
                let step_actions = deployment.current_actions().to_vec();
                deployment.current_step += 1;
                let plan = deployment.plan_json();
                events.push((
                    "deployment_step_success",
                    json!({"eventType": "deployment_step_success", "timestamp": ts(self.wall_ms),
                           "plan": plan, "currentStep": {"actions": actions_json(&step_actions)}}),
                ));
                if deployment.current_step >= deployment.steps.len() {
                    tracing::info!(deployment_id = %deployment.id, steps = deployment.steps.len(), "deployment finished");
                    events.push((
                        "deployment_success",
                        json!({"eventType": "deployment_success", "timestamp": ts(self.wall_ms),
                               "id": deployment.id, "plan": plan}),
                    ));
                    self.deployments.remove(&id);
                    ops.push(StoreOp::DeleteDeployment(id.clone()));
                    break;
                }
                ops.push(StoreOp::PutDeployment(Box::new(deployment.clone())));
            }
        }
        events
    }

    pub(super) fn sorted_deployment_ids(&self) -> Vec<String> {
        let mut ids: Vec<(u64, String)> = self
            .deployments
            .values()
            .map(|d| (d.sequence, d.id.clone()))
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    pub(super) fn update_offer_interest(&mut self, d: &mut Driver<'_, '_>) {
        if !d.is_connected() {
            return;
        }
        let demand: u64 = self.launchable().values().map(|&n| u64::from(n)).sum();
        let discovering = self.apps.values().any(|r| is_one_per_agent(&r.app));
        let wants = demand > 0 || discovering;
        if wants && (self.suppressed || demand > self.last_demand) {
            d.revive_offers();
            self.suppressed = false;
        } else if !wants && !self.suppressed {
            d.suppress_offers();
            self.suppressed = true;
        }
        self.last_demand = demand;
    }
}
