//! The API's read views: apps, tasks, versions, deployments, the queue, `/v2/info` and
//! `/metrics` as Marathon renders them.

use super::*;

impl MarathonScheduler {
    pub(super) fn counts(&self, app_id: &str) -> AppCounts {
        let mut counts = AppCounts::default();
        for i in self.app_instances(app_id).filter(|i| i.is_alive()) {
            match i.state {
                TaskState::Staging | TaskState::Starting => counts.tasks_staged += 1,
                TaskState::Running | TaskState::Killing => counts.tasks_running += 1,
                _ => {}
            }
            match i.health.as_ref().map(|h| h.alive) {
                Some(true) => counts.tasks_healthy += 1,
                Some(false) => counts.tasks_unhealthy += 1,
                None => {}
            }
        }
        counts
    }

    pub(super) fn app_deployments(&self, app_id: &str) -> Vec<DeploymentRef> {
        self.sorted_deployment_ids()
            .into_iter()
            .filter(|id| self.deployments[id].affects(app_id))
            .map(|id| DeploymentRef { id })
            .collect()
    }

    /// An app as the API shows it, with counts and deployments and the asked embeds.
    pub fn app_json(&self, app: &AppDefinition, embed: Embed) -> Value {
        let mut value = serde_json::to_value(AppWithStatus {
            app,
            counts: self.counts(&app.id),
            deployments: self.app_deployments(&app.id),
        })
        .unwrap_or(Value::Null);
        if embed.tasks {
            value["tasks"] = Value::Array(
                self.app_instances(&app.id)
                    .filter(|i| i.is_alive())
                    .map(Instance::task_json)
                    .collect(),
            );
        }
        if embed.last_task_failure {
            if let Some(f) = self.last_failures.get(&app.id) {
                value["lastTaskFailure"] = f.to_json();
            }
        }
        if embed.readiness {
            value["readinessCheckResults"] = Value::Array(self.readiness_results(&app.id));
        }
        value
    }

    /// `GET /v2/apps`: `{"apps": [...]}`, filtered by `id` (substring, case-insensitive),
    /// `cmd` (substring) and `label` (selector).
    pub fn apps_json(
        &self,
        embed: Embed,
        id: Option<&str>,
        cmd: Option<&str>,
        label: Option<&str>,
    ) -> Value {
        let id = id.map(str::to_ascii_lowercase);
        let apps: Vec<Value> = self
            .apps
            .values()
            .map(|r| &r.app)
            .filter(|a| {
                id.as_ref()
                    .is_none_or(|f| a.id.to_ascii_lowercase().contains(f.as_str()))
            })
            .filter(|a| cmd.is_none_or(|c| a.cmd.as_deref().is_some_and(|x| x.contains(c))))
            .filter(|a| label.is_none_or(|l| label_selector_matches(l, &a.labels)))
            .map(|a| self.app_json(a, embed))
            .collect();
        json!({"apps": apps})
    }

    /// `GET /v2/apps/{id}` (`{"app": ...}`) or `/v2/apps/{group}/*` (`{"*": [...]}`).
    pub fn get_app(&self, url_id: &str, embed: Embed) -> ApiResponse {
        if let Some(group) = url_id.strip_suffix("/*").or(url_id.strip_suffix("*")) {
            let prefix = crate::app::canonical_path_id(group, "/");
            let prefix = if prefix.ends_with('/') {
                prefix
            } else {
                format!("{prefix}/")
            };
            let apps: Vec<Value> = self
                .apps
                .values()
                .filter(|r| r.app.id.starts_with(&prefix))
                .map(|r| self.app_json(&r.app, embed))
                .collect();
            return ApiResponse::json(200, json!({"*": apps}));
        }
        let id = crate::app::canonical_path_id(url_id, "/");
        match self.apps.get(&id) {
            Some(r) => {
                let embed = Embed {
                    tasks: true,
                    last_task_failure: true,
                    deployments: true,
                    counts: true,
                    ..embed
                };
                ApiResponse::json(200, json!({"app": self.app_json(&r.app, embed)}))
            }
            None => ApiResponse::message(404, format!("App '{id}' does not exist")),
        }
    }

    /// `GET /v2/apps/{id}/tasks`.
    pub fn app_tasks(&self, url_id: &str) -> ApiResponse {
        let id = crate::app::canonical_path_id(url_id, "/");
        if !self.apps.contains_key(&id) {
            return ApiResponse::message(404, format!("App '{id}' does not exist"));
        }
        let tasks: Vec<Value> = self
            .app_instances(&id)
            .filter(|i| i.is_alive())
            .map(Instance::task_json)
            .collect();
        ApiResponse::json(200, json!({"tasks": tasks}))
    }

    /// `GET /v2/tasks[?status=running|staging]`.
    pub fn tasks_json(&self, statuses: &[String]) -> Value {
        let wanted: BTreeSet<String> = statuses.iter().map(|s| s.to_ascii_lowercase()).collect();
        let tasks: Vec<Value> = self
            .instances
            .values()
            .filter(|i| i.is_alive())
            .filter(|i| {
                wanted.is_empty()
                    || (wanted.contains("running") && i.state == TaskState::Running)
                    || (wanted.contains("staging") && i.is_staged())
            })
            .map(Instance::task_json)
            .collect();
        json!({"tasks": tasks})
    }

    /// `GET /v2/apps/{id}/versions`.
    pub fn versions(&self, url_id: &str) -> ApiResponse {
        let id = crate::app::canonical_path_id(url_id, "/");
        match self.apps.get(&id) {
            Some(r) => ApiResponse::json(
                200,
                json!({"versions": r.versions.keys().rev().collect::<Vec<_>>()}),
            ),
            None => ApiResponse::message(404, format!("App '{id}' does not exist")),
        }
    }

    /// `GET /v2/apps/{id}/versions/{version}`: the bare app.
    pub fn version(&self, url_id: &str, version: &str) -> ApiResponse {
        let id = crate::app::canonical_path_id(url_id, "/");
        let canonical =
            crate::time::canonical_timestamp(version).unwrap_or_else(|_| version.to_string());
        match self.apps.get(&id).and_then(|r| r.versions.get(&canonical)) {
            Some(app) => ApiResponse::json(200, serde_json::to_value(app).unwrap_or(Value::Null)),
            None => ApiResponse::message(
                404,
                format!("App '{id}' does not exist in version {version}"),
            ),
        }
    }

    /// `GET /v2/deployments`: a JSON array, oldest first.
    pub fn deployments_json(&self) -> Value {
        Value::Array(
            self.sorted_deployment_ids()
                .iter()
                .map(|id| self.deployments[id].to_json(&|app| self.readiness_results(app)))
                .collect(),
        )
    }

    /// `GET /v2/queue`.
    pub fn queue_json(&self, mono_now: Duration) -> Value {
        let mut items = Vec::new();
        for (id, record) in &self.apps {
            let count = self.app_plan(id).to_launch;
            if count == 0 {
                continue;
            }
            let delay = self
                .backoffs
                .get(id)
                .map(|b| b.queue_delay(mono_now))
                .unwrap_or(crate::backoff::QueueDelay {
                    time_left_seconds: 0,
                    overdue: true,
                });
            let stats = self.offer_stats.get(id).cloned().unwrap_or_default();
            let rejects: Vec<Value> = REJECT_REASONS
                .iter()
                .map(|r| {
                    let n = stats.rejects.get(r).copied().unwrap_or(0);
                    json!({"reason": r, "declined": n, "processed": stats.processed})
                })
                .collect();
            let mut summary = json!({
                "processedOffersCount": stats.processed,
                "unusedOffersCount": stats.unused,
                "rejectSummaryLastOffers": rejects,
                "rejectSummaryLaunchAttempt": rejects,
            });
            if let Some(at) = stats.last_unused_ms {
                summary["lastUnusedOfferAt"] = ts(at);
            }
            if let Some(at) = stats.last_used_ms {
                summary["lastUsedOfferAt"] = ts(at);
            }
            items.push(json!({
                "app": self.app_json(&record.app, Embed::default()),
                "count": count,
                "delay": delay,
                "since": ts(self.queue_since.get(id).copied().unwrap_or(self.wall_ms)),
                "processedOffersSummary": summary,
            }));
        }
        json!({"queue": items})
    }

    /// `GET /v2/info`.
    pub fn info_json(&self, connected: bool) -> Value {
        let c = &self.config;
        let leader = self.leader();
        let marathon_config = json!({
            "access_control_allow_origin": null,
            "checkpoint": true,
            "decline_offer_duration": c.decline_offer_duration.as_millis() as u64,
            "default_network_name": null,
            "env_vars_prefix": null,
            "executor": "//cmd",
            "failover_timeout": c.failover_timeout_secs as u64,
            "features": [],
            "framework_name": c.framework_name,
            "ha": self.is_replicated(),
            "hostname": c.hostname,
            "launch_token": 100,
            "launch_token_refresh_interval": 30000,
            "leader_proxy_connection_timeout_ms": limits::LEADER_PROXY_CONNECT_TIMEOUT.as_millis() as u64,
            "leader_proxy_read_timeout_ms": limits::LEADER_PROXY_READ_TIMEOUT.as_millis() as u64,
            "local_port_max": c.local_port_max,
            "local_port_min": c.local_port_min,
            "maintenance_mode": false,
            "master": c.master,
            "max_instances_per_offer": limits::INSTANCES_PER_OFFER_MAX,
            "mesos_bridge_name": "mesos-bridge",
            "mesos_heartbeat_failure_threshold": 5,
            "mesos_heartbeat_interval": 15000,
            "mesos_leader_ui_url": null,
            "mesos_role": c.role,
            // No framework user: a task runs as its app's `user`, else as the slave's default
            // task user, never as root unless an app asks for it.
            "mesos_user": null,
            "min_revive_offers_interval": 5000,
            "new_group_enforce_role": "Off",
            "offer_matching_timeout": 3000,
            "on_elected_prepare_timeout": 180000,
            "reconciliation_initial_delay": 0,
            "reconciliation_interval": c.reconciliation_interval.as_millis() as u64,
            "scale_apps_initial_delay": 0,
            "scale_apps_interval": c.tick_interval.as_millis() as u64,
            "store_cache": true,
            "task_launch_confirm_timeout": 300000,
            "task_launch_timeout": c.task_launch_timeout.as_millis() as u64,
            "task_lost_expunge_initial_delay": 300000,
            "task_lost_expunge_interval": 30000,
            "task_reservation_timeout": 20000,
            "webui_url": null,
        });
        json!({
            "name": "marathon",
            "version": "1.10.0-plateau",
            "buildref": env!("CARGO_PKG_VERSION"),
            "elected": self.serves_api(),
            "leader": leader,
            "frameworkId": self.framework_id.as_ref().map(|f| f.to_string()),
            "marathon_config": marathon_config,
            "zookeeper_config": {
                "zk": "",
                "zk_compression": false,
                "zk_compression_threshold": 65536,
                "zk_connection_timeout": 10000,
                "zk_max_node_size": 1024000,
                "zk_max_versions": limits::VERSIONS_PER_APP_MAX,
                "zk_session_timeout": if self.is_replicated() { c.session_ttl.as_millis() as u64 } else { 10000 },
                "zk_timeout": 10000,
            },
            "http_config": {"http_port": c.http_port, "https_port": 8443},
            "connected_to_master": connected,
        })
    }

    /// `GET /metrics`: Dropwizard-shaped JSON.
    pub fn metrics_json(&self) -> Value {
        let running = self
            .instances
            .values()
            .filter(|i| i.state == TaskState::Running)
            .count();
        let staged = self.instances.values().filter(|i| i.is_staged()).count();
        let leadership =
            (self.wall_ms - self.started_wall_ms.unwrap_or(self.wall_ms)).max(0) / 1000;
        let gauge = |v: f64| json!({"value": v});
        json!({
            "version": "4.0.0",
            "counters": {
                "marathon.tasks.launched.counter": {"count": self.launched_total},
                "marathon.http.event-streams.dropped.counter": {"count": self.events.dropped_subscribers()},
                "marathon.events.published.counter": {"count": self.events.published()},
            },
            "gauges": {
                "marathon.apps.active.gauge": gauge(self.apps.len() as f64),
                "marathon.deployments.active.gauge": gauge(self.deployments.len() as f64),
                "marathon.instances.running.gauge": gauge(running as f64),
                "marathon.instances.staged.gauge": gauge(staged as f64),
                "marathon.instances.launch-overdue.gauge": gauge(self.launchable().values().sum::<u32>() as f64),
                "marathon.http.event-streams.active.gauge": gauge(self.events.subscriber_count() as f64),
                "marathon.leadership.duration.gauge.seconds": gauge(leadership as f64),
            },
            "histograms": {},
            "meters": {},
            "timers": {},
        })
    }
}

pub(crate) fn service_ports_of(app: &AppDefinition) -> Vec<u32> {
    if app.is_host_networking() {
        app.port_definitions.iter().map(|p| p.port).collect()
    } else {
        app.container
            .as_ref()
            .and_then(|c| c.port_mappings.as_ref())
            .map(|m| m.iter().map(|p| p.service_port).collect())
            .unwrap_or_default()
    }
}

/// The root group `{id, apps, groups, pods, dependencies, version}` of deployment events.
pub(super) fn root_group_json<'a>(
    apps: impl Iterator<Item = &'a AppDefinition>,
    version: &str,
) -> Value {
    let apps: Vec<Value> = apps
        .map(|a| serde_json::to_value(a).unwrap_or(Value::Null))
        .collect();
    json!({"id": "/", "apps": apps, "groups": [], "pods": [], "dependencies": [], "version": version})
}

/// Marathon's label selector: comma-separated terms (all must hold): `key`, `key==v`,
/// `key!=v`, `key in (a,b)`, `key notin (a,b)`.
pub fn label_selector_matches(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    // Split on commas outside parentheses.
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    terms
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|term| {
            let set = |rest: &str| -> Vec<String> {
                rest.trim()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect()
            };
            if let Some((k, v)) = term.split_once("==") {
                labels.get(k.trim()).is_some_and(|x| x == v.trim())
            } else if let Some((k, v)) = term.split_once("!=") {
                labels.get(k.trim()).is_none_or(|x| x != v.trim())
            } else if let Some((k, rest)) = term.split_once(" notin ") {
                labels.get(k.trim()).is_none_or(|x| !set(rest).contains(x))
            } else if let Some((k, rest)) = term.split_once(" in ") {
                labels.get(k.trim()).is_some_and(|x| set(rest).contains(x))
            } else {
                labels.contains_key(term)
            }
        })
}
