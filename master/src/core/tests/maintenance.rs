//! Maintenance in the master core: DRAINING offers and inverse offers, DOWN, UP.

use super::*;
use crate::maintenance::{MachineId, MachineMode, Unavailability, Window};

fn window_of(ip: &str) -> Window {
    Window {
        machine_ids: vec![MachineId::new(None, Some(ip))],
        unavailability: Unavailability {
            start_nanos: 2_000_000_000_000_000_000,
            duration_nanos: Some(3_600_000_000_000),
        },
    }
}

fn inverse_offers(h: &mut Harness) -> Vec<(Upid, InverseOffer)> {
    let mut out = Vec::new();
    h.sent.retain(|(to, m)| match m {
        Outgoing::InverseOffers(m) => {
            out.extend(m.inverse_offers.iter().map(|o| (to.clone(), o.clone())));
            false
        }
        _ => true,
    });
    out
}

#[test]
fn draining_machines_get_unavailability_and_inverse_offers_then_down_and_up() {
    let (mut h, a, framework) = running();
    let b = h.register_slave(secs(0.3), S2, BIG);
    let offers = h.allocate(secs(0.4));
    assert!(offers
        .iter()
        .all(|o| o.slave_id == b && o.unavailability.is_none()));
    h.take();

    // Schedule A's machine (by IP): persisted, its offers rescinded, an inverse offer to F1.
    h.core
        .handle_update_maintenance_schedule(secs(1.0), vec![window_of("10.0.0.2")])
        .unwrap();
    h.flush();
    assert_eq!(h.registry.maintenance.windows.len(), 1);
    let (_, unavailability, mode) = h.core.slave_maintenance(&h.core.slaves()[&a]).unwrap();
    assert_eq!(mode, MachineMode::Draining);
    assert!(h.core.slave_maintenance(&h.core.slaves()[&b]).is_none());
    assert!(
        h.core.slaves()[&a].offers.is_empty(),
        "offers of a newly draining slave are rescinded"
    );
    let sent = inverse_offers(&mut h);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, upid(F1));
    assert_eq!(sent[0].1.slave_id, a);
    assert_eq!(sent[0].1.unavailability, unavailability);
    let first = sent[0].1.id.clone();

    // Its offers carry the window (A's rest comes back after the launch's 5 s filter). No
    // second inverse offer while one waits.
    let offers = h.allocate(secs(5.5));
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].slave_id, a);
    assert_eq!(offers[0].unavailability, Some(unavailability));
    assert!(inverse_offers(&mut h).is_empty());

    // The framework accepts: recorded; asked again after the refusal.
    h.core.handle_respond_inverse_offers(
        secs(5.6),
        &upid(F1),
        RespondInverseOffersMessage {
            framework_id: framework.clone(),
            inverse_offer_ids: vec![first.clone()],
            accept: true,
            filters: Filters {
                refuse_seconds: 2.0,
            },
        },
    );
    h.flush();
    let entry = &h.core.inverse_offers()[&(a.clone(), framework.clone())];
    assert_eq!(entry.status, InverseOfferStatus::Accept);
    assert!(!entry.outstanding);
    h.allocate(secs(6.0));
    assert!(inverse_offers(&mut h).is_empty(), "filtered for 2 s");
    h.allocate(secs(7.7));
    let again = inverse_offers(&mut h);
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].1.id, first);
    assert_eq!(
        h.core.inverse_offers()[&(a.clone(), framework.clone())].status,
        InverseOfferStatus::Accept,
        "the last answer stays until a new one"
    );

    // UP is refused for a machine that is not DOWN; DOWN kills and removes the slave.
    let machine = MachineId::new(None, Some("10.0.0.2"));
    assert!(h
        .core
        .handle_machines_up(secs(8.0), vec![machine.clone()])
        .is_err());
    h.core
        .handle_machines_down(secs(8.0), vec![machine.clone()])
        .unwrap();
    h.flush();
    assert!(h.registry.maintenance.down.contains(&machine));
    assert!(!h.core.slaves().contains_key(&a));
    assert!(!h.registry.slaves.contains_key(&a));
    let sent = h.take();
    assert!(sent.iter().any(|(to, m)| *to == upid(S1)
        && matches!(m, Outgoing::KillTask(k) if k.task_id.as_str() == "t1")));
    let gone: Vec<&StatusUpdateMessage> = sent
        .iter()
        .filter_map(|(_, m)| match m {
            Outgoing::StatusUpdate(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].status.state, TaskState::GoneByOperator);
    assert!(sent.iter().any(|(to, m)| *to == upid(F1)
        && matches!(m, Outgoing::RescindInverseOffer(r) if r.inverse_offer_id == again[0].1.id)));
    assert!(h.core.inverse_offers().is_empty());

    // While DOWN it cannot come back, with a new registration or its old id.
    h.reregister_slave(secs(9.0), S1, &a, vec![], vec![]);
    assert!(!h.core.slaves().contains_key(&a));
    h.core.handle_register_slave(
        secs(9.0),
        &upid(S1),
        RegisterSlaveMessage {
            slave: slave_info(S1, BIG),
        },
    );
    h.flush();
    assert_eq!(h.core.slaves().len(), 1);
    assert_eq!(h.core.counters().slave_registrations_refused_down, 2);
    // A DOWN machine cannot leave the schedule but by UP.
    assert!(h
        .core
        .handle_update_maintenance_schedule(secs(9.0), vec![])
        .is_err());

    // A new master recovers the schedule and still refuses it.
    let mut recovered = Harness::with(MasterConfig::default(), h.registry.clone());
    recovered.reregister_slave(secs(0.1), S1, &a, vec![], vec![]);
    assert!(!recovered.core.slaves().contains_key(&a));

    // UP: out of the schedule; it re-registers.
    h.core
        .handle_machines_up(secs(10.0), vec![machine])
        .unwrap();
    h.flush();
    assert!(h.registry.maintenance.is_empty());
    h.reregister_slave(secs(10.1), S1, &a, vec![], vec![]);
    assert_eq!(h.core.slaves()[&a].status, SlaveStatus::Connected);
    assert!(h.core.slave_maintenance(&h.core.slaves()[&a]).is_none());
    let offers = h.allocate(secs(11.0));
    assert!(offers
        .iter()
        .any(|o| o.slave_id == a && o.unavailability.is_none()));
}

#[test]
fn invalid_requests_change_nothing() {
    let (mut h, _, _) = running();
    h.take();
    let bad = Window {
        machine_ids: vec![MachineId::new(Some("h"), Some("not an ip"))],
        unavailability: Unavailability {
            start_nanos: 0,
            duration_nanos: None,
        },
    };
    let err = h
        .core
        .handle_update_maintenance_schedule(secs(1.0), vec![bad])
        .unwrap_err();
    assert_eq!(err.field, "windows[0].machine_ids[0].ip");
    let err = h.core.handle_machines_down(secs(1.0), vec![]).unwrap_err();
    assert_eq!(err.field, "machine_ids");
    h.flush();
    assert!(h.registry.maintenance.is_empty());
    assert!(h.take().is_empty());
}
