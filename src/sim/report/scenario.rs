//! The fleet report's scenarios: a job for the whole fleet, its rollout rate, and what happens
//! to the fleet's connections meanwhile, all on the world's virtual clock.
//!
//! Owns: the list of scenarios, each one's `jobExecutionsRolloutConfig`, the rollout's ideal
//! duration (the fleet over the rate, the exponential rate's steps included), and the fleet
//! events of its timeline ([`FleetEvent`], times from the job's creation).
//! Must not know: strategies, devices' engines or how metrics are gathered.

use crate::emulator::cloud::jobs_service::{ExponentialRate, RateIncreaseCriteria, RolloutConfig};
use crate::emulator::world::Millis;

const MINUTE_MS: Millis = 60_000;

/// One scenario of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// (a) A rollout at `maximumPerMinute`.
    Rollout,
    /// (b) An exponential rollout: `baseRatePerMinute` a twentieth of the maximum,
    /// `incrementFactor` 2, the rate going up each time another hundredth of the fleet was
    /// notified (`numberOfNotifiedThings`), up to `maximumPerMinute`.
    Exponential,
    /// (c) The (a) rollout; at 30 % of its ideal duration every core's connection drops, and
    /// after the outage the fleet reconnects to a broker that lost every session: the
    /// notify-next messages stored meanwhile are gone.
    CleanReconnect,
    /// (d) The (a) rollout; 1 % of the cores (every hundredth, spread over the rollout's name
    /// order) are offline from the job's creation for the offline period (an hour by default,
    /// the broker's persistent-session expiry), then come back with a persistent reconnect
    /// that finds its session expired.
    OfflineHour,
}

/// Something done to the fleet's connections at a time of the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetEvent {
    /// Every core in the selection loses its connection.
    Disconnect(Selection),
    /// Every core in the selection reconnects; with `sessions_lost` the broker has discarded
    /// their sessions (otherwise the broker's own expiry decides).
    Reconnect {
        selection: Selection,
        sessions_lost: bool,
    },
}

/// Which cores an event acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    All,
    /// Devices whose index is a multiple of this.
    EveryNth(usize),
}

impl Selection {
    /// Whether device `index` is selected.
    pub fn contains(self, index: usize) -> bool {
        match self {
            Self::All => true,
            Self::EveryNth(n) => n > 0 && index % n == 0,
        }
    }
}

/// The parameters a scenario is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScenarioParams {
    pub devices: usize,
    /// `maximumPerMinute` (and the exponential rate's ceiling).
    pub rate_per_minute: u32,
    /// How long the fleet is cut off in (c).
    pub outage_ms: Millis,
    /// How long 1 % of the fleet is offline in (d).
    pub offline_ms: Millis,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [
        Self::Rollout,
        Self::Exponential,
        Self::CleanReconnect,
        Self::OfflineHour,
    ];

    /// A short name (file names, headings).
    pub fn slug(self) -> &'static str {
        match self {
            Self::Rollout => "rollout",
            Self::Exponential => "exponential",
            Self::CleanReconnect => "clean-reconnect",
            Self::OfflineHour => "offline-hour",
        }
    }

    /// A heading for the report.
    pub fn title(self, p: &ScenarioParams) -> String {
        match self {
            Self::Rollout => format!("(a) rollout at maximumPerMinute {}", p.rate_per_minute),
            Self::Exponential => {
                let e = exponential(p);
                format!(
                    "(b) exponential rollout: baseRatePerMinute {}, incrementFactor {}, +1 step per {} notified things, up to {}/min",
                    e.base_rate_per_minute,
                    e.increment_factor,
                    criteria_count(p),
                    p.rate_per_minute
                )
            }
            Self::CleanReconnect => format!(
                "(c) fleet-wide clean-session reconnect mid-rollout: every core offline at {:.1} min for {:.0} min, then back to a broker that lost every session",
                self.drop_at(p) as f64 / MINUTE_MS as f64,
                p.outage_ms as f64 / MINUTE_MS as f64
            ),
            Self::OfflineHour => format!(
                "(d) 1 % of the cores offline for {:.0} min from the job's creation (the session expires after 60 min)",
                p.offline_ms as f64 / MINUTE_MS as f64
            ),
        }
    }

    /// The job's `jobExecutionsRolloutConfig`.
    pub fn rollout(self, p: &ScenarioParams) -> RolloutConfig {
        RolloutConfig {
            maximum_per_minute: Some(p.rate_per_minute),
            exponential: (self == Self::Exponential).then(|| exponential(p)),
        }
    }

    /// The time the rollout needs to notify every thing at its rate: N / rate for a fixed
    /// rate; for the exponential rate, the sum of each step's things over that step's rate.
    pub fn ideal_ms(self, p: &ScenarioParams) -> Millis {
        let minutes = match self.rollout(p).exponential {
            None => p.devices as f64 / f64::from(p.rate_per_minute),
            Some(e) => {
                let step = criteria_count(p) as f64;
                let ceiling = f64::from(p.rate_per_minute);
                let mut rate = f64::from(e.base_rate_per_minute).min(ceiling);
                let mut left = p.devices as f64;
                let mut minutes = 0.0;
                while left > 0.0 {
                    let n = left.min(step);
                    minutes += n / rate;
                    left -= n;
                    rate = (rate * e.increment_factor).min(ceiling);
                }
                minutes
            }
        };
        (minutes * MINUTE_MS as f64).round() as Millis
    }

    /// When (c) cuts the fleet off, after the job's creation.
    fn drop_at(self, p: &ScenarioParams) -> Millis {
        Scenario::Rollout.ideal_ms(p) * 3 / 10
    }

    /// The fleet events, by time after the job's creation (in time order).
    pub fn events(self, p: &ScenarioParams) -> Vec<(Millis, FleetEvent)> {
        match self {
            Self::Rollout | Self::Exponential => Vec::new(),
            Self::CleanReconnect => {
                let at = self.drop_at(p);
                vec![
                    (at, FleetEvent::Disconnect(Selection::All)),
                    (
                        at + p.outage_ms,
                        FleetEvent::Reconnect {
                            selection: Selection::All,
                            sessions_lost: true,
                        },
                    ),
                ]
            }
            Self::OfflineHour => vec![
                (0, FleetEvent::Disconnect(Selection::EveryNth(100))),
                (
                    p.offline_ms,
                    FleetEvent::Reconnect {
                        selection: Selection::EveryNth(100),
                        sessions_lost: false,
                    },
                ),
            ],
        }
    }

    /// The last fleet event's time (0 without events).
    pub fn last_event_ms(self, p: &ScenarioParams) -> Millis {
        self.events(p).last().map_or(0, |(at, _)| *at)
    }
}

/// Things notified per step of the exponential rate: a hundredth of the fleet (at least 1).
fn criteria_count(p: &ScenarioParams) -> u32 {
    u32::try_from((p.devices / 100).max(1)).unwrap_or(u32::MAX)
}

fn exponential(p: &ScenarioParams) -> ExponentialRate {
    ExponentialRate {
        base_rate_per_minute: (p.rate_per_minute / 20).max(1),
        increment_factor: 2.0,
        criteria: RateIncreaseCriteria::NotifiedThings(criteria_count(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(devices: usize) -> ScenarioParams {
        ScenarioParams {
            devices,
            rate_per_minute: 1000,
            outage_ms: 10 * MINUTE_MS,
            offline_ms: 60 * MINUTE_MS,
        }
    }

    #[test]
    fn the_ideal_of_a_fixed_rate_is_the_fleet_over_the_rate() {
        assert_eq!(
            Scenario::Rollout.ideal_ms(&params(100_000)),
            100 * MINUTE_MS
        );
        assert_eq!(
            Scenario::OfflineHour.ideal_ms(&params(2_000)),
            2 * MINUTE_MS
        );
    }

    #[test]
    fn the_exponential_ideal_adds_the_slow_first_steps() {
        // 1,000 things a step: 50, 100, 200, 400, 800, then 1,000/min for the other 95 steps.
        let ideal = Scenario::Exponential.ideal_ms(&params(100_000));
        let minutes = 20.0 + 10.0 + 5.0 + 2.5 + 1.25 + 95.0;
        assert_eq!(ideal, (minutes * 60_000.0) as Millis);
        assert!(Scenario::Exponential
            .rollout(&params(10))
            .validate()
            .is_ok());
    }

    #[test]
    fn the_offline_selection_is_one_in_a_hundred() {
        let n = (0..10_000)
            .filter(|i| Selection::EveryNth(100).contains(*i))
            .count();
        assert_eq!(n, 100);
    }
}
