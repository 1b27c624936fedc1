//! How the component learns that there is work: the strategies the fleet report compares.
//!
//! Owns: the list of strategies, their names, and what each sets in the simulation
//! ([`SimConfig`]: the reconnect rule, the ConnectionStatus stream) and in every device's
//! engine ([`EngineConfig`]: the safety poll, the query jitter).
//! Must not know: scenarios, metrics or how the report is written.

use crate::jobs::engine::EngineConfig;
use crate::sim::SimConfig;
use std::time::Duration;

/// One way of configuring the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strategy {
    /// `notify-next` only: no reconnect rule, the connection status ignored, no poll. The flaw
    /// the project started from: a notification lost with a session is never made up for.
    NotifyNextOnly,
    /// `notify-next` plus a query every this many minutes (the engine's safety poll), no rule.
    Poll { minutes: u32 },
    /// The reconnect rule: a `subscribed` event republished to `reconnect/<thing>` makes the
    /// component query, after a random jitter.
    Rule,
    /// The reconnect rule and the nucleus's ConnectionStatus stream (CONNECTED queries too).
    RuleAndConnectionStatus,
}

impl Strategy {
    /// Every strategy of the report, in the order of its tables.
    pub const ALL: [Strategy; 6] = [
        Self::NotifyNextOnly,
        Self::Poll { minutes: 5 },
        Self::Poll { minutes: 15 },
        Self::Poll { minutes: 60 },
        Self::Rule,
        Self::RuleAndConnectionStatus,
    ];

    /// A short name (table rows, plot legends).
    pub fn name(self) -> String {
        match self {
            Self::NotifyNextOnly => "notify-next only".to_owned(),
            Self::Poll { minutes } => format!("poll every {minutes} min"),
            Self::Rule => "reconnect rule + jitter".to_owned(),
            Self::RuleAndConnectionStatus => "rule + ConnectionStatus".to_owned(),
        }
    }

    /// A name without spaces (`GGJH_REPORT_STRATEGIES` of the report's bench).
    pub fn slug(self) -> String {
        match self {
            Self::NotifyNextOnly => "notify-next".to_owned(),
            Self::Poll { minutes } => format!("poll-{minutes}"),
            Self::Rule => "rule".to_owned(),
            Self::RuleAndConnectionStatus => "rule-status".to_owned(),
        }
    }

    /// What the strategy sets in the simulation.
    pub fn apply_to_sim(self, config: &mut SimConfig) {
        let (rule, status) = match self {
            Self::NotifyNextOnly | Self::Poll { .. } => (false, false),
            Self::Rule => (true, false),
            Self::RuleAndConnectionStatus => (true, true),
        };
        config.reconnect_rule = rule;
        config.connection_status = status;
    }

    /// What the strategy sets in one device's engine; `jitter` is the query jitter of the
    /// strategies driven by reconnect signals (the others keep the engine's default).
    pub fn apply_to_engine(self, config: &mut EngineConfig, jitter: Duration) {
        match self {
            Self::NotifyNextOnly => config.safety_poll = None,
            Self::Poll { minutes } => {
                config.safety_poll = Some(Duration::from_secs(u64::from(minutes) * 60));
            }
            Self::Rule | Self::RuleAndConnectionStatus => {
                config.safety_poll = None;
                config.max_jitter = jitter;
            }
        }
    }

    /// Whether the strategy relies on the reconnect rule.
    pub fn uses_rule(self) -> bool {
        matches!(self, Self::Rule | Self::RuleAndConnectionStatus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_strategy_listens_to_the_connection_status() {
        for s in Strategy::ALL {
            let mut sim = SimConfig::default();
            s.apply_to_sim(&mut sim);
            assert_eq!(
                sim.connection_status,
                s == Strategy::RuleAndConnectionStatus
            );
            assert_eq!(sim.reconnect_rule, s.uses_rule());
        }
    }

    #[test]
    fn polling_strategies_set_the_safety_poll() {
        let mut c = EngineConfig::new("t");
        Strategy::Poll { minutes: 15 }.apply_to_engine(&mut c, Duration::from_secs(9));
        assert_eq!(c.safety_poll, Some(Duration::from_secs(900)));
        assert_eq!(c.max_jitter, EngineConfig::new("t").max_jitter);
        let mut c = EngineConfig::new("t");
        Strategy::Rule.apply_to_engine(&mut c, Duration::from_secs(9));
        assert_eq!(
            (c.safety_poll, c.max_jitter),
            (None, Duration::from_secs(9))
        );
    }
}
