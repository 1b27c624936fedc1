//! What one run of the fleet report measures, from counters sampled on the virtual clock.
//!
//! Owns: [`RunMetrics`] (stranded jobs, the times until 99 % and 100 % of the fleet
//! SUCCEEDED, Jobs requests per second against the quota, MQTT messages per device and day)
//! and the time series the plots are drawn from ([`Sample`]).
//! Must not know: the world, devices or how the counters were obtained; wall time and memory
//! are the shell's to measure and are only carried here.

use crate::emulator::world::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

const DAY_MS: f64 = 86_400_000.0;

/// The fleet's state at one time of a run (times from the job's creation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub at_ms: Millis,
    /// Executions SUCCEEDED so far.
    pub succeeded: usize,
}

/// The measured outcome of one scenario × strategy run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    pub devices: usize,
    /// From the job's creation to the end of the run.
    pub horizon_ms: Millis,
    /// N / rate (see [`super::scenario::Scenario::ideal_ms`]).
    pub ideal_ms: Millis,
    /// Online devices whose execution was not terminal at the end.
    pub stranded: usize,
    /// Devices whose execution SUCCEEDED by the end.
    pub succeeded: usize,
    /// When 99 % (rounded up) and 100 % of the fleet had SUCCEEDED (`None`: not by the end).
    pub t99_ms: Option<Millis>,
    pub t100_ms: Option<Millis>,
    /// Jobs requests the devices sent, and the most in one second of virtual time.
    pub jobs_requests: u64,
    pub peak_requests_per_second: u64,
    /// Requests refused with RequestThrottled for the account quota.
    pub throttled: u64,
    pub quota_per_second: u32,
    /// PUBLISH packets between the cores and IoT Core, both ways, the nuclei's own included.
    pub mqtt_messages: u64,
    /// SUCCEEDED executions over time.
    pub succeeded_series: Vec<Sample>,
    /// The most Jobs requests in one second, per minute of the run (minute index → count).
    pub peak_requests_per_minute: BTreeMap<u64, u64>,
    /// Measured by the shell around the run, when it did.
    pub wall: Option<Duration>,
    pub peak_rss_bytes: Option<u64>,
}

impl RunMetrics {
    /// MQTT messages per device over the run.
    pub fn mqtt_per_device(&self) -> f64 {
        if self.devices == 0 {
            return 0.0;
        }
        self.mqtt_messages as f64 / self.devices as f64
    }

    /// MQTT messages per device, the run's rate scaled to a day.
    pub fn mqtt_per_device_per_day(&self) -> f64 {
        if self.horizon_ms == 0 {
            return 0.0;
        }
        self.mqtt_per_device() * DAY_MS / self.horizon_ms as f64
    }
}

/// The first sample at which at least `count` executions had SUCCEEDED.
pub fn first_reaching(series: &[Sample], count: usize) -> Option<Millis> {
    series
        .iter()
        .find(|s| s.succeeded >= count)
        .map(|s| s.at_ms)
}

/// How many devices make 99 % of `devices` (rounded up).
pub fn ninety_nine_percent(devices: usize) -> usize {
    (devices * 99).div_ceil(100)
}

/// Per minute of a run (from `start`), the largest of the per-second counts in it.
pub fn peak_per_minute(per_second: &BTreeMap<Millis, u64>, start: Millis) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for (at, n) in per_second.range(start..) {
        let minute = (at - start) / 60_000;
        let peak = out.entry(minute).or_insert(0);
        *peak = (*peak).max(*n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_sample_reaching_a_count_gives_the_time() {
        let s = [
            Sample {
                at_ms: 0,
                succeeded: 0,
            },
            Sample {
                at_ms: 1000,
                succeeded: 98,
            },
            Sample {
                at_ms: 2000,
                succeeded: 99,
            },
            Sample {
                at_ms: 3000,
                succeeded: 100,
            },
        ];
        assert_eq!(first_reaching(&s, ninety_nine_percent(100)), Some(2000));
        assert_eq!(first_reaching(&s, 101), None);
        assert_eq!(ninety_nine_percent(150), 149);
    }

    #[test]
    fn minutes_keep_their_busiest_second() {
        let per_second: BTreeMap<Millis, u64> = [
            (500, 9),
            (1_000, 3),
            (61_000, 4),
            (119_000, 7),
            (121_000, 1),
        ]
        .into();
        let peaks = peak_per_minute(&per_second, 1_000);
        assert_eq!(peaks, [(0, 3), (1, 7), (2, 1)].into());
    }
}
