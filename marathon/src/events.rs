//! The event bus behind `GET /v2/events`: Marathon's events, fanned out to subscribers.
//!
//! The scheduler publishes with [`EventBus::publish`], which never blocks: each subscriber has
//! a bounded queue ([`crate::limits::EVENT_QUEUE_PER_SUBSCRIBER_MAX`], Marathon's
//! `--event_stream_max_outstanding_messages`); a subscriber whose queue is full is dropped
//! (its stream ends), as Marathon disconnects slow consumers. Frames are pre-rendered SSE
//! (`event: <type>\r\ndata: <json>\r\n\r\n`).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::limits::{EVENT_QUEUE_PER_SUBSCRIBER_MAX, EVENT_SUBSCRIBERS_MAX};

/// What a subscriber asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// Only these event types (empty: all).
    pub event_types: BTreeSet<String>,
    /// `plan-format=light`: deployment events without `original`/`target`.
    pub light_plans: bool,
}

struct Subscriber {
    subscription: Subscription,
    queue: mpsc::Sender<Bytes>,
}

/// The subscribers and their queues.
#[derive(Default)]
pub struct EventBus {
    subscribers: BTreeMap<u64, Subscriber>,
    next_id: u64,
    published: u64,
    dropped_subscribers: u64,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("subscribers", &self.subscribers.len())
            .field("published", &self.published)
            .finish()
    }
}

/// Renders one SSE frame.
pub fn sse_frame(event_type: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {event_type}\r\ndata: {data}\r\n\r\n"))
}

impl EventBus {
    /// Ends every subscriber's stream (this Marathon stopped leading: its clients reconnect,
    /// to the new leader).
    pub fn disconnect_all(&mut self) {
        self.subscribers.clear();
    }

    /// Adds a subscriber; `None` when there are already
    /// [`EVENT_SUBSCRIBERS_MAX`] of them.
    pub fn subscribe(&mut self, subscription: Subscription) -> Option<mpsc::Receiver<Bytes>> {
        self.subscribers.retain(|_, s| !s.queue.is_closed());
        if self.subscribers.len() >= EVENT_SUBSCRIBERS_MAX {
            return None;
        }
        let (tx, rx) = mpsc::channel(EVENT_QUEUE_PER_SUBSCRIBER_MAX);
        self.next_id += 1;
        self.subscribers.insert(
            self.next_id,
            Subscriber {
                subscription,
                queue: tx,
            },
        );
        Some(rx)
    }

    /// Number of subscribers (closed ones are removed at the next publish).
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

    /// True when someone listens: callers skip building events otherwise.
    pub fn has_subscribers(&self) -> bool {
        !self.subscribers.is_empty()
    }

    /// Events published so far.
    pub fn published(&self) -> u64 {
        self.published
    }

    /// Subscribers dropped for being slow.
    pub fn dropped_subscribers(&self) -> u64 {
        self.dropped_subscribers
    }

    /// Publishes `data` (which must carry `eventType`) as `event_type`; `light` is the light
    /// variant for subscribers that asked for `plan-format=light`.
    pub fn publish_with_light(&mut self, event_type: &str, data: &Value, light: Option<&Value>) {
        self.published += 1;
        if self.subscribers.is_empty() {
            return;
        }
        let full = sse_frame(event_type, data);
        let light = light.map(|l| sse_frame(event_type, l));
        let mut dropped = 0;
        self.subscribers.retain(|_, s| {
            let wanted = s.subscription.event_types.is_empty()
                || s.subscription.event_types.contains(event_type);
            if !wanted {
                return !s.queue.is_closed();
            }
            let frame = match (&light, s.subscription.light_plans) {
                (Some(l), true) => l.clone(),
                _ => full.clone(),
            };
            match s.queue.try_send(frame) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    dropped += 1;
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        self.dropped_subscribers += dropped;
        if dropped > 0 {
            tracing::warn!(dropped, "slow event stream subscribers disconnected");
        }
    }

    /// Publishes an event to every subscriber that wants its type.
    pub fn publish(&mut self, event_type: &str, data: &Value) {
        self.publish_with_light(event_type, data, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_and_drops_slow_subscribers() {
        let mut bus = EventBus::default();
        let mut all = bus.subscribe(Subscription::default()).unwrap();
        let mut only_status = bus
            .subscribe(Subscription {
                event_types: BTreeSet::from(["status_update_event".to_string()]),
                light_plans: false,
            })
            .unwrap();
        bus.publish("api_post_event", &json!({"eventType": "api_post_event"}));
        let frame = all.try_recv().unwrap();
        assert!(frame.starts_with(b"event: api_post_event\r\ndata: {"));
        assert!(frame.ends_with(b"\r\n\r\n"));
        assert!(only_status.try_recv().is_err());
        // Nobody reads `all`: once its queue is full it is dropped, `only_status` stays.
        for _ in 0..EVENT_QUEUE_PER_SUBSCRIBER_MAX + 1 {
            bus.publish("api_post_event", &json!({}));
        }
        assert_eq!(bus.subscriber_count(), 1);
        assert_eq!(bus.dropped_subscribers(), 1);
        bus.publish("status_update_event", &json!({}));
        assert!(only_status.try_recv().is_ok());
    }
}
