//! Authorization: which principal may do which action on which object, modelled on Mesos'
//! ACLs.
//!
//! An ACL file lists, per action, rules of a subject (`principals`) and an object (its key
//! depends on the action: `roles`, `users`, `paths`, `apps`, `jobs`, ...). Each is an entity:
//! `{"values": ["a", "b"]}` (some), `{"type": "ANY"}` or `{"type": "NONE"}`.
//!
//! ```json
//! {
//!   "permissive": false,
//!   "update_apps": [
//!     {"principals": {"values": ["ci"]}, "apps": {"values": ["/dev"]}},
//!     {"principals": {"type": "ANY"}, "apps": {"type": "NONE"}}
//!   ]
//! }
//! ```
//!
//! The rules of an action are tried in order and **the first that matches decides**, as in
//! Mesos: a rule matches when its `principals` match the principal and its object entity
//! matches the object (an entity of type `NONE` matches everything, so that it can deny); it
//! allows unless one of the two is `NONE`. When no rule matches, `permissive` decides
//! (default `true`, as in Mesos).
//!
//! A request whose object is not known (a request with no object in its request line, such as
//! `POST /v2/apps`, whose app id is in the body) is an *any* object: only rules whose object
//! is `ANY` (allow) or `NONE` (deny) match it. A request with no principal (an API that takes
//! no credentials) is an *any* principal, in the same way.
//!
//! Values match exactly, except app ids and job names, which also match by group prefix:
//! `/dev` matches `/dev`, `/dev/web` and `/dev/db/x` but not `/developers`; `/` matches
//! every app and job.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::limits::ACL_RULES_MAX;
use crate::Error;

/// What a principal wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Register a framework in a role (object: the role).
    RegisterFrameworks,
    /// Run a task as a user (object: the user).
    RunTasks,
    /// Tear down a framework (object: the framework's principal).
    TeardownFrameworks,
    /// Read an endpoint (object: the path, e.g. `/state`, `/metrics`).
    GetEndpoints,
    /// Read a task sandbox through `/files/read` (object: the task's user).
    AccessSandboxes,
    /// Change the members of the master group (object: the member).
    UpdateMembers,
    /// Create, change, restart, delete Marathon apps (object: the app id).
    UpdateApps,
    /// Read Marathon apps, tasks, deployments, the queue, events (object: the app id).
    ViewApps,
    /// Kill Marathon tasks (object: the app id).
    KillTasks,
    /// Create, change, start, delete Chronos jobs, kill their tasks (object: the job name).
    UpdateJobs,
    /// Read Chronos jobs, their stats and graph (object: the job name).
    ViewJobs,
    /// Read the master's maintenance schedule (object: a machine, `hostname` or `ip`).
    GetMaintenanceSchedules,
    /// Replace the master's maintenance schedule (object: a machine).
    UpdateMaintenanceSchedules,
    /// Take machines down for maintenance, `/master/machine/down` (object: a machine).
    StartMaintenances,
    /// Bring machines back up, `/master/machine/up` (object: a machine).
    StopMaintenances,
    /// Read the maintenance status (object: a machine).
    GetMaintenanceStatuses,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 16] = [
        Action::RegisterFrameworks,
        Action::RunTasks,
        Action::TeardownFrameworks,
        Action::GetEndpoints,
        Action::AccessSandboxes,
        Action::UpdateMembers,
        Action::UpdateApps,
        Action::ViewApps,
        Action::KillTasks,
        Action::UpdateJobs,
        Action::ViewJobs,
        Action::GetMaintenanceSchedules,
        Action::UpdateMaintenanceSchedules,
        Action::StartMaintenances,
        Action::StopMaintenances,
        Action::GetMaintenanceStatuses,
    ];

    /// Its key in the ACL file.
    pub fn name(self) -> &'static str {
        match self {
            Action::RegisterFrameworks => "register_frameworks",
            Action::RunTasks => "run_tasks",
            Action::TeardownFrameworks => "teardown_frameworks",
            Action::GetEndpoints => "get_endpoints",
            Action::AccessSandboxes => "access_sandboxes",
            Action::UpdateMembers => "update_members",
            Action::UpdateApps => "update_apps",
            Action::ViewApps => "view_apps",
            Action::KillTasks => "kill_tasks",
            Action::UpdateJobs => "update_jobs",
            Action::ViewJobs => "view_jobs",
            Action::GetMaintenanceSchedules => "get_maintenance_schedules",
            Action::UpdateMaintenanceSchedules => "update_maintenance_schedules",
            Action::StartMaintenances => "start_maintenances",
            Action::StopMaintenances => "stop_maintenances",
            Action::GetMaintenanceStatuses => "get_maintenance_statuses",
        }
    }

    /// The key of its object entity in a rule.
    pub fn object_key(self) -> &'static str {
        match self {
            Action::RegisterFrameworks => "roles",
            Action::RunTasks | Action::AccessSandboxes => "users",
            Action::TeardownFrameworks => "framework_principals",
            Action::GetEndpoints => "paths",
            Action::UpdateMembers => "members",
            Action::UpdateApps | Action::ViewApps | Action::KillTasks => "apps",
            Action::UpdateJobs | Action::ViewJobs => "jobs",
            Action::GetMaintenanceSchedules
            | Action::UpdateMaintenanceSchedules
            | Action::StartMaintenances
            | Action::StopMaintenances
            | Action::GetMaintenanceStatuses => "machines",
        }
    }

    /// Whether its object values match by group prefix (app ids, job names).
    fn matches_by_prefix(self) -> bool {
        matches!(
            self,
            Action::UpdateApps
                | Action::ViewApps
                | Action::KillTasks
                | Action::UpdateJobs
                | Action::ViewJobs
        )
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A subject or object of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    /// These values.
    Some(Vec<String>),
    /// Anything.
    Any,
    /// Nothing: a rule with it denies what it matches.
    None,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityJson {
    #[serde(default)]
    values: Option<Vec<String>>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

impl Entity {
    fn parse(v: &Value, at: &str) -> Result<Entity, Error> {
        let e: EntityJson =
            serde_json::from_value(v.clone()).map_err(|e| Error::Acls(format!("{at}: {e}")))?;
        match (e.values, e.kind.as_deref()) {
            (Some(values), None | Some("SOME")) => Ok(Entity::Some(values)),
            (None, Some("ANY")) => Ok(Entity::Any),
            (None, Some("NONE")) => Ok(Entity::None),
            _ => Err(Error::Acls(format!(
                "{at}: an entity is {{\"values\": [..]}}, {{\"type\": \"ANY\"}} or {{\"type\": \"NONE\"}}"
            ))),
        }
    }

    /// Whether a request value (`None`: any) falls under this entity (Mesos' `matches`).
    fn matches(&self, value: Option<&str>, by_prefix: bool) -> bool {
        match (self, value) {
            (Entity::Any | Entity::None, _) => true,
            (Entity::Some(_), None) => false,
            (Entity::Some(values), Some(v)) => {
                values.iter().any(|x| value_matches(x, v, by_prefix))
            }
        }
    }

    fn allows(&self) -> bool {
        !matches!(self, Entity::None)
    }
}

fn value_matches(rule: &str, value: &str, by_prefix: bool) -> bool {
    if rule == value {
        return true;
    }
    if !by_prefix {
        return false;
    }
    let group = rule.trim_end_matches('/');
    if group.is_empty() {
        // `/` is the root group: every app.
        return rule == "/";
    }
    value
        .strip_prefix(group)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// One rule: subject and object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Who.
    pub principals: Entity,
    /// On what.
    pub objects: Entity,
}

/// The authorization policy (`--acls FILE`). The default allows everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acls {
    permissive: bool,
    rules: Vec<(Action, Vec<Rule>)>,
}

impl Default for Acls {
    fn default() -> Self {
        Acls {
            permissive: true,
            rules: Vec::new(),
        }
    }
}

impl Acls {
    /// From the JSON text of an ACL file; unknown actions and malformed rules are refused.
    pub fn from_json(text: &str) -> Result<Acls, Error> {
        let root: Map<String, Value> =
            serde_json::from_str(text).map_err(|e| Error::Acls(e.to_string()))?;
        let mut acls = Acls::default();
        let mut count = 0usize;
        for (key, value) in &root {
            if key == "permissive" {
                acls.permissive = value
                    .as_bool()
                    .ok_or_else(|| Error::Acls("permissive: must be true or false".into()))?;
                continue;
            }
            let Some(action) = Action::ALL.iter().copied().find(|a| a.name() == key) else {
                let known: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
                return Err(Error::Acls(format!(
                    "unknown action '{key}' (known: permissive, {})",
                    known.join(", ")
                )));
            };
            let list = value
                .as_array()
                .ok_or_else(|| Error::Acls(format!("{key}: must be a list of rules")))?;
            let mut rules = Vec::with_capacity(list.len());
            for (i, rule) in list.iter().enumerate() {
                count += 1;
                if count > ACL_RULES_MAX {
                    return Err(Error::Acls(format!("more than {ACL_RULES_MAX} rules")));
                }
                let at = format!("{key}[{i}]");
                let obj = rule
                    .as_object()
                    .ok_or_else(|| Error::Acls(format!("{at}: a rule is an object")))?;
                let object_key = action.object_key();
                if let Some(other) = obj.keys().find(|k| *k != "principals" && *k != object_key) {
                    return Err(Error::Acls(format!(
                        "{at}: unknown field '{other}' (a {key} rule has 'principals' and '{object_key}')"
                    )));
                }
                let field = |k: &str| {
                    obj.get(k)
                        .ok_or_else(|| Error::Acls(format!("{at}: missing '{k}'")))
                        .and_then(|v| Entity::parse(v, &format!("{at}.{k}")))
                };
                rules.push(Rule {
                    principals: field("principals")?,
                    objects: field(object_key)?,
                });
            }
            acls.rules.push((action, rules));
        }
        Ok(acls)
    }

    /// Read an ACL file.
    pub fn load(path: &Path) -> Result<Acls, Error> {
        let text = crate::read_policy_file(path)?;
        Acls::from_json(&text).map_err(|e| match e {
            Error::Acls(m) => Error::Acls(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Whether no rule matching decides for the request.
    pub fn is_permissive(&self) -> bool {
        self.permissive
    }

    /// May `principal` (`None`: any, unauthenticated) do `action` on `object` (`None`: not
    /// known)? The first matching rule decides, else `permissive`.
    pub fn is_allowed(
        &self,
        principal: Option<&str>,
        action: Action,
        object: Option<&str>,
    ) -> bool {
        let by_prefix = action.matches_by_prefix();
        for rule in self
            .rules
            .iter()
            .filter(|(a, _)| *a == action)
            .flat_map(|(_, r)| r)
        {
            if rule.principals.matches(principal, false) && rule.objects.matches(object, by_prefix)
            {
                return rule.principals.allows() && rule.objects.allows();
            }
        }
        self.permissive
    }

    /// May `principal` register a framework in `role`? (For the master's registration.)
    pub fn can_register_framework(&self, principal: Option<&str>, role: &str) -> bool {
        self.is_allowed(principal, Action::RegisterFrameworks, Some(role))
    }

    /// May `principal` run tasks as `user`? (For the master's launch of a framework's tasks.)
    pub fn can_run_task(&self, principal: Option<&str>, user: &str) -> bool {
        self.is_allowed(principal, Action::RunTasks, Some(user))
    }

    /// May `principal` tear down a framework registered by `framework_principal`?
    pub fn can_teardown_framework(
        &self,
        principal: Option<&str>,
        framework_principal: &str,
    ) -> bool {
        self.is_allowed(
            principal,
            Action::TeardownFrameworks,
            Some(framework_principal),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_rule_decides_else_permissive() {
        let acls = Acls::from_json(
            r#"{
              "permissive": false,
              "update_apps": [
                {"principals": {"values": ["ci"]}, "apps": {"values": ["/dev"]}},
                {"principals": {"values": ["ci"]}, "apps": {"type": "NONE"}},
                {"principals": {"values": ["ops"]}, "apps": {"type": "ANY"}}
              ],
              "view_apps": [{"principals": {"type": "ANY"}, "apps": {"type": "ANY"}}]
            }"#,
        )
        .unwrap();
        let update = |p, o| acls.is_allowed(p, Action::UpdateApps, o);
        assert!(update(Some("ci"), Some("/dev/web")));
        assert!(update(Some("ci"), Some("/dev")));
        assert!(
            !update(Some("ci"), Some("/developers")),
            "prefix only by group"
        );
        assert!(
            !update(Some("ci"), Some("/prod/web")),
            "the NONE rule denies"
        );
        assert!(
            !update(Some("ci"), None),
            "an unknown app only matches ANY/NONE rules"
        );
        assert!(update(Some("ops"), Some("/prod/web")));
        assert!(update(Some("ops"), None));
        assert!(
            !update(Some("eve"), Some("/dev/web")),
            "no rule: not permissive"
        );
        assert!(
            !update(None, Some("/dev/web")),
            "an unauthenticated principal matches no SOME rule"
        );
        assert!(acls.is_allowed(Some("eve"), Action::ViewApps, Some("/x")));
        assert!(acls.is_allowed(None, Action::ViewApps, None));
        assert!(!acls.is_allowed(Some("ops"), Action::KillTasks, Some("/x")));
    }

    #[test]
    fn mesos_actions_for_the_master() {
        let acls = Acls::from_json(
            r#"{
              "register_frameworks": [
                {"principals": {"values": ["marathon"]}, "roles": {"values": ["apps", "*"]}},
                {"principals": {"type": "ANY"}, "roles": {"values": ["apps"]}},
                {"principals": {"type": "NONE"}, "roles": {"values": ["jobs"]}}
              ],
              "run_tasks": [
                {"principals": {"values": ["marathon"]}, "users": {"values": ["nobody", "www"]}},
                {"principals": {"values": ["marathon"]}, "users": {"type": "NONE"}}
              ],
              "teardown_frameworks": [
                {"principals": {"values": ["ops"]}, "framework_principals": {"type": "ANY"}},
                {"principals": {"type": "ANY"}, "framework_principals": {"type": "NONE"}}
              ]
            }"#,
        )
        .unwrap();
        assert!(acls.is_permissive());
        assert!(acls.can_register_framework(Some("marathon"), "apps"));
        assert!(acls.can_register_framework(Some("marathon"), "*"));
        assert!(
            acls.can_register_framework(Some("chronos"), "apps"),
            "the ANY-principal rule"
        );
        assert!(
            !acls.can_register_framework(Some("chronos"), "jobs"),
            "NONE principals deny everyone"
        );
        assert!(
            acls.can_register_framework(Some("chronos"), "other"),
            "no rule: permissive"
        );
        assert!(acls.can_run_task(Some("marathon"), "www"));
        assert!(!acls.can_run_task(Some("marathon"), "root"));
        assert!(
            acls.can_run_task(Some("chronos"), "root"),
            "no rule for chronos: permissive"
        );
        assert!(acls.can_teardown_framework(Some("ops"), "marathon"));
        assert!(!acls.can_teardown_framework(Some("dev"), "marathon"));
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let err = |t: &str| Acls::from_json(t).unwrap_err().to_string();
        assert!(err(r#"{"permissive": 1}"#).contains("permissive"));
        assert!(err(r#"{"launch_rockets": []}"#).contains("unknown action 'launch_rockets'"));
        assert!(err(r#"{"view_apps": {}}"#).contains("list"));
        assert!(
            err(r#"{"view_apps": [{"principals": {"type": "ANY"}}]}"#).contains("missing 'apps'")
        );
        assert!(err(
            r#"{"view_apps": [{"principals": {"type": "ANY"}, "roles": {"type": "ANY"}}]}"#
        )
        .contains("unknown field 'roles'"));
        assert!(err(
            r#"{"view_apps": [{"principals": {"type": "ALL"}, "apps": {"type": "ANY"}}]}"#
        )
        .contains("entity"));
        assert!(err(r#"{"view_apps": [{"principals": {"values": ["a"], "type": "ANY"}, "apps": {"type": "ANY"}}]}"#).contains("entity"));
        assert!(err("[").starts_with("ACLs: "));
    }

    #[test]
    fn mesos_maintenance_actions_parse_and_decide() {
        let acls = Acls::from_json(
            r#"{
              "permissive": false,
              "get_maintenance_schedules": [{"principals": {"type": "ANY"}, "machines": {"type": "ANY"}}],
              "update_maintenance_schedules": [{"principals": {"values": ["ops"]}, "machines": {"type": "ANY"}}],
              "start_maintenances": [{"principals": {"values": ["ops"]}, "machines": {"values": ["h1"]}}],
              "stop_maintenances": [{"principals": {"values": ["ops"]}, "machines": {"type": "ANY"}}],
              "get_maintenance_statuses": [{"principals": {"type": "ANY"}, "machines": {"type": "NONE"}}]
            }"#,
        )
        .unwrap();
        assert!(acls.is_allowed(Some("eve"), Action::GetMaintenanceSchedules, None));
        assert!(acls.is_allowed(Some("ops"), Action::UpdateMaintenanceSchedules, None));
        assert!(!acls.is_allowed(Some("eve"), Action::UpdateMaintenanceSchedules, None));
        assert!(acls.is_allowed(Some("ops"), Action::StartMaintenances, Some("h1")));
        assert!(!acls.is_allowed(Some("ops"), Action::StartMaintenances, Some("h2")));
        assert!(acls.is_allowed(Some("ops"), Action::StopMaintenances, None));
        assert!(!acls.is_allowed(Some("ops"), Action::GetMaintenanceStatuses, None));
        for action in [
            Action::GetMaintenanceSchedules,
            Action::UpdateMaintenanceSchedules,
            Action::StartMaintenances,
            Action::StopMaintenances,
            Action::GetMaintenanceStatuses,
        ] {
            assert_eq!(action.object_key(), "machines");
            assert!(Action::ALL.contains(&action));
        }
        // The object key is checked like any other.
        assert!(Acls::from_json(
            r#"{"start_maintenances": [{"principals": {"type": "ANY"}, "apps": {"type": "ANY"}}]}"#
        )
        .is_err());
    }

    #[test]
    fn the_root_group_matches_every_app() {
        let acls = Acls::from_json(
            r#"{"permissive": false, "view_jobs": [{"principals": {"values": ["a"]}, "jobs": {"values": ["/"]}}]}"#,
        )
        .unwrap();
        assert!(acls.is_allowed(Some("a"), Action::ViewJobs, Some("/x/y")));
        assert!(acls.is_allowed(Some("a"), Action::ViewJobs, Some("nightly")));
        assert!(!acls.is_allowed(Some("b"), Action::ViewJobs, Some("nightly")));
    }
}
