//! Maintenance: which slaves are draining (from offers' unavailability and inverse offers),
//! and which instances must move off them (the planning itself is in `plan`).

use super::*;

impl MarathonScheduler {
    /// True when nothing new may be placed on `slave` and what runs there must move.
    pub(super) fn is_draining(&self, slave: Option<&SlaveId>) -> bool {
        !self.config.disable_maintenance_mode && slave.is_some_and(|s| self.draining.contains(s))
    }

    /// Notes what an offer says of its slave's maintenance: true when the offer must be
    /// declined because its slave's machine is scheduled for maintenance.
    pub(super) fn note_offer_maintenance(&mut self, offer: &Offer) -> bool {
        if self.config.disable_maintenance_mode {
            return false;
        }
        if offer.unavailability.is_some() {
            let room = self.draining.len() < limits::SLAVES_SEEN_MAX;
            if room && self.draining.insert(offer.slave_id.clone()) {
                tracing::info!(slave = %offer.slave_id, host = %offer.hostname, "slave scheduled for maintenance: draining it");
            }
            true
        } else {
            if self.draining.remove(&offer.slave_id) {
                tracing::info!(slave = %offer.slave_id, "slave no longer scheduled for maintenance");
            }
            false
        }
    }

    /// Inverse offers: their slaves are draining; the instances there move (converge), and
    /// the inverse offers are accepted. With `--disable_maintenance_mode` they are declined.
    pub(super) fn handle_inverse_offers(
        &mut self,
        d: &mut Driver<'_, '_>,
        inverse_offers: Vec<plateau_sdk::InverseOffer>,
    ) {
        self.touch(d);
        let ids: Vec<plateau_sdk::OfferId> = inverse_offers.iter().map(|o| o.id.clone()).collect();
        if self.config.disable_maintenance_mode || !self.is_acting() {
            d.decline_inverse_offers(ids, Filters::default());
            return;
        }
        for offer in inverse_offers {
            if self.inverse_offer_slaves.len() < limits::SLAVES_SEEN_MAX {
                self.inverse_offer_slaves
                    .insert(offer.id.clone(), offer.slave_id.clone());
            }
            if self.draining.len() < limits::SLAVES_SEEN_MAX {
                self.draining.insert(offer.slave_id);
            }
        }
        d.accept_inverse_offers(ids, Filters::default());
        self.converge(d);
    }

    /// An inverse offer is withdrawn: its slave is not draining any more (or went down, or
    /// nothing of Marathon is left there; an offer of it carries the truth again).
    pub(super) fn handle_inverse_offer_rescinded(
        &mut self,
        d: &mut Driver<'_, '_>,
        id: &plateau_sdk::OfferId,
    ) {
        self.touch(d);
        if let Some(slave) = self.inverse_offer_slaves.remove(id) {
            self.draining.remove(&slave);
            self.inverse_offer_slaves.retain(|_, s| *s != slave);
        }
    }
}
