//! An in-memory publish/subscribe bus with MQTT topic filters.
//!
//! Owns: the subscription table and fan-out of one published message to every matching
//! subscriber. Must not know: IPC frames or sessions; a subscriber is a delivery callback.
//! Used for Greengrass local pub/sub and for IoT Core topics in the emulator.

use crate::topic;
use std::sync::{Arc, Mutex};

/// Delivers one message published on a topic; returns false once the receiver is gone.
pub type Deliver<T> = Box<dyn Fn(&str, &T) -> bool + Send + Sync>;

struct Entry<T> {
    id: u64,
    filter: String,
    /// Who subscribed (a connection id), for "do not receive my own messages".
    owner: u64,
    skip_own: bool,
    deliver: Deliver<T>,
}

struct Table<T> {
    next_id: u64,
    entries: Vec<Entry<T>>,
}

/// A topic bus carrying messages of type `T`.
pub struct TopicBus<T> {
    table: Mutex<Table<T>>,
    /// The number of subscriptions, for observers that wait for a change.
    count: tokio::sync::watch::Sender<usize>,
}

impl<T> Default for TopicBus<T> {
    fn default() -> Self {
        Self {
            table: Mutex::new(Table {
                next_id: 1,
                entries: Vec::new(),
            }),
            count: tokio::sync::watch::channel(0).0,
        }
    }
}

impl<T> TopicBus<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table<T>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a subscription; it lasts until the returned guard is dropped.
    pub fn subscribe(
        self: &Arc<Self>,
        filter: &str,
        owner: u64,
        skip_own: bool,
        deliver: Deliver<T>,
    ) -> BusSubscription<T>
    where
        T: Send + 'static,
    {
        let mut table = self.lock();
        let id = table.next_id;
        table.next_id += 1;
        table.entries.push(Entry {
            id,
            filter: filter.to_owned(),
            owner,
            skip_own,
            deliver,
        });
        self.count.send_replace(table.entries.len());
        BusSubscription {
            bus: Arc::clone(self),
            id,
        }
    }

    /// Follows the number of subscriptions.
    pub fn watch_subscription_count(&self) -> tokio::sync::watch::Receiver<usize> {
        self.count.subscribe()
    }

    /// Delivers `message` to every subscription whose filter matches `topic`; returns how many.
    pub fn publish(&self, topic: &str, publisher: u64, message: &T) -> usize {
        let mut table = self.lock();
        let before = table.entries.len();
        let mut delivered = 0;
        table.entries.retain(|entry| {
            if !topic::matches(&entry.filter, topic) || (entry.skip_own && entry.owner == publisher)
            {
                return true;
            }
            let alive = (entry.deliver)(topic, message);
            delivered += usize::from(alive);
            alive
        });
        if table.entries.len() != before {
            self.count.send_replace(table.entries.len());
        }
        delivered
    }

    /// Ends every subscription without telling its subscribers (their guards stay, inert);
    /// returns the filters they held, in the order they were made.
    pub fn clear(&self) -> Vec<String> {
        let mut table = self.lock();
        let filters = table.entries.drain(..).map(|e| e.filter).collect();
        self.count.send_replace(0);
        filters
    }

    pub fn subscription_count(&self) -> usize {
        self.lock().entries.len()
    }

    fn unsubscribe(&self, id: u64) {
        let mut table = self.lock();
        table.entries.retain(|e| e.id != id);
        self.count.send_replace(table.entries.len());
    }
}

/// Keeps a subscription alive; dropping it unsubscribes.
pub struct BusSubscription<T> {
    bus: Arc<TopicBus<T>>,
    id: u64,
}

impl<T> Drop for BusSubscription<T> {
    fn drop(&mut self) {
        self.bus.unsubscribe(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn fans_out_by_filter_and_unsubscribes_on_drop() {
        let bus: Arc<TopicBus<u32>> = Arc::default();
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        let a = bus.subscribe(
            "a/+",
            1,
            false,
            Box::new(move |t, m| tx.send((t.to_owned(), *m)).is_ok()),
        );
        let b = bus.subscribe(
            "a/#",
            2,
            true,
            Box::new(move |t, m| tx2.send((t.to_owned(), *m + 100)).is_ok()),
        );
        assert_eq!(
            bus.publish("a/x", 2, &1),
            1,
            "own message skipped for owner 2"
        );
        assert_eq!(bus.publish("a/x", 3, &2), 2);
        assert_eq!(bus.publish("b", 3, &3), 0);
        drop(a);
        assert_eq!(bus.publish("a/x/y", 3, &4), 1);
        drop(b);
        assert_eq!(bus.subscription_count(), 0);
        let c = bus.subscribe("c/#", 1, false, Box::new(|_, _| true));
        let d = bus.subscribe("a/+", 1, false, Box::new(|_, _| true));
        assert_eq!(bus.clear(), vec!["c/#".to_owned(), "a/+".to_owned()]);
        assert_eq!(
            bus.publish("a/x", 3, &5),
            0,
            "nothing is delivered after clear"
        );
        drop((c, d));
        assert_eq!(bus.subscription_count(), 0);
        let got: Vec<_> = rx.try_iter().collect();
        assert_eq!(
            got,
            vec![
                ("a/x".into(), 1),
                ("a/x".into(), 2),
                ("a/x".into(), 102),
                ("a/x/y".into(), 104)
            ]
        );
    }
}
