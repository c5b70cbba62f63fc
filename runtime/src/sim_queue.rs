//! The simulator's event queue: a radix heap on (time, sequence number).
//!
//! Events leave in (time, sequence) order, as from a binary heap, but a simulation pops keys
//! that never go down (nothing is scheduled before the last event taken), which a radix heap
//! exploits: entries sit in 129 buckets by the highest bit in which their key differs from the
//! last key popped, and move only towards lower buckets. A binary heap of a million pending
//! events walks twenty scattered cache lines per pop; this touches one or two vectors.

/// A monotone priority queue of `T` by `u128` key (unique keys, never below the last popped).
pub(crate) struct RadixQueue<T> {
    /// The last key popped: every key in the queue is at least this.
    last: u128,
    /// Bucket 0 holds keys equal to `last`; bucket `b` > 0 keys whose highest bit differing
    /// from `last` is bit `b - 1`.
    buckets: Vec<Vec<(u128, T)>>,
    len: usize,
    /// The smallest key, when known (cleared by a pop, lowered by a push).
    min: Option<u128>,
    /// An empty vector with storage, swapped with a bucket being redistributed.
    spare: Vec<(u128, T)>,
}

impl<T> RadixQueue<T> {
    /// An empty queue.
    pub(crate) fn new() -> Self {
        RadixQueue {
            last: 0,
            buckets: (0..=128).map(|_| Vec::new()).collect(),
            len: 0,
            min: None,
            spare: Vec::new(),
        }
    }

    /// Entries queued.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn bucket(&self, key: u128) -> usize {
        if key == self.last {
            0
        } else {
            128 - (key ^ self.last).leading_zeros() as usize
        }
    }

    /// Queues `value` at `key`, which must not be below the last popped key.
    pub(crate) fn push(&mut self, key: u128, value: T) {
        assert!(
            key >= self.last,
            "a radix queue's keys never go below the last popped one"
        );
        let b = self.bucket(key);
        self.buckets[b].push((key, value));
        self.len += 1;
        if let Some(min) = self.min {
            self.min = Some(min.min(key));
        } else if self.len == 1 {
            self.min = Some(key);
        }
    }

    /// The smallest key.
    pub(crate) fn peek_key(&mut self) -> Option<u128> {
        if self.len == 0 {
            return None;
        }
        if self.min.is_none() {
            let bucket = self.buckets.iter().find(|b| !b.is_empty())?;
            self.min = bucket.iter().map(|(k, _)| *k).min();
        }
        self.min
    }

    /// Takes the entry with the smallest key.
    pub(crate) fn pop(&mut self) -> Option<(u128, T)> {
        if self.len == 0 {
            return None;
        }
        if self.buckets[0].is_empty() {
            let i = self.buckets.iter().position(|b| !b.is_empty())?;
            // Swapped with a spare vector, so that no bucket loses its storage.
            let mut moved = std::mem::take(&mut self.spare);
            std::mem::swap(&mut moved, &mut self.buckets[i]);
            self.last = moved
                .iter()
                .map(|(k, _)| *k)
                .min()
                .expect("a non-empty bucket");
            for (key, value) in moved.drain(..) {
                let b = self.bucket(key);
                debug_assert!(b < i, "entries move to lower buckets");
                self.buckets[b].push((key, value));
            }
            self.spare = moved;
        }
        let entry = self.buckets[0]
            .pop()
            .expect("the smallest key is in bucket 0");
        debug_assert!(self.buckets[0].is_empty(), "keys are unique");
        self.len -= 1;
        self.min = None;
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pops_in_key_order_with_pushes_in_between() {
        let mut q = RadixQueue::new();
        q.push(5, "e");
        q.push(1, "a");
        q.push(3, "c");
        assert_eq!(q.peek_key(), Some(1));
        assert_eq!(q.pop(), Some((1, "a")));
        q.push(2, "b");
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop(), Some((2, "b")));
        assert_eq!(q.pop(), Some((3, "c")));
        assert_eq!(q.pop(), Some((5, "e")));
        assert_eq!(q.pop(), None);
        assert_eq!(q.peek_key(), None);
    }

    #[test]
    #[should_panic(expected = "never go below")]
    fn a_key_below_the_last_popped_is_refused() {
        let mut q = RadixQueue::new();
        q.push(10, ());
        q.pop();
        q.push(9, ());
    }

    proptest! {
        /// Against a sorted reference, under any interleaving of monotone pushes and pops.
        #[test]
        fn matches_a_sorted_reference(ops in proptest::collection::vec((any::<bool>(), 0u64..1000, 0u64..4), 1..400)) {
            let mut q = RadixQueue::new();
            let mut reference = std::collections::BTreeSet::new();
            let mut seq = 0u64;
            let mut floor = 0u64;
            for (push, dt, n) in ops {
                if push {
                    for _ in 0..=n {
                        seq += 1;
                        let key = (u128::from(floor + dt) << 64) | u128::from(seq);
                        q.push(key, seq);
                        reference.insert((key, seq));
                    }
                } else {
                    prop_assert_eq!(q.peek_key(), reference.first().map(|(k, _)| *k));
                    let got = q.pop();
                    prop_assert_eq!(got, reference.pop_first());
                    if let Some((key, _)) = got {
                        floor = (key >> 64) as u64;
                    }
                }
                prop_assert_eq!(q.len(), reference.len());
            }
        }
    }
}
