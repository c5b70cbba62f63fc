//! Offer matching: which apps' instances an offer can hold (resources, ports, constraints,
//! backoff), the instances recorded before the launch, and the Mesos task of an instance.

use super::*;

impl MarathonScheduler {
    pub(super) fn handle_offers(&mut self, d: &mut Driver<'_, '_>, offers: Vec<Offer>) {
        self.touch(d);
        let decline = Filters {
            refuse_seconds: self.config.decline_offer_duration.as_secs_f64(),
        };
        if !self.is_acting() {
            d.decline_offers(
                offers.iter().map(|o| o.id.clone()).collect(),
                Filters::default(),
            );
            return;
        }
        let mut in_maintenance: BTreeSet<plateau_sdk::OfferId> = BTreeSet::new();
        for offer in &offers {
            if self.note_offer_maintenance(offer) {
                in_maintenance.insert(offer.id.clone());
            }
            if self.slaves.len() < limits::SLAVES_SEEN_MAX
                || self.slaves.contains_key(&offer.slave_id)
            {
                let mut placement = Placement::on_host(&offer.hostname);
                for (name, value) in offer.attributes.iter() {
                    placement
                        .attributes
                        .insert(name.to_string(), crate::state::attr_value(value));
                }
                self.slaves
                    .insert(offer.slave_id.clone(), SlaveSeen { placement });
            }
        }
        // One-per-agent apps may want more now that a slave is known.
        self.converge(d);
        if !self.is_acting() {
            return;
        }
        let mut launchable = self.launchable();
        let mut declined = Vec::new();
        let mut persisted = true;
        for offer in offers {
            if in_maintenance.contains(&offer.id) {
                // Nothing new on a slave whose machine is scheduled for maintenance.
                for app_id in launchable.keys() {
                    let stats = self.offer_stats.entry(app_id.clone()).or_default();
                    stats.processed += 1;
                    stats.unused += 1;
                    stats.last_unused_ms = Some(self.wall_ms);
                    *stats.rejects.entry("AgentMaintenance").or_default() += 1;
                }
                declined.push(offer.id.clone());
                continue;
            }
            let mut remaining = offer.resources.clone();
            let mut tasks = Vec::new();
            let mut ops = Vec::new();
            for (app_id, count) in launchable.iter_mut() {
                let mut used_any = false;
                while *count > 0 && tasks.len() < limits::INSTANCES_PER_OFFER_MAX {
                    match self.try_place(d, app_id, &offer, &remaining) {
                        Ok((task, instance)) => {
                            remaining = remaining
                                .checked_sub(&task.resources)
                                .expect("placement fits the remaining offer");
                            ops.push(StoreOp::PutInstance(Box::new(instance.clone())));
                            self.instances.insert(instance.task_id.clone(), instance);
                            tasks.push(task);
                            *count -= 1;
                            used_any = true;
                        }
                        Err(reason) => {
                            let stats = self.offer_stats.entry(app_id.clone()).or_default();
                            *stats.rejects.entry(reason).or_default() += 1;
                            break;
                        }
                    }
                }
                let stats = self.offer_stats.entry(app_id.clone()).or_default();
                stats.processed += 1;
                if used_any {
                    stats.last_used_ms = Some(self.wall_ms);
                } else {
                    stats.unused += 1;
                    stats.last_unused_ms = Some(self.wall_ms);
                }
            }
            launchable.retain(|_, n| *n > 0);
            if tasks.is_empty() {
                declined.push(offer.id.clone());
                continue;
            }
            // Recorded as STAGING before the launch leaves: a crash now cannot launch twice.
            if !self.persist(d, &ops) {
                persisted = false;
                break;
            }
            self.launched_total += tasks.len() as u64;
            for task in &tasks {
                if let Some(i) = self.instances.get(&task.task_id) {
                    let event = self.instance_changed_event(i);
                    self.events.publish("instance_changed_event", &event);
                }
            }
            d.launch_tasks(std::slice::from_ref(&offer.id), tasks, Filters::default());
        }
        d.decline_offers(declined, decline);
        if persisted {
            self.converge(d);
        }
    }

    pub(super) fn try_place(
        &self,
        d: &mut Driver<'_, '_>,
        app_id: &str,
        offer: &Offer,
        remaining: &Resources,
    ) -> Result<(TaskInfo, Instance), &'static str> {
        let record = self.apps.get(app_id).ok_or("UnfulfilledRole")?;
        let app = &record.app;
        let placement = &self
            .slaves
            .get(&offer.slave_id)
            .ok_or("AgentMaintenance")?
            .placement;
        let placed: Vec<Placement> = self
            .app_instances(app_id)
            .filter(|i| self.is_active(i, app))
            .map(Instance::placement)
            .collect();
        if is_one_per_agent(app)
            && self
                .app_instances(app_id)
                .any(|i| self.is_active(i, app) && i.slave_id.as_ref() == Some(&offer.slave_id))
        {
            return Err("UnfulfilledConstraint");
        }
        if !agent_matches(&app.constraints, placement, &placed) {
            return Err("UnfulfilledConstraint");
        }
        let scalars =
            Resources::new(app.cpus, app.mem, app.disk).map_err(|_| "InsufficientCpus")?;
        if remaining.cpus_milli() < scalars.cpus_milli() {
            return Err("InsufficientCpus");
        }
        if remaining.mem_milli() < scalars.mem_milli() {
            return Err("InsufficientMemory");
        }
        if remaining.disk_milli() < scalars.disk_milli() {
            return Err("InsufficientDisk");
        }
        if app.gpus > 0 {
            return Err("InsufficientGpus");
        }
        let service_ports: Vec<u32> = app.port_definitions.iter().map(|p| p.port).collect();
        let port_count = app.port_count();
        let host_ports: Vec<u32> = if app.require_ports && app.is_host_networking() {
            let mut taken = Vec::new();
            for &port in &service_ports {
                let port16 = u16::try_from(port).map_err(|_| "InsufficientPorts")?;
                if !remaining.ports().contains_value(port16) || taken.contains(&port) {
                    return Err("InsufficientPorts");
                }
                taken.push(port);
            }
            taken
        } else {
            let mut free = remaining.ports().clone();
            let taken = free
                .take_lowest(port_count as u32)
                .ok_or("InsufficientPorts")?;
            taken
                .iter()
                .flat_map(|(a, b)| u32::from(a)..=u32::from(b))
                .collect()
        };
        let ranges = Ranges::new(
            host_ports
                .iter()
                .map(|&p| (p as u16, p as u16))
                .collect::<Vec<_>>(),
        )
        .map_err(|_| "InsufficientPorts")?;
        let resources = scalars.with_ports(ranges);
        let mut task_id = task_id_for(app_id, &self.new_uuid(d));
        while self.instances.contains_key(&task_id) {
            task_id = task_id_for(app_id, &self.new_uuid(d));
        }
        let version = app.version.clone().unwrap_or_default();
        let task = build_task(app, &task_id, offer, resources, &host_ports);
        let instance = Instance {
            task_id,
            app_id: app_id.to_string(),
            version,
            config_version: record.config_version().to_string(),
            state: TaskState::Staging,
            slave_id: Some(offer.slave_id.clone()),
            host: offer.hostname.clone(),
            attributes: offer.attributes.clone(),
            ports: host_ports,
            service_ports,
            staged_at_ms: self.wall_ms,
            started_at_ms: None,
            has_health_check: task.health_check.is_some(),
            health: None,
            kill_requested_ms: None,
            unreachable_since_ms: None,
            readiness: self.readiness_for_launch(app),
        };
        Ok((task, instance))
    }

    // ---- readiness checks ------------------------------------------------------------------
}

/// Upper-cased, `[A-Z0-9_]` only (Marathon's env var name sanitizing).
pub(super) fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The Mesos task of an instance: command, resources, environment, health check.
pub fn build_task(
    app: &AppDefinition,
    task_id: &TaskId,
    offer: &Offer,
    resources: Resources,
    host_ports: &[u32],
) -> TaskInfo {
    let mut command = match (&app.cmd, app.args.split_first()) {
        (Some(cmd), _) => CommandInfo::shell(cmd),
        (None, Some((program, rest))) => CommandInfo {
            shell: false,
            value: program.clone(),
            arguments: rest.to_vec(),
            environment: BTreeMap::new(),
            user: None,
        },
        (None, None) => CommandInfo::shell("true"),
    };
    // The app's user (empty: unset); without one the slave's default task user.
    command.user = app.user.clone().filter(|u| !u.is_empty());
    let env = &mut command.environment;
    for (index, port) in host_ports.iter().enumerate() {
        env.insert(format!("PORT{index}"), port.to_string());
        if let Some(definition) = app.port_definitions.get(index) {
            if let Some(name) = &definition.name {
                env.insert(format!("PORT_{}", env_name(name)), port.to_string());
            }
            let requested = if definition.port == 0 {
                *port
            } else {
                definition.port
            };
            env.insert(format!("PORT_{requested}"), port.to_string());
        }
    }
    if let Some(first) = host_ports.first() {
        env.insert("PORT".into(), first.to_string());
    }
    env.insert(
        "PORTS".into(),
        host_ports
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    env.insert("HOST".into(), offer.hostname.clone());
    env.insert("MARATHON_APP_ID".into(), app.id.clone());
    env.insert(
        "MARATHON_APP_VERSION".into(),
        app.version.clone().unwrap_or_default(),
    );
    env.insert(
        "MARATHON_APP_RESOURCE_CPUS".into(),
        format!("{:?}", app.cpus),
    );
    env.insert("MARATHON_APP_RESOURCE_MEM".into(), format!("{:?}", app.mem));
    env.insert(
        "MARATHON_APP_RESOURCE_DISK".into(),
        format!("{:?}", app.disk),
    );
    env.insert("MARATHON_APP_RESOURCE_GPUS".into(), app.gpus.to_string());
    if let Some(image) = app
        .container
        .as_ref()
        .and_then(|c| c.docker.as_ref())
        .map(|d| d.image.clone())
    {
        env.insert("MARATHON_APP_DOCKER_IMAGE".into(), image);
    }
    let labels: Vec<(&String, &String)> = app
        .labels
        .iter()
        .filter(|(k, v)| k.len() <= 512 && v.len() <= 512)
        .collect();
    env.insert(
        "MARATHON_APP_LABELS".into(),
        labels
            .iter()
            .map(|(k, _)| env_name(k))
            .collect::<Vec<_>>()
            .join(" "),
    );
    for (k, v) in labels {
        env.insert(format!("MARATHON_APP_LABEL_{}", env_name(k)), v.clone());
    }
    // The user's env is applied last and wins; secret references are not resolved here.
    for (k, v) in &app.env {
        if let EnvValue::Value(v) = v {
            env.insert(k.clone(), v.clone());
        }
    }
    let health_check = app.health_checks.first().and_then(|hc| {
        let port = hc
            .port
            .or_else(|| host_ports.get(hc.port_index.unwrap_or(0) as usize).copied());
        let kind = match hc.protocol {
            HealthCheckProtocol::Command => HealthCheckKind::Command {
                command: CommandInfo::shell(&hc.command.as_ref()?.value),
            },
            HealthCheckProtocol::Tcp | HealthCheckProtocol::MesosTcp => HealthCheckKind::Tcp {
                port: u16::try_from(port?).ok()?,
            },
            _ => HealthCheckKind::Http {
                port: u16::try_from(port?).ok()?,
                path: hc.path.clone().unwrap_or_else(|| "/".into()),
            },
        };
        Some(WireHealthCheck {
            kind,
            delay_secs: f64::from(hc.delay_seconds),
            interval_secs: f64::from(hc.interval_seconds),
            timeout_secs: f64::from(hc.timeout_seconds),
            consecutive_failures: hc.max_consecutive_failures,
            grace_period_secs: f64::from(hc.grace_period_seconds),
        })
    });
    let name = app
        .id
        .trim_start_matches('/')
        .split('/')
        .rev()
        .collect::<Vec<_>>()
        .join(".");
    TaskInfo {
        name,
        task_id: task_id.clone(),
        slave_id: offer.slave_id.clone(),
        resources,
        command,
        health_check,
        labels: app.labels.clone(),
        kill_grace_period_secs: app.task_kill_grace_period_seconds.map(f64::from),
    }
}
