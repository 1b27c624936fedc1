//! The emulated nucleus's MQTT client: what a Greengrass core sends IoT Core on behalf of its
//! components, as a state machine.
//!
//! Owns: the filters components subscribed through SubscribeToIoTCore (counted, so a filter is
//! unsubscribed when no component holds it any more, and not sent at all when an existing
//! subscription covers it); spreading them over connections `<thing>`, `<thing>#2`, … at 50
//! each; the first connect of a process (clean, then persistent) and persistent reconnects
//! after it; one SUBSCRIBE per topic when a connection comes back without its session; the
//! spooler for QoS 1 publishes made while offline (QoS 0 is dropped, as `keepQos0WhenOffline`
//! defaults to false); the nucleus's own deployment-jobs traffic (its namespaced
//! subscriptions, and a `$next` describe on every connect and resume); and whether the core is
//! connected, for SubscribeToIoTCoreConnectionStatus.
//! Must not know: the broker's insides, IPC, sockets or time.
//!
//! Call contract: [`NucleusMqtt::start`] once; after each [`MqttCommand::Connect`] the caller
//! runs against the broker, it calls [`NucleusMqtt::on_connack`] with the broker's
//! `sessionPresent`; [`NucleusMqtt::on_connection_lost`] when the network drops every
//! connection; [`NucleusMqtt::reconnect`] when it is back. Commands are executed in order.

use crate::emulator::cloud::iot_core::{Publication, MAX_SUBSCRIPTIONS};
use crate::topic;
use std::collections::VecDeque;

/// The nucleus's spooler size (`mqtt.spooler.maxSizeInBytes` default).
pub const SPOOL_MAX_BYTES: usize = 2_621_440;

/// Namespace of Greengrass deployment jobs.
pub const DEPLOYMENT_NAMESPACE: &str = "aws-gg-deployment";

/// What the nucleus's MQTT client sends; `connection` 0 is client id `<thing>`, n is
/// `<thing>#<n+1>`.
#[derive(Debug, Clone, PartialEq)]
pub enum MqttCommand {
    Connect {
        connection: usize,
        clean: bool,
    },
    /// A client-initiated DISCONNECT.
    Disconnect {
        connection: usize,
    },
    Subscribe {
        connection: usize,
        filter: String,
        qos: u8,
    },
    Unsubscribe {
        connection: usize,
        filter: String,
    },
    Publish {
        connection: usize,
        publication: Publication,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterState {
    /// Another filter of ours covers it; never sent.
    Covered,
    /// To be sent when its connection is up.
    Pending,
    /// Acknowledged by the broker in the connection's session.
    Subscribed,
}

#[derive(Debug, Clone)]
struct Filter {
    filter: String,
    qos: u8,
    connection: usize,
    /// Holders: components' subscriptions and the nucleus itself.
    holders: u32,
    state: FilterState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before `start`.
    Idle,
    /// The first, clean connect of the process is in flight.
    FirstClean,
    Online,
    Offline,
}

/// One core's MQTT client. See the module doc for the call contract.
#[derive(Debug)]
pub struct NucleusMqtt {
    thing: String,
    filters: Vec<Filter>,
    /// Filters unsubscribed while offline, still in the broker's stored session.
    unsubscribe_later: Vec<(usize, String)>,
    spool: VecDeque<Publication>,
    spool_bytes: usize,
    connections: usize,
    phase: Phase,
    own_jobs: bool,
    requests: u64,
}

impl NucleusMqtt {
    /// A core's client; `own_jobs` adds the nucleus's deployment-jobs subscriptions and
    /// queries, as the Java nucleus makes them.
    pub fn new(thing: &str, own_jobs: bool) -> Self {
        let mut mqtt = Self {
            thing: thing.to_owned(),
            filters: Vec::new(),
            unsubscribe_later: Vec::new(),
            spool: VecDeque::new(),
            spool_bytes: 0,
            connections: 1,
            phase: Phase::Idle,
            own_jobs,
            requests: 0,
        };
        if own_jobs {
            let jobs = format!("$aws/things/{thing}/jobs");
            for filter in [
                format!("{jobs}/notify-namespace-{DEPLOYMENT_NAMESPACE}"),
                format!("{jobs}/$next/namespace-{DEPLOYMENT_NAMESPACE}/get/accepted"),
                format!("{jobs}/$next/namespace-{DEPLOYMENT_NAMESPACE}/get/rejected"),
            ] {
                mqtt.subscribe(&filter, 1);
            }
        }
        mqtt
    }

    pub fn thing(&self) -> &str {
        &self.thing
    }

    /// Client id of connection `index`.
    pub fn client_id(&self, index: usize) -> String {
        if index == 0 {
            self.thing.clone()
        } else {
            format!("{}#{}", self.thing, index + 1)
        }
    }

    /// How many connections the nucleus has opened.
    pub fn connection_count(&self) -> usize {
        self.connections
    }

    /// Whether the core's IoT Core connection is up (what ConnectionStatus reports).
    pub fn is_online(&self) -> bool {
        self.phase == Phase::Online
    }

    /// Filters the nucleus holds on connection `index` (sent or to be sent), in order.
    pub fn filters_on(&self, index: usize) -> Vec<String> {
        self.filters
            .iter()
            .filter(|f| f.connection == index && f.state != FilterState::Covered)
            .map(|f| f.filter.clone())
            .collect()
    }

    /// Whether the filter is held by the nucleus (for anyone).
    pub fn holds(&self, filter: &str) -> bool {
        self.filters.iter().any(|f| f.filter == filter)
    }

    /// The process starts: the first connect is clean.
    pub fn start(&mut self) -> Vec<MqttCommand> {
        if self.phase != Phase::Idle {
            return Vec::new();
        }
        self.phase = Phase::FirstClean;
        vec![MqttCommand::Connect {
            connection: 0,
            clean: true,
        }]
    }

    /// The broker answered a CONNECT on `connection`.
    pub fn on_connack(&mut self, connection: usize, session_present: bool) -> Vec<MqttCommand> {
        let mut out = Vec::new();
        if connection == 0 && self.phase == Phase::FirstClean {
            // The first connect of each process wipes the old session, then the nucleus
            // reconnects with a persistent session and keeps it from then on.
            self.phase = Phase::Offline;
            out.push(MqttCommand::Disconnect { connection: 0 });
            out.push(MqttCommand::Connect {
                connection: 0,
                clean: false,
            });
            return out;
        }
        if connection == 0 {
            self.phase = Phase::Online;
        }
        if session_present {
            let later = std::mem::take(&mut self.unsubscribe_later);
            for (c, filter) in later {
                if c == connection {
                    out.push(MqttCommand::Unsubscribe { connection, filter });
                } else {
                    self.unsubscribe_later.push((c, filter));
                }
            }
        } else {
            // The session is gone: its filters (and any unsubscribe still owed) with it.
            self.unsubscribe_later.retain(|(c, _)| *c != connection);
        }
        for f in &mut self.filters {
            let resend = f.connection == connection
                && (f.state == FilterState::Pending
                    || (f.state == FilterState::Subscribed && !session_present));
            if resend {
                f.state = FilterState::Subscribed;
                // One SUBSCRIBE per topic, as the nucleus resubscribes.
                out.push(MqttCommand::Subscribe {
                    connection,
                    filter: f.filter.clone(),
                    qos: f.qos,
                });
            }
        }
        if connection == 0 {
            if self.own_jobs {
                out.push(self.deployment_query());
            }
            while let Some(publication) = self.spool.pop_front() {
                self.spool_bytes -= publication.payload.len();
                out.push(MqttCommand::Publish {
                    connection: 0,
                    publication,
                });
            }
        }
        out
    }

    /// The network dropped every connection.
    pub fn on_connection_lost(&mut self) {
        if matches!(self.phase, Phase::Online | Phase::FirstClean) {
            self.phase = Phase::Offline;
        }
    }

    /// The network is back: every connection reconnects with its persistent session.
    pub fn reconnect(&mut self) -> Vec<MqttCommand> {
        match self.phase {
            Phase::Offline => {
                let needed = self
                    .filters
                    .iter()
                    .map(|f| f.connection + 1)
                    .max()
                    .unwrap_or(1);
                self.connections = self.connections.max(needed);
                (0..self.connections)
                    .map(|connection| MqttCommand::Connect {
                        connection,
                        clean: false,
                    })
                    .collect()
            }
            Phase::Idle => self.start(),
            Phase::FirstClean | Phase::Online => Vec::new(),
        }
    }

    /// A component (or the nucleus) subscribes to `filter`.
    pub fn subscribe(&mut self, filter: &str, qos: u8) -> Vec<MqttCommand> {
        let qos = qos.min(1);
        if let Some(f) = self.filters.iter_mut().find(|f| f.filter == filter) {
            f.holders += 1;
            if qos > f.qos && f.state != FilterState::Covered {
                f.qos = qos;
                if self.phase == Phase::Online {
                    return vec![MqttCommand::Subscribe {
                        connection: f.connection,
                        filter: filter.to_owned(),
                        qos,
                    }];
                }
                f.state = FilterState::Pending;
            }
            return Vec::new();
        }
        // A fleet holds a million of these lists: grow them a slot at a time.
        self.filters.reserve_exact(1);
        self.filters.push(Filter {
            filter: filter.to_owned(),
            qos,
            connection: 0,
            holders: 1,
            state: FilterState::Pending,
        });
        let index = self.filters.len() - 1;
        self.place(index)
    }

    /// A holder of `filter` lets it go; the last one unsubscribes it on IoT Core, and filters
    /// it covered are subscribed on their own.
    pub fn unsubscribe(&mut self, filter: &str) -> Vec<MqttCommand> {
        let Some(index) = self.filters.iter().position(|f| f.filter == filter) else {
            return Vec::new();
        };
        self.filters[index].holders -= 1;
        if self.filters[index].holders > 0 {
            return Vec::new();
        }
        let gone = self.filters.remove(index);
        let mut out = Vec::new();
        if gone.state == FilterState::Subscribed {
            if self.phase == Phase::Online {
                out.push(MqttCommand::Unsubscribe {
                    connection: gone.connection,
                    filter: gone.filter.clone(),
                });
            } else {
                self.unsubscribe_later.push((gone.connection, gone.filter));
            }
        }
        for i in 0..self.filters.len() {
            if self.filters[i].state == FilterState::Covered && self.covering(i).is_none() {
                self.filters[i].state = FilterState::Pending;
                out.extend(self.place(i));
            }
        }
        out
    }

    /// A component's PublishToIoTCore.
    pub fn publish(&mut self, publication: Publication) -> Vec<MqttCommand> {
        if self.phase == Phase::Online {
            return vec![MqttCommand::Publish {
                connection: 0,
                publication,
            }];
        }
        if publication.qos == 0 {
            tracing::debug!(topic = %publication.topic, "nucleus offline: QoS 0 publish dropped");
        } else if self.spool_bytes + publication.payload.len() > SPOOL_MAX_BYTES {
            tracing::warn!(topic = %publication.topic, "nucleus spooler full: publish dropped");
        } else {
            tracing::debug!(topic = %publication.topic, "nucleus offline: publish spooled");
            self.spool_bytes += publication.payload.len();
            self.spool.push_back(publication);
        }
        Vec::new()
    }

    /// Index of a subscribed-or-pending filter (other than `index`) that covers filter `index`.
    fn covering(&self, index: usize) -> Option<usize> {
        let f = &self.filters[index];
        self.filters.iter().enumerate().position(|(i, other)| {
            i != index
                && other.state != FilterState::Covered
                && other.qos >= f.qos
                && (other.filter == f.filter
                    || (!f.filter.contains(['+', '#']) && topic::matches(&other.filter, &f.filter)))
        })
    }

    /// Puts filter `index` (Pending) on a connection, or marks it covered.
    fn place(&mut self, index: usize) -> Vec<MqttCommand> {
        if self.covering(index).is_some() {
            self.filters[index].state = FilterState::Covered;
            return Vec::new();
        }
        let mut connection = 0;
        while self
            .filters
            .iter()
            .enumerate()
            .filter(|(i, f)| {
                *i != index && f.connection == connection && f.state != FilterState::Covered
            })
            .count()
            >= MAX_SUBSCRIPTIONS
        {
            connection += 1;
        }
        self.filters[index].connection = connection;
        if self.phase != Phase::Online {
            return Vec::new();
        }
        if connection >= self.connections {
            self.connections = connection + 1;
            tracing::info!(client_id = %self.client_id(connection), "nucleus opens another MQTT connection (50 subscriptions each)");
            // Its subscriptions follow its CONNACK.
            return vec![MqttCommand::Connect {
                connection,
                clean: false,
            }];
        }
        let f = &mut self.filters[index];
        f.state = FilterState::Subscribed;
        vec![MqttCommand::Subscribe {
            connection,
            filter: f.filter.clone(),
            qos: f.qos,
        }]
    }

    fn deployment_query(&mut self) -> MqttCommand {
        self.requests += 1;
        MqttCommand::Publish {
            connection: 0,
            publication: Publication {
                topic: format!(
                    "$aws/things/{}/jobs/$next/namespace-{DEPLOYMENT_NAMESPACE}/get",
                    self.thing
                ),
                payload: format!(
                    "{{\"clientToken\":\"nucleus-{}\",\"includeJobDocument\":true}}",
                    self.requests
                )
                .into_bytes(),
                qos: 1,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn online(thing: &str) -> NucleusMqtt {
        let mut m = NucleusMqtt::new(thing, false);
        assert_eq!(
            m.start(),
            vec![MqttCommand::Connect {
                connection: 0,
                clean: true
            }]
        );
        let again = m.on_connack(0, false);
        assert_eq!(
            again,
            vec![
                MqttCommand::Disconnect { connection: 0 },
                MqttCommand::Connect {
                    connection: 0,
                    clean: false
                }
            ],
            "the first clean connect is followed by a persistent one"
        );
        assert!(m.on_connack(0, false).is_empty());
        assert!(m.is_online());
        m
    }

    fn subscribes(cmds: &[MqttCommand]) -> Vec<(usize, &str)> {
        cmds.iter()
            .filter_map(|c| match c {
                MqttCommand::Subscribe {
                    connection, filter, ..
                } => Some((*connection, filter.as_str())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_filter_is_unsubscribed_when_its_last_holder_goes() {
        let mut m = online("core");
        assert_eq!(subscribes(&m.subscribe("a/b", 1)), vec![(0, "a/b")]);
        assert!(
            m.subscribe("a/b", 1).is_empty(),
            "a second holder sends nothing"
        );
        assert!(m.unsubscribe("a/b").is_empty());
        assert_eq!(
            m.unsubscribe("a/b"),
            vec![MqttCommand::Unsubscribe {
                connection: 0,
                filter: "a/b".into()
            }]
        );
        assert!(!m.holds("a/b"));
    }

    #[test]
    fn covered_filters_are_not_sent_until_the_cover_goes() {
        let mut m = online("core");
        m.subscribe("a/#", 1);
        assert!(m.subscribe("a/b", 1).is_empty());
        let cmds = m.unsubscribe("a/#");
        assert_eq!(subscribes(&cmds), vec![(0, "a/b")]);
    }

    #[test]
    fn fifty_per_connection_and_no_leak_over_a_long_life() {
        let mut m = online("core");
        // A component that subscribes and lets go of a new filter many times never
        // pushes later filters onto a second connection.
        for i in 0..500 {
            let f = format!("t/{i}");
            m.subscribe(&f, 1);
            m.unsubscribe(&f);
        }
        assert_eq!(
            subscribes(&m.subscribe("reconnect/core", 1)),
            vec![(0, "reconnect/core")]
        );
        for i in 0..49 {
            m.subscribe(&format!("u/{i}"), 1);
        }
        let cmds = m.subscribe("over", 1);
        assert_eq!(
            cmds,
            vec![MqttCommand::Connect {
                connection: 1,
                clean: false
            }]
        );
        assert_eq!(subscribes(&m.on_connack(1, false)), vec![(1, "over")]);
        assert_eq!(m.client_id(1), "core#2");
    }

    #[test]
    fn resubscribes_one_topic_at_a_time_only_without_a_session() {
        let mut m = online("core");
        m.subscribe("a", 1);
        m.subscribe("b", 1);
        m.on_connection_lost();
        assert!(!m.is_online());
        m.subscribe("c", 1);
        assert_eq!(m.reconnect().len(), 1);
        assert_eq!(
            subscribes(&m.on_connack(0, true)),
            vec![(0, "c")],
            "only the new one"
        );
        m.on_connection_lost();
        m.reconnect();
        assert_eq!(
            subscribes(&m.on_connack(0, false)),
            vec![(0, "a"), (0, "b"), (0, "c")]
        );
    }

    #[test]
    fn spools_qos1_while_offline_and_drops_qos0() {
        let mut m = online("core");
        m.on_connection_lost();
        let p = |qos| Publication {
            topic: "x".into(),
            payload: b"p".to_vec(),
            qos,
        };
        assert!(m.publish(p(1)).is_empty());
        assert!(m.publish(p(0)).is_empty());
        m.reconnect();
        let cmds = m.on_connack(0, true);
        assert_eq!(cmds.len(), 1);
        assert!(
            matches!(&cmds[0], MqttCommand::Publish { publication, .. } if publication.qos == 1)
        );
    }

    #[test]
    fn the_nucleus_queries_its_deployments_on_every_connect() {
        let mut m = NucleusMqtt::new("core", true);
        m.start();
        m.on_connack(0, false);
        let cmds = m.on_connack(0, false);
        assert_eq!(subscribes(&cmds).len(), 3);
        let queries = |cmds: &[MqttCommand]| {
            cmds.iter()
                .filter(|c| matches!(c, MqttCommand::Publish { publication, .. } if publication.topic == "$aws/things/core/jobs/$next/namespace-aws-gg-deployment/get"))
                .count()
        };
        assert_eq!(queries(&cmds), 1);
        m.on_connection_lost();
        m.reconnect();
        assert_eq!(queries(&m.on_connack(0, true)), 1, "on a resume too");
    }
}
