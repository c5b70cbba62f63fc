//! The API's changes: apps created, updated, scaled, restarted, deleted; tasks killed;
//! deployments rolled back or cancelled; launch delays reset.

use super::*;

impl MarathonScheduler {
    pub(super) fn conflicts(&self, app_ids: &[String]) -> Vec<String> {
        let ids: BTreeSet<String> = self
            .deployments
            .values()
            .filter(|d| app_ids.iter().any(|a| d.affects(a)))
            .map(|d| d.id.clone())
            .collect();
        ids.into_iter().collect()
    }

    pub(super) fn conflict_response(ids: &[String]) -> ApiResponse {
        let first = ids.first().cloned().unwrap_or_default();
        ApiResponse::json(
            409,
            json!({
                "message": format!("App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/{first}'."),
                "deployments": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
            }),
        )
    }

    /// Checks locks: `Err(409)` without force; with force, the locking deployments are
    /// cancelled (their removal is added to `ops`).
    pub(super) fn take_locks(
        &mut self,
        app_ids: &[String],
        force: bool,
        ops: &mut Vec<StoreOp>,
    ) -> Result<(), ApiResponse> {
        let conflicting = self.conflicts(app_ids);
        if conflicting.is_empty() {
            return Ok(());
        }
        if !force {
            return Err(Self::conflict_response(&conflicting));
        }
        for id in conflicting {
            self.deployments.remove(&id);
            ops.push(StoreOp::DeleteDeployment(id));
        }
        Ok(())
    }

    pub(super) fn new_deployment(
        &mut self,
        d: &mut Driver<'_, '_>,
        version: &str,
        actions: Vec<DeploymentAction>,
        original: BTreeMap<String, Option<AppDefinition>>,
    ) -> Deployment {
        let deployment = Deployment {
            id: self.new_uuid(d),
            version: version.to_string(),
            steps: vec![actions],
            current_step: 0,
            original,
            sequence: self.next_deployment_sequence,
        };
        self.next_deployment_sequence += 1;
        deployment
    }

    /// Service ports for `portDefinitions` (and port mappings) with port 0: the previous
    /// version's at the same index if it had one, else the lowest free one in
    /// `local_port_min..=local_port_max` (free: not used by another app).
    pub(super) fn assign_service_ports(
        &self,
        app: &mut AppDefinition,
        previous: Option<&AppDefinition>,
    ) -> Result<(), ApiResponse> {
        let mut used: BTreeSet<u32> = BTreeSet::new();
        for (id, record) in &self.apps {
            if *id == app.id {
                continue;
            }
            used.extend(service_ports_of(&record.app));
        }
        used.extend(service_ports_of(app));
        let previous_ports: Vec<u32> = previous.map(service_ports_of).unwrap_or_default();
        let mut next = self.config.local_port_min;
        let mut pick = |index: usize, used: &mut BTreeSet<u32>| -> Option<u32> {
            if let Some(&p) = previous_ports.get(index) {
                if p != 0 && !used.contains(&p) {
                    used.insert(p);
                    return Some(p);
                }
            }
            while next <= self.config.local_port_max {
                let candidate = next;
                next += 1;
                if used.insert(candidate) {
                    return Some(candidate);
                }
            }
            None
        };
        let no_ports = || {
            ApiResponse::json(
                422,
                json!({"message": "Object is not valid", "details": [{"path": "/portDefinitions",
                      "errors": ["no free service port left in the local port range"]}]}),
            )
        };
        if app.is_host_networking() {
            for index in 0..app.port_definitions.len() {
                if app.port_definitions[index].port == 0 {
                    app.port_definitions[index].port =
                        pick(index, &mut used).ok_or_else(no_ports)?;
                }
            }
        } else if let Some(mappings) = app
            .container
            .as_mut()
            .and_then(|c| c.port_mappings.as_mut())
        {
            for (index, mapping) in mappings.iter_mut().enumerate() {
                if mapping.service_port == 0 {
                    mapping.service_port = pick(index, &mut used).ok_or_else(no_ports)?;
                }
            }
        }
        Ok(())
    }

    pub(super) fn check_instances(app: &AppDefinition) -> Result<(), ApiResponse> {
        if app.instances > limits::INSTANCES_PER_APP_MAX {
            return Err(ApiResponse::json(
                422,
                json!({"message": "Object is not valid", "details": [{"path": "/instances",
                      "errors": [format!("must be less than or equal to {}", limits::INSTANCES_PER_APP_MAX)]}]}),
            ));
        }
        Ok(())
    }

    pub(super) fn api_post_event(&mut self, caller: &ApiCaller, app: &AppDefinition) {
        if !self.events.has_subscribers() {
            return;
        }
        let event = json!({"eventType": "api_post_event", "timestamp": ts(self.wall_ms),
                           "clientIp": caller.client_ip, "uri": caller.uri,
                           "appDefinition": self.app_json(app, Embed::default())});
        self.events.publish("api_post_event", &event);
    }

    pub(super) fn deployment_info_event(&mut self, deployment: &Deployment) {
        if !self.events.has_subscribers() {
            return;
        }
        let light = deployment.plan_json();
        let mut full = light.clone();
        let target: Vec<&AppDefinition> = self.apps.values().map(|r| &r.app).collect();
        let mut original: BTreeMap<String, AppDefinition> = self
            .apps
            .iter()
            .map(|(id, r)| (id.clone(), r.app.clone()))
            .collect();
        for (id, def) in &deployment.original {
            match def {
                Some(def) => original.insert(id.clone(), def.clone()),
                None => original.remove(id),
            };
        }
        full["original"] = root_group_json(original.values(), &deployment.version);
        full["target"] = root_group_json(target.into_iter(), &deployment.version);
        let current = json!({"actions": actions_json(deployment.current_actions())});
        let event = |plan: Value| {
            json!({"eventType": "deployment_info", "timestamp": ts(self.wall_ms), "plan": plan,
                   "currentStep": current})
        };
        let (full, light) = (event(full), event(light));
        self.events
            .publish_with_light("deployment_info", &full, Some(&light));
    }

    /// Stores an app change and its deployment, then converges. `record` is the new state of
    /// the app (`None`: deleted). `Err` with the answer when it cannot be stored: a record too
    /// large for the replicated state (422, nothing changed), or a store that failed (503).
    pub(super) fn commit_change(
        &mut self,
        d: &mut Driver<'_, '_>,
        mut ops: Vec<StoreOp>,
        changes: Vec<(String, Option<AppRecord>)>,
        deployment: &Deployment,
    ) -> Result<(), ApiResponse> {
        for (id, record) in &changes {
            match record {
                Some(r) => ops.push(StoreOp::PutApp(Box::new(r.clone()))),
                None => ops.push(StoreOp::DeleteApp(id.clone())),
            }
        }
        ops.push(StoreOp::PutDeployment(Box::new(deployment.clone())));
        self.check_writable(&ops)?;
        if !self.persist(d, &ops) {
            return Err(self.unavailable());
        }
        for (id, record) in changes {
            match record {
                Some(r) => {
                    self.apps.insert(id, r);
                }
                None => {
                    self.apps.remove(&id);
                    self.backoffs.remove(&id);
                    self.offer_stats.remove(&id);
                    self.queue_since.remove(&id);
                    let event = json!({"eventType": "app_terminated_event", "timestamp": ts(self.wall_ms), "appId": id});
                    self.events.publish("app_terminated_event", &event);
                }
            }
        }
        self.deployments
            .insert(deployment.id.clone(), deployment.clone());
        tracing::info!(deployment_id = %deployment.id, apps = ?deployment.original.keys().collect::<Vec<_>>(), steps = deployment.steps.len(), "deployment started");
        self.deployment_info_event(deployment);
        self.converge(d);
        Ok(())
    }

    pub(super) fn stamp(
        &self,
        app: &mut AppDefinition,
        previous: Option<&AppRecord>,
        config_changed: bool,
    ) {
        let version = self.next_version(previous);
        let last_config = match previous {
            Some(p) if !config_changed => p.config_version().to_string(),
            _ => version.clone(),
        };
        app.version = Some(version.clone());
        app.version_info = Some(VersionInfo {
            last_scaling_at: version,
            last_config_change_at: last_config,
        });
    }

    pub(super) fn with_version(previous: Option<&AppRecord>, app: &AppDefinition) -> AppRecord {
        let mut versions = previous.map(|p| p.versions.clone()).unwrap_or_default();
        versions.insert(app.version.clone().unwrap_or_default(), app.clone());
        while versions.len() > limits::VERSIONS_PER_APP_MAX {
            let oldest = versions.keys().next().cloned().expect("non-empty");
            versions.remove(&oldest);
        }
        AppRecord {
            app: app.clone(),
            versions,
        }
    }

    pub(super) fn guard(&mut self, d: &mut Driver<'_, '_>) -> Result<(), ApiResponse> {
        self.touch(d);
        if !self.is_acting() {
            return Err(self.unavailable());
        }
        if self.deployments.len() >= limits::DEPLOYMENTS_MAX {
            return Err(ApiResponse::message(
                403,
                format!(
                    "Max number of running deployments is exceeded: {}",
                    limits::DEPLOYMENTS_MAX
                ),
            ));
        }
        Ok(())
    }

    /// `POST /v2/apps`: 201 with the app, `Location` and `Marathon-Deployment-Id`.
    pub fn create_app(
        &mut self,
        d: &mut Driver<'_, '_>,
        caller: &ApiCaller,
        body: &[u8],
        force: bool,
    ) -> ApiResponse {
        if let Err(r) = self.guard(d) {
            return r;
        }
        let app = match parse_app(body) {
            Ok(app) => app,
            Err(e) => return ApiResponse::json(e.status, e.body),
        };
        if self.apps.contains_key(&app.id) {
            return ApiResponse::message(
                409,
                format!("An app with id [{}] already exists.", app.id),
            );
        }
        self.create(d, caller, app, force, true)
    }

    pub(super) fn create(
        &mut self,
        d: &mut Driver<'_, '_>,
        caller: &ApiCaller,
        mut app: AppDefinition,
        force: bool,
        post: bool,
    ) -> ApiResponse {
        if self.apps.len() >= limits::APPS_MAX {
            return ApiResponse::message(403, format!("at most {} apps", limits::APPS_MAX));
        }
        if let Err(r) = Self::check_instances(&app) {
            return r;
        }
        let mut ops = Vec::new();
        if let Err(r) = self.take_locks(std::slice::from_ref(&app.id), force, &mut ops) {
            return r;
        }
        if let Err(r) = self.assign_service_ports(&mut app, None) {
            return r;
        }
        self.stamp(&mut app, None, true);
        let record = Self::with_version(None, &app);
        let version = app.version.clone().unwrap_or_default();
        let deployment = self.new_deployment(
            d,
            &version,
            vec![DeploymentAction {
                action: ActionKind::StartApplication,
                app: app.id.clone(),
            }],
            BTreeMap::from([(app.id.clone(), None)]),
        );
        self.api_post_event(caller, &app);
        if let Err(r) =
            self.commit_change(d, ops, vec![(app.id.clone(), Some(record))], &deployment)
        {
            return r;
        }
        let location = format!("/v2/apps{}", app.id);
        if post {
            let mut body = self.app_json(&app, Embed::default());
            body["deployments"] = json!([{"id": deployment.id}]);
            ApiResponse::json(201, body)
                .with_header("Location", location)
                .with_header("Marathon-Deployment-Id", deployment.id.clone())
        } else {
            ApiResponse::deployment(201, &deployment).with_header("Location", location)
        }
    }

    /// `PUT /v2/apps/{id}` (create, update, scale, rollback with `{"version": ...}`).
    pub fn put_app(
        &mut self,
        d: &mut Driver<'_, '_>,
        caller: &ApiCaller,
        url_id: &str,
        body: &[u8],
        force: bool,
        partial_update: bool,
    ) -> ApiResponse {
        if let Err(r) = self.guard(d) {
            return r;
        }
        let id = crate::app::canonical_path_id(url_id, "/");
        let existing = self.apps.get(&id).cloned();
        let mut rollback = false;
        let new_app = match parse_app_put(
            body,
            url_id,
            existing.as_ref().map(|r| &r.app),
            partial_update,
        ) {
            Err(e) => return ApiResponse::json(e.status, e.body),
            Ok(AppPut::App(app)) => *app,
            Ok(AppPut::Rollback { version }) => {
                rollback = true;
                let Some(record) = &existing else {
                    return ApiResponse::message(404, format!("App '{id}' does not exist"));
                };
                match record.versions.get(&version) {
                    Some(app) => app.clone(),
                    None => {
                        return ApiResponse::message(
                            404,
                            format!("App '{id}' does not exist in version {version}"),
                        )
                    }
                }
            }
        };
        let Some(existing) = existing else {
            return self.create(d, caller, new_app, force, false);
        };
        self.update(d, caller, existing, new_app, force, None, rollback)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn update(
        &mut self,
        d: &mut Driver<'_, '_>,
        caller: &ApiCaller,
        existing: AppRecord,
        mut app: AppDefinition,
        force: bool,
        forced_action: Option<ActionKind>,
        rollback: bool,
    ) -> ApiResponse {
        if let Err(r) = Self::check_instances(&app) {
            return r;
        }
        let mut ops = Vec::new();
        if let Err(r) = self.take_locks(std::slice::from_ref(&app.id), force, &mut ops) {
            return r;
        }
        if let Err(r) = self.assign_service_ports(&mut app, Some(&existing.app)) {
            return r;
        }
        let config_changed = forced_action == Some(ActionKind::RestartApplication)
            || config_of(&app) != config_of(&existing.app);
        // A rollback to a version whose instances may still run keeps that version's config
        // stamp, so those instances count as current.
        let restored_stamp = app
            .version_info
            .as_ref()
            .map(|v| v.last_config_change_at.clone())
            .filter(|_| rollback && config_changed);
        self.stamp(&mut app, Some(&existing), config_changed);
        if let (Some(stamp), Some(info)) = (restored_stamp, app.version_info.as_mut()) {
            info.last_config_change_at = stamp;
        }
        let version = app.version.clone().unwrap_or_default();
        let action = forced_action.unwrap_or(if config_changed {
            ActionKind::RestartApplication
        } else {
            ActionKind::ScaleApplication
        });
        if config_changed {
            // A new version starts without the old one's backoff.
            self.backoffs.remove(&app.id);
        }
        let record = Self::with_version(Some(&existing), &app);
        let deployment = self.new_deployment(
            d,
            &version,
            vec![DeploymentAction {
                action,
                app: app.id.clone(),
            }],
            BTreeMap::from([(app.id.clone(), Some(existing.app.clone()))]),
        );
        self.api_post_event(caller, &app);
        if let Err(r) =
            self.commit_change(d, ops, vec![(app.id.clone(), Some(record))], &deployment)
        {
            return r;
        }
        ApiResponse::deployment(200, &deployment)
    }

    /// `DELETE /v2/apps/{id}`.
    pub fn delete_app(&mut self, d: &mut Driver<'_, '_>, url_id: &str, force: bool) -> ApiResponse {
        if let Err(r) = self.guard(d) {
            return r;
        }
        let id = crate::app::canonical_path_id(url_id, "/");
        let Some(existing) = self.apps.get(&id).cloned() else {
            return ApiResponse::message(404, format!("App '{id}' does not exist"));
        };
        let mut ops = Vec::new();
        if let Err(r) = self.take_locks(std::slice::from_ref(&id), force, &mut ops) {
            return r;
        }
        let version = self.next_version(Some(&existing));
        let deployment = self.new_deployment(
            d,
            &version,
            vec![DeploymentAction {
                action: ActionKind::StopApplication,
                app: id.clone(),
            }],
            BTreeMap::from([(id.clone(), Some(existing.app.clone()))]),
        );
        if let Err(r) = self.commit_change(d, ops, vec![(id, None)], &deployment) {
            return r;
        }
        ApiResponse::deployment(200, &deployment)
    }

    /// `POST /v2/apps/{id}/restart`.
    pub fn restart_app(
        &mut self,
        d: &mut Driver<'_, '_>,
        caller: &ApiCaller,
        url_id: &str,
        force: bool,
    ) -> ApiResponse {
        if let Err(r) = self.guard(d) {
            return r;
        }
        let id = crate::app::canonical_path_id(url_id, "/");
        let Some(existing) = self.apps.get(&id).cloned() else {
            return ApiResponse::message(404, format!("App '{id}' does not exist"));
        };
        let app = existing.app.clone();
        self.update(
            d,
            caller,
            existing,
            app,
            force,
            Some(ActionKind::RestartApplication),
            false,
        )
    }

    /// `DELETE /v2/apps/{id}/tasks[/{taskId}]` with `host`, `scale`, `wipe`, `force`.
    #[allow(clippy::too_many_arguments)]
    pub fn kill_app_tasks(
        &mut self,
        d: &mut Driver<'_, '_>,
        url_id: &str,
        task_id: Option<&str>,
        host: Option<&str>,
        scale: bool,
        wipe: bool,
        force: bool,
    ) -> ApiResponse {
        if let Err(r) = self.guard(d) {
            return r;
        }
        let id = crate::app::canonical_path_id(url_id, "/");
        if !self.apps.contains_key(&id) {
            return ApiResponse::message(404, format!("App '{id}' does not exist"));
        }
        if scale && wipe {
            return ApiResponse::message(400, "You cannot use scale and wipe at the same time.");
        }
        let selected: Vec<TaskId> = self
            .app_instances(&id)
            .filter(|i| i.is_alive())
            .filter(|i| task_id.is_none_or(|t| i.task_id.as_str() == t))
            .filter(|i| host.is_none_or(|h| i.host == h))
            .map(|i| i.task_id.clone())
            .collect();
        if let Some(t) = task_id {
            if selected.is_empty() {
                return ApiResponse::message(404, format!("Task '{t}' does not exist"));
            }
        }
        let response = self.kill_instances(d, selected, scale, wipe, force);
        match (task_id, response) {
            (Some(_), Ok(tasks)) => ApiResponse::json(
                200,
                json!({"task": tasks.first().cloned().unwrap_or(Value::Null)}),
            ),
            (None, Ok(tasks)) => ApiResponse::json(200, json!({"tasks": tasks})),
            (_, Err(r)) => r,
        }
    }

    /// `POST /v2/tasks/delete` with `{"ids": [...]}`.
    pub fn kill_tasks(
        &mut self,
        d: &mut Driver<'_, '_>,
        body: &[u8],
        scale: bool,
        wipe: bool,
        force: bool,
    ) -> ApiResponse {
        if let Err(r) = self.guard(d) {
            return r;
        }
        if scale && wipe {
            return ApiResponse::message(400, "You cannot use scale and wipe at the same time.");
        }
        #[derive(Deserialize)]
        struct Ids {
            ids: Vec<String>,
        }
        let ids: Ids = match serde_json::from_slice(body) {
            Ok(ids) => ids,
            Err(e) => {
                return ApiResponse::json(
                    400,
                    json!({"message": "Invalid JSON", "details": e.to_string()}),
                )
            }
        };
        if ids.ids.len() > limits::TASK_IDS_PER_KILL_MAX {
            return ApiResponse::message(
                400,
                format!("at most {} task ids", limits::TASK_IDS_PER_KILL_MAX),
            );
        }
        let mut selected = Vec::new();
        for id in &ids.ids {
            if app_id_of_task(id).is_none() {
                return ApiResponse::message(400, format!("Invalid task id '{id}'"));
            }
            if self
                .instances
                .get(id.as_str())
                .is_some_and(Instance::is_alive)
            {
                selected.push(TaskId::new(id.clone()));
            }
        }
        match self.kill_instances(d, selected, scale, wipe, force) {
            Ok(tasks) => ApiResponse::json(200, json!({"tasks": tasks})),
            Err(r) => r,
        }
    }

    /// Kills instances; with `scale`, lowers their apps' `instances` in one deployment (whose
    /// result is returned as `Err`, as it is the answer); with `wipe`, forgets them at once.
    pub(super) fn kill_instances(
        &mut self,
        d: &mut Driver<'_, '_>,
        selected: Vec<TaskId>,
        scale: bool,
        wipe: bool,
        force: bool,
    ) -> Result<Vec<Value>, ApiResponse> {
        let mut ops = Vec::new();
        let tasks: Vec<Value> = selected
            .iter()
            .filter_map(|id| self.instances.get(id).map(Instance::task_json))
            .collect();
        if scale {
            let mut per_app: BTreeMap<String, u32> = BTreeMap::new();
            for id in &selected {
                if let Some(i) = self.instances.get(id) {
                    *per_app.entry(i.app_id.clone()).or_default() += 1;
                }
            }
            let app_ids: Vec<String> = per_app.keys().cloned().collect();
            self.take_locks(&app_ids, force, &mut ops)?;
            let mut changes = Vec::new();
            let mut original = BTreeMap::new();
            let mut actions = Vec::new();
            let mut version = String::new();
            for (app_id, count) in &per_app {
                let Some(existing) = self.apps.get(app_id).cloned() else {
                    continue;
                };
                let mut app = existing.app.clone();
                app.instances = app.instances.saturating_sub(*count);
                self.stamp(&mut app, Some(&existing), false);
                version = app.version.clone().unwrap_or_default();
                original.insert(app_id.clone(), Some(existing.app.clone()));
                actions.push(DeploymentAction {
                    action: ActionKind::ScaleApplication,
                    app: app_id.clone(),
                });
                changes.push((
                    app_id.clone(),
                    Some(Self::with_version(Some(&existing), &app)),
                ));
            }
            for id in &selected {
                if let Some(i) = self.instances.get_mut(id) {
                    i.kill_requested_ms = Some(self.wall_ms);
                    ops.push(StoreOp::PutInstance(Box::new(i.clone())));
                }
            }
            if version.is_empty() {
                version = self.next_version(None);
            }
            let deployment = self.new_deployment(d, &version, actions, original);
            self.commit_change(d, ops, changes, &deployment)?;
            self.flush_routes(d);
            for id in &selected {
                d.kill_task(id);
            }
            return Err(ApiResponse::deployment(200, &deployment));
        }
        for id in &selected {
            if wipe {
                self.instances.remove(id);
                ops.push(StoreOp::DeleteInstance(id.clone()));
            } else if let Some(i) = self.instances.get_mut(id) {
                i.kill_requested_ms = Some(self.wall_ms);
                ops.push(StoreOp::PutInstance(Box::new(i.clone())));
            }
        }
        if !self.persist(d, &ops) {
            return Err(self.unavailable());
        }
        self.flush_routes(d);
        for id in &selected {
            d.kill_task(id);
        }
        self.converge(d);
        Ok(tasks)
    }

    /// `DELETE /v2/deployments/{id}`: a rollback deployment (200), or with `force` just
    /// removed (202, empty body).
    pub fn delete_deployment(
        &mut self,
        d: &mut Driver<'_, '_>,
        id: &str,
        force: bool,
    ) -> ApiResponse {
        self.touch(d);
        if !self.is_acting() {
            return self.unavailable();
        }
        let Some(cancelled) = self.deployments.get(id).cloned() else {
            return ApiResponse::message(404, format!("DeploymentPlan {id} does not exist"));
        };
        let mut ops = vec![StoreOp::DeleteDeployment(id.to_string())];
        if force {
            if !self.persist(d, &ops) {
                return self.unavailable();
            }
            self.deployments.remove(id);
            let event = json!({"eventType": "deployment_failed", "timestamp": ts(self.wall_ms),
                               "id": id, "plan": cancelled.plan_json(), "reason": "cancelled"});
            self.events.publish("deployment_failed", &event);
            self.converge(d);
            return ApiResponse {
                status: 202,
                body: None,
                headers: Vec::new(),
            };
        }
        self.deployments.remove(id);
        let mut changes = Vec::new();
        let mut actions = Vec::new();
        let mut original = BTreeMap::new();
        let mut version = String::new();
        for (app_id, before) in &cancelled.original {
            let current = self.apps.get(app_id).cloned();
            original.insert(app_id.clone(), current.as_ref().map(|r| r.app.clone()));
            match (before, current) {
                (None, Some(_)) => {
                    actions.push(DeploymentAction {
                        action: ActionKind::StopApplication,
                        app: app_id.clone(),
                    });
                    changes.push((app_id.clone(), None));
                }
                (Some(before), current) => {
                    let mut app = before.clone();
                    let stamp = before
                        .version_info
                        .as_ref()
                        .map(|v| v.last_config_change_at.clone());
                    let config_changed = current
                        .as_ref()
                        .is_none_or(|c| config_of(&c.app) != config_of(before));
                    self.stamp(&mut app, current.as_ref(), !config_changed);
                    // Back to the old config stamp: instances of the old version count again.
                    if let (Some(stamp), Some(info)) = (stamp, app.version_info.as_mut()) {
                        info.last_config_change_at = stamp;
                    }
                    version = app.version.clone().unwrap_or_default();
                    let action = match &current {
                        None => ActionKind::StartApplication,
                        Some(_) if config_changed => ActionKind::RestartApplication,
                        Some(_) => ActionKind::ScaleApplication,
                    };
                    actions.push(DeploymentAction {
                        action,
                        app: app_id.clone(),
                    });
                    changes.push((
                        app_id.clone(),
                        Some(Self::with_version(current.as_ref(), &app)),
                    ));
                }
                (None, None) => {}
            }
        }
        if version.is_empty() {
            version = self.next_version(None);
        }
        // Other deployments on these apps are superseded by the rollback.
        let app_ids: Vec<String> = cancelled.original.keys().cloned().collect();
        let _ = self.take_locks(&app_ids, true, &mut ops);
        let deployment = self.new_deployment(d, &version, actions, original);
        if let Err(r) = self.commit_change(d, ops, changes, &deployment) {
            return r;
        }
        ApiResponse::deployment(200, &deployment)
    }

    /// `DELETE /v2/queue/{id}/delay`: 204, or 404 when the app is not queued.
    pub fn reset_delay(&mut self, d: &mut Driver<'_, '_>, url_id: &str) -> ApiResponse {
        self.touch(d);
        let id = crate::app::canonical_path_id(url_id, "/");
        if !self.apps.contains_key(&id)
            || (self.queued(&id) == 0 && !self.backoffs.contains_key(&id))
        {
            return ApiResponse::message(
                404,
                format!("Application {id} not found in tasks queue."),
            );
        }
        self.backoffs.remove(&id);
        self.converge(d);
        ApiResponse {
            status: 204,
            body: None,
            headers: Vec::new(),
        }
    }
}
