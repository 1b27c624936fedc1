//! The emulated nucleus's own state: components, their tokens, configuration and lifecycle.
//!
//! Owns: which SVCUID token belongs to which component, each component's configuration tree
//! (read through GetConfiguration, changed by the emulator's operator), who watches which
//! configuration key, and the state each component last reported with UpdateState.
//! Must not know: sockets or frames.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

/// Delivers a configuration change (component, changed key path); false once the receiver is gone.
pub type ConfigWatcher = Box<dyn Fn(&str, &[String]) -> bool + Send + Sync>;

struct Watch {
    id: u64,
    component: String,
    key_path: Vec<String>,
    deliver: ConfigWatcher,
}

#[derive(Default)]
struct State {
    /// Deny components without `accessControl` (the real nucleus does); off by default.
    strict_access_control: bool,
    /// The thing name when `interpolateComponentConfiguration` is on.
    interpolate_thing: Option<String>,
    tokens: HashMap<String, String>,
    configuration: HashMap<String, Value>,
    watches: Vec<Watch>,
    next_watch: u64,
}

/// Components known to the emulated nucleus.
pub struct Nucleus {
    state: Mutex<State>,
    /// Lifecycle state last reported by each component.
    lifecycle: watch::Sender<HashMap<String, String>>,
}

impl Default for Nucleus {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            lifecycle: watch::channel(HashMap::new()).0,
        }
    }
}

/// Why a configuration read failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    UnknownComponent(String),
    NoSuchKey(Vec<String>),
}

impl Nucleus {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `component` with its token and initial configuration (a JSON object).
    pub fn register(&self, component: &str, token: &str, configuration: Value) {
        let mut state = self.lock();
        state.tokens.insert(token.to_owned(), component.to_owned());
        state
            .configuration
            .insert(component.to_owned(), configuration);
    }

    /// Denies IPC operations to components that have no `accessControl`, as the nucleus does.
    pub fn set_strict_access_control(&self, strict: bool) {
        self.lock().strict_access_control = strict;
    }

    /// `interpolateComponentConfiguration`: `Some(thing)` replaces `{iot:thingName}` in
    /// `accessControl` resources; `None` (the nucleus's default) leaves it literal.
    pub fn set_interpolation(&self, thing_name: Option<&str>) {
        self.lock().interpolate_thing = thing_name.map(str::to_owned);
    }

    /// Whether `component` may perform `operation` on `resource` of `service`. Components whose
    /// configuration has no `accessControl` are allowed unless access control is strict.
    pub fn authorize(
        &self,
        component: &str,
        service: &str,
        operation: &str,
        resource: &str,
    ) -> bool {
        let state = self.lock();
        let acl = state
            .configuration
            .get(component)
            .and_then(|c| c.get("accessControl"));
        match acl {
            None => !state.strict_access_control,
            Some(acl) => {
                let interpolation = super::access_control::Interpolation {
                    thing_name: state.interpolate_thing.clone(),
                };
                super::access_control::authorized(acl, service, operation, resource, &interpolation)
            }
        }
    }

    /// The component a token authenticates, if any.
    pub fn authenticate(&self, token: &str) -> Option<String> {
        self.lock().tokens.get(token).cloned()
    }

    /// GetConfiguration semantics: an object node comes back as itself, a leaf as
    /// `{leafName: value}`, the empty path as the whole configuration.
    pub fn configuration(
        &self,
        component: &str,
        key_path: &[String],
    ) -> Result<Value, ConfigError> {
        let state = self.lock();
        let root = state
            .configuration
            .get(component)
            .ok_or_else(|| ConfigError::UnknownComponent(component.to_owned()))?;
        let mut node = root;
        for key in key_path {
            node = node
                .get(key)
                .ok_or_else(|| ConfigError::NoSuchKey(key_path.to_vec()))?;
        }
        Ok(match (node, key_path.last()) {
            (Value::Object(_), _) | (_, None) => node.clone(),
            (leaf, Some(name)) => {
                let mut map = Map::new();
                map.insert(name.clone(), leaf.clone());
                Value::Object(map)
            }
        })
    }

    /// Sets the value at `key_path` (creating objects on the way) and notifies watchers of
    /// that key, of its parents and of its children.
    pub fn update_configuration(&self, component: &str, key_path: &[String], value: Value) {
        let mut state = self.lock();
        let root = state
            .configuration
            .entry(component.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        set_path(root, key_path, value);
        state.watches.retain(|w| {
            let related = w.component == component
                && (w.key_path.starts_with(key_path) || key_path.starts_with(&w.key_path));
            !related || (w.deliver)(component, key_path)
        });
    }

    /// Watches configuration changes under `key_path`; returns an id for [`Self::unwatch`].
    pub fn watch_configuration(
        &self,
        component: &str,
        key_path: &[String],
        deliver: ConfigWatcher,
    ) -> u64 {
        let mut state = self.lock();
        state.next_watch += 1;
        let id = state.next_watch;
        state.watches.push(Watch {
            id,
            component: component.to_owned(),
            key_path: key_path.to_vec(),
            deliver,
        });
        id
    }

    pub fn unwatch(&self, id: u64) {
        self.lock().watches.retain(|w| w.id != id);
    }

    /// Records a component's UpdateState.
    pub fn report_state(&self, component: &str, state: &str) {
        self.lifecycle.send_modify(|states| {
            states.insert(component.to_owned(), state.to_owned());
        });
    }

    /// Forgets the state a component reported (as when it is restarted).
    pub fn forget_state(&self, component: &str) {
        self.lifecycle.send_modify(|states| {
            states.remove(component);
        });
    }

    pub fn component_state(&self, component: &str) -> Option<String> {
        self.lifecycle.borrow().get(component).cloned()
    }

    /// Waits until `component` reports `state`.
    pub async fn wait_for_state(&self, component: &str, state: &str) {
        let mut rx = self.lifecycle.subscribe();
        let _ = rx
            .wait_for(|states| states.get(component).map(String::as_str) == Some(state))
            .await;
    }
}

fn set_path(root: &mut Value, key_path: &[String], value: Value) {
    let Some((last, parents)) = key_path.split_last() else {
        *root = value;
        return;
    };
    let mut node = root;
    for key in parents {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else { return };
        node = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    if let Value::Object(map) = node {
        map.insert(last.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::{Arc, Mutex as StdMutex};

    fn path(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn configuration_reads_like_the_nucleus() {
        let n = Nucleus::default();
        n.register("C", "tok", json!({"a": {"b": 1}, "c": "x"}));
        assert_eq!(n.authenticate("tok").as_deref(), Some("C"));
        assert_eq!(n.authenticate("nope"), None);
        assert_eq!(
            n.configuration("C", &[]).unwrap(),
            json!({"a": {"b": 1}, "c": "x"})
        );
        assert_eq!(
            n.configuration("C", &path(&["a"])).unwrap(),
            json!({"b": 1})
        );
        assert_eq!(
            n.configuration("C", &path(&["a", "b"])).unwrap(),
            json!({"b": 1})
        );
        assert_eq!(
            n.configuration("C", &path(&["c"])).unwrap(),
            json!({"c": "x"})
        );
        assert_eq!(
            n.configuration("C", &path(&["z"])),
            Err(ConfigError::NoSuchKey(path(&["z"])))
        );
        assert!(matches!(
            n.configuration("D", &[]),
            Err(ConfigError::UnknownComponent(_))
        ));
    }

    #[test]
    fn updates_notify_related_watchers_only() {
        let n = Nucleus::default();
        n.register("C", "tok", json!({}));
        let seen = Arc::new(StdMutex::new(Vec::new()));
        for (i, p) in [path(&["a"]), path(&["a", "b", "c"]), path(&["x"])]
            .into_iter()
            .enumerate()
        {
            let seen = Arc::clone(&seen);
            n.watch_configuration(
                "C",
                &p,
                Box::new(move |_, k| {
                    seen.lock().unwrap().push((i, k.to_vec()));
                    true
                }),
            );
        }
        n.update_configuration("C", &path(&["a", "b"]), json!(5));
        assert_eq!(
            n.configuration("C", &path(&["a"])).unwrap(),
            json!({"b": 5})
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen, vec![(0, path(&["a", "b"])), (1, path(&["a", "b"]))]);
    }
}
