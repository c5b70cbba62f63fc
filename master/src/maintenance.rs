//! Maintenance primitives, as Mesos has them: a schedule of windows during which machines will
//! be unavailable, and each machine's mode.
//!
//! - **UP**: not in the schedule; its slaves are used as usual.
//! - **DRAINING**: in a window of the schedule. Its slaves' offers carry the window
//!   ([`Unavailability`]); frameworks with tasks there get inverse offers asking them to move
//!   away. Nothing else changes: tasks keep running.
//! - **DOWN**: taken out by the operator (`/master/machine/down`). Its slaves are removed, what
//!   ran there is killed (TASK_GONE_BY_OPERATOR), and they cannot register until the machine
//!   is brought UP again (`/master/machine/up`), which also takes it out of the schedule.
//!
//! A machine is a host name and/or an IP address ([`MachineId`]); a slave belongs to a machine
//! when every part the machine names equals the slave's (its host name, and the IP of its
//! address). Host names compare lowercased.
//!
//! Pure: this module validates operator requests against the current state and returns the
//! next state ([`MaintenanceState::with_schedule`], [`MaintenanceState::with_down`],
//! [`MaintenanceState::with_up`]); the master core persists it (`RegistryOp::SetMaintenance`)
//! and acts on the slaves.
//!
//! ```
//! use plateau_master::maintenance::{MachineId, MachineMode, MaintenanceState, Unavailability, Window};
//!
//! let machine = MachineId::new(Some("host-a"), Some("10.0.0.1"));
//! let window = Window {
//!     machine_ids: vec![machine.clone()],
//!     unavailability: Unavailability { start_nanos: 0, duration_nanos: Some(3_600_000_000_000) },
//! };
//! let state = MaintenanceState::default().with_schedule(vec![window])?;
//! assert_eq!(state.mode(&machine), MachineMode::Draining);
//! let state = state.with_down(&[machine.clone()])?;
//! assert_eq!(state.mode(&machine), MachineMode::Down);
//! assert!(state.is_down("HOST-A", "10.0.0.1"));
//! // A DOWN machine cannot leave the schedule but through /machine/up.
//! assert!(state.with_schedule(vec![]).is_err());
//! let state = state.with_up(&[machine.clone()])?;
//! assert_eq!(state.mode(&machine), MachineMode::Up);
//! assert!(state.windows.is_empty());
//! # Ok::<(), plateau_master::maintenance::MaintenanceError>(())
//! ```

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::limits::{MACHINE_ID_TEXT_LEN_MAX, MAINTENANCE_MACHINES_MAX, MAINTENANCE_WINDOWS_MAX};

/// A machine (Mesos' `MachineID`): a host name, an IP address, or both.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MachineId {
    /// Host name, lowercased.
    pub hostname: Option<String>,
    /// IP address, as text.
    pub ip: Option<String>,
}

impl MachineId {
    /// A machine id; the host name is lowercased, empty parts count as absent.
    pub fn new(hostname: Option<&str>, ip: Option<&str>) -> Self {
        MachineId {
            hostname: hostname
                .filter(|h| !h.is_empty())
                .map(|h| h.to_ascii_lowercase()),
            ip: ip.filter(|i| !i.is_empty()).map(str::to_string),
        }
    }

    /// True when a slave with `hostname` at `ip` is on this machine: every part this id names
    /// is equal (host names without regard to case).
    pub fn matches(&self, hostname: &str, ip: &str) -> bool {
        let host_ok = self
            .hostname
            .as_deref()
            .is_none_or(|h| h.eq_ignore_ascii_case(hostname));
        let ip_ok = self.ip.as_deref().is_none_or(|i| i == ip);
        host_ok && ip_ok && (self.hostname.is_some() || self.ip.is_some())
    }

    /// `hostname (ip)`, for messages.
    pub fn label(&self) -> String {
        match (&self.hostname, &self.ip) {
            (Some(h), Some(i)) => format!("{h} ({i})"),
            (Some(h), None) => h.clone(),
            (None, Some(i)) => i.clone(),
            (None, None) => "(empty)".into(),
        }
    }

    /// Checks an id given by an operator: at least one part, a parseable IP, bounded text.
    /// `field` names it in the error.
    pub fn check(&self, field: &str) -> Result<(), MaintenanceError> {
        if self.hostname.is_none() && self.ip.is_none() {
            return Err(MaintenanceError::new(
                field,
                "a machine needs a hostname or an ip",
            ));
        }
        for part in [&self.hostname, &self.ip].into_iter().flatten() {
            if part.len() > MACHINE_ID_TEXT_LEN_MAX {
                return Err(MaintenanceError::new(
                    field,
                    format!("longer than {MACHINE_ID_TEXT_LEN_MAX} bytes"),
                ));
            }
        }
        if let Some(ip) = &self.ip {
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(MaintenanceError::new(
                    &format!("{field}.ip"),
                    format!("'{ip}' is not an IP address"),
                ));
            }
        }
        Ok(())
    }
}

/// When a machine is unavailable (Mesos' `Unavailability`): from `start_nanos` (Unix epoch,
/// nanoseconds) for `duration_nanos` (none: until further notice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Unavailability {
    /// Start, nanoseconds since the Unix epoch.
    pub start_nanos: i64,
    /// Length in nanoseconds, if known.
    pub duration_nanos: Option<i64>,
}

/// A maintenance window: machines and when they are unavailable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// The machines.
    pub machine_ids: Vec<MachineId>,
    /// When.
    pub unavailability: Unavailability,
}

/// A machine's mode (Mesos' `MachineInfo.Mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MachineMode {
    /// In service: not in the schedule.
    Up,
    /// Scheduled for maintenance: frameworks are asked to move off it.
    Draining,
    /// Out of service.
    Down,
}

impl MachineMode {
    /// Mesos' name.
    pub fn as_str(self) -> &'static str {
        match self {
            MachineMode::Up => "UP",
            MachineMode::Draining => "DRAINING",
            MachineMode::Down => "DOWN",
        }
    }
}

/// An operator request that cannot be applied: which field, and why (answered as a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct MaintenanceError {
    /// The JSON path of the offending field (`windows[0].machine_ids[1]`).
    pub field: String,
    /// Why.
    pub message: String,
}

impl MaintenanceError {
    /// An error about `field`.
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        MaintenanceError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// The schedule and the machines that are DOWN: what the master's registry keeps.
/// Invariant: every DOWN machine is in a window of the schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceState {
    /// The schedule's windows, in the order given.
    pub windows: Vec<Window>,
    /// Machines taken down.
    pub down: BTreeSet<MachineId>,
}

impl MaintenanceState {
    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty() && self.down.is_empty()
    }

    /// The window a machine is in.
    pub fn window_of(&self, machine: &MachineId) -> Option<&Window> {
        self.windows
            .iter()
            .find(|w| w.machine_ids.iter().any(|m| m == machine))
    }

    /// A machine's mode.
    pub fn mode(&self, machine: &MachineId) -> MachineMode {
        if self.down.contains(machine) {
            MachineMode::Down
        } else if self.window_of(machine).is_some() {
            MachineMode::Draining
        } else {
            MachineMode::Up
        }
    }

    /// Every machine of the schedule with its window's unavailability, in schedule order.
    pub fn machines(&self) -> impl Iterator<Item = (&MachineId, &Unavailability)> {
        self.windows
            .iter()
            .flat_map(|w| w.machine_ids.iter().map(move |m| (m, &w.unavailability)))
    }

    /// The machine of the schedule a slave with `hostname` at `ip` is on (the first that
    /// matches), with its unavailability and mode.
    pub fn machine_of(
        &self,
        hostname: &str,
        ip: &str,
    ) -> Option<(&MachineId, Unavailability, MachineMode)> {
        self.machines()
            .find(|(m, _)| m.matches(hostname, ip))
            .map(|(m, u)| (m, *u, self.mode(m)))
    }

    /// True when a slave with `hostname` at `ip` is on a DOWN machine.
    pub fn is_down(&self, hostname: &str, ip: &str) -> bool {
        self.down.iter().any(|m| m.matches(hostname, ip))
    }

    /// The state with `windows` as the schedule (`POST /master/maintenance/schedule`), as
    /// Mesos validates it: each window has machines, each machine is valid and in at most one
    /// window, durations are not negative, and DOWN machines stay in the schedule.
    pub fn with_schedule(&self, windows: Vec<Window>) -> Result<Self, MaintenanceError> {
        if windows.len() > MAINTENANCE_WINDOWS_MAX {
            return Err(MaintenanceError::new(
                "windows",
                format!("more than {MAINTENANCE_WINDOWS_MAX} windows"),
            ));
        }
        let mut seen: BTreeSet<&MachineId> = BTreeSet::new();
        for (i, window) in windows.iter().enumerate() {
            if window.machine_ids.is_empty() {
                return Err(MaintenanceError::new(
                    &format!("windows[{i}].machine_ids"),
                    "a window needs at least one machine",
                ));
            }
            if let Some(d) = window.unavailability.duration_nanos {
                if d < 0 {
                    return Err(MaintenanceError::new(
                        &format!("windows[{i}].unavailability.duration"),
                        "must not be negative",
                    ));
                }
            }
            for (j, machine) in window.machine_ids.iter().enumerate() {
                let field = format!("windows[{i}].machine_ids[{j}]");
                machine.check(&field)?;
                if !seen.insert(machine) {
                    return Err(MaintenanceError::new(
                        &field,
                        format!(
                            "machine {} is in more than one window (or twice in one)",
                            machine.label()
                        ),
                    ));
                }
                if seen.len() > MAINTENANCE_MACHINES_MAX {
                    return Err(MaintenanceError::new(
                        "windows",
                        format!("more than {MAINTENANCE_MACHINES_MAX} machines"),
                    ));
                }
            }
        }
        if let Some(missing) = self.down.iter().find(|m| !seen.contains(m)) {
            return Err(MaintenanceError::new(
                "windows",
                format!(
                    "machine {} is DOWN and cannot be removed from the schedule (bring it up first)",
                    missing.label()
                ),
            ));
        }
        Ok(MaintenanceState {
            windows,
            down: self.down.clone(),
        })
    }

    /// Checks a list of machines of `/machine/down` or `/machine/up`: not empty, bounded, each
    /// valid, no duplicates.
    fn check_list(machines: &[MachineId]) -> Result<(), MaintenanceError> {
        if machines.is_empty() {
            return Err(MaintenanceError::new("machine_ids", "no machines given"));
        }
        if machines.len() > MAINTENANCE_MACHINES_MAX {
            return Err(MaintenanceError::new(
                "machine_ids",
                format!("more than {MAINTENANCE_MACHINES_MAX} machines"),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, machine) in machines.iter().enumerate() {
            let field = format!("machine_ids[{i}]");
            machine.check(&field)?;
            if !seen.insert(machine) {
                return Err(MaintenanceError::new(
                    &field,
                    format!("machine {} is listed twice", machine.label()),
                ));
            }
        }
        Ok(())
    }

    /// The state with `machines` DOWN (`POST /master/machine/down`): each must be DRAINING
    /// (in the schedule, not down yet).
    pub fn with_down(&self, machines: &[MachineId]) -> Result<Self, MaintenanceError> {
        Self::check_list(machines)?;
        let mut next = self.clone();
        for (i, machine) in machines.iter().enumerate() {
            let field = format!("machine_ids[{i}]");
            match self.mode(machine) {
                MachineMode::Draining => {
                    next.down.insert(machine.clone());
                }
                MachineMode::Up => {
                    return Err(MaintenanceError::new(
                        &field,
                        format!(
                            "machine {} is not part of a maintenance schedule",
                            machine.label()
                        ),
                    ))
                }
                MachineMode::Down => {
                    return Err(MaintenanceError::new(
                        &field,
                        format!("machine {} is already DOWN", machine.label()),
                    ))
                }
            }
        }
        Ok(next)
    }

    /// The state with `machines` UP (`POST /master/machine/up`): each must be DOWN; it leaves
    /// the DOWN set and the schedule (a window left with no machine goes too).
    pub fn with_up(&self, machines: &[MachineId]) -> Result<Self, MaintenanceError> {
        Self::check_list(machines)?;
        for (i, machine) in machines.iter().enumerate() {
            if !self.down.contains(machine) {
                return Err(MaintenanceError::new(
                    &format!("machine_ids[{i}]"),
                    format!(
                        "machine {} is not DOWN and cannot be brought up",
                        machine.label()
                    ),
                ));
            }
        }
        let up: BTreeSet<&MachineId> = machines.iter().collect();
        let mut next = self.clone();
        next.down.retain(|m| !up.contains(m));
        for window in &mut next.windows {
            window.machine_ids.retain(|m| !up.contains(m));
        }
        next.windows.retain(|w| !w.machine_ids.is_empty());
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(host: &str, ip: &str) -> MachineId {
        MachineId::new(Some(host), Some(ip))
    }

    fn window(machines: &[MachineId]) -> Window {
        Window {
            machine_ids: machines.to_vec(),
            unavailability: Unavailability {
                start_nanos: 1_000,
                duration_nanos: Some(3_600_000_000_000),
            },
        }
    }

    #[test]
    fn machines_match_slaves_by_hostname_and_or_ip() {
        let both = m("Host-A", "10.0.0.1");
        assert!(both.matches("host-a", "10.0.0.1"));
        assert!(!both.matches("host-a", "10.0.0.2"));
        assert!(!both.matches("host-b", "10.0.0.1"));
        let host = MachineId::new(Some("host-a"), None);
        assert!(host.matches("HOST-A", "anything"));
        let ip = MachineId::new(None, Some("10.0.0.1"));
        assert!(ip.matches("whatever", "10.0.0.1"));
        assert!(!ip.matches("whatever", "10.0.0.10"));
        assert!(!MachineId::new(None, None).matches("h", "i"));
    }

    #[test]
    fn schedules_are_validated_as_mesos_does() {
        let s = MaintenanceState::default();
        let a = m("a", "10.0.0.1");
        let b = m("b", "10.0.0.2");
        let err = s
            .with_schedule(vec![
                window(std::slice::from_ref(&a)),
                window(&[b.clone(), a.clone()]),
            ])
            .unwrap_err();
        assert_eq!(err.field, "windows[1].machine_ids[1]");
        let err = s.with_schedule(vec![window(&[])]).unwrap_err();
        assert_eq!(err.field, "windows[0].machine_ids");
        let err = s
            .with_schedule(vec![window(&[MachineId::new(
                Some("x"),
                Some("not-an-ip"),
            )])])
            .unwrap_err();
        assert_eq!(err.field, "windows[0].machine_ids[0].ip");
        let err = s
            .with_schedule(vec![window(&[MachineId::new(None, None)])])
            .unwrap_err();
        assert_eq!(err.field, "windows[0].machine_ids[0]");
        let mut negative = window(std::slice::from_ref(&a));
        negative.unavailability.duration_nanos = Some(-1);
        assert_eq!(
            s.with_schedule(vec![negative]).unwrap_err().field,
            "windows[0].unavailability.duration"
        );
        let s = s
            .with_schedule(vec![
                window(std::slice::from_ref(&a)),
                window(std::slice::from_ref(&b)),
            ])
            .unwrap();
        assert_eq!(s.mode(&a), MachineMode::Draining);
        assert_eq!(s.mode(&b), MachineMode::Draining);
        // Replacing the schedule: b leaves it (UP again).
        let s = s
            .with_schedule(vec![window(std::slice::from_ref(&a))])
            .unwrap();
        assert_eq!(s.mode(&b), MachineMode::Up);
    }

    #[test]
    fn down_and_up_follow_the_modes() {
        let a = m("a", "10.0.0.1");
        let b = m("b", "10.0.0.2");
        let s = MaintenanceState::default()
            .with_schedule(vec![window(&[a.clone(), b.clone()])])
            .unwrap();
        // Up only from DOWN; down only from DRAINING.
        assert!(s.with_up(std::slice::from_ref(&a)).is_err());
        assert_eq!(
            s.with_down(&[m("c", "10.0.0.3")]).unwrap_err().field,
            "machine_ids[0]"
        );
        assert!(s.with_down(&[]).is_err());
        assert!(s.with_down(&[a.clone(), a.clone()]).is_err());
        let s = s.with_down(std::slice::from_ref(&a)).unwrap();
        assert_eq!(s.mode(&a), MachineMode::Down);
        assert!(
            s.with_down(std::slice::from_ref(&a)).is_err(),
            "already down"
        );
        assert!(s.is_down("a", "10.0.0.1"));
        assert!(!s.is_down("b", "10.0.0.2"));
        // A DOWN machine stays in the schedule.
        let err = s
            .with_schedule(vec![window(std::slice::from_ref(&b))])
            .unwrap_err();
        assert_eq!(err.field, "windows");
        let s = s.with_up(std::slice::from_ref(&a)).unwrap();
        assert_eq!(s.mode(&a), MachineMode::Up);
        assert_eq!(s.windows.len(), 1);
        assert_eq!(s.windows[0].machine_ids, vec![b.clone()]);
        let s = s
            .with_down(std::slice::from_ref(&b))
            .unwrap()
            .with_up(std::slice::from_ref(&b))
            .unwrap();
        assert!(s.is_empty(), "an emptied window is removed");
    }
}
