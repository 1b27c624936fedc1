//! One finished run of the fleet report, kept as a self-describing record, so that a report
//! can be drawn from runs made at different times: a subset of strategies re-run, or
//! scenarios run side by side in separate processes.
//!
//! Owns: the record's JSON form (a format number, the report's settings, the scenario and
//! strategy by slug, where the run was made, its metrics), its file name, and whether a
//! record belongs to a report with given settings.
//! Must not know: folders or files (the shell reads and writes them), how runs are made or
//! measured, how the report is worded.

use super::metrics::RunMetrics;
use super::scenario::Scenario;
use super::strategy::Strategy;
use super::ReportConfig;
use serde::{Deserialize, Serialize};

/// The record format this build writes and reads.
pub const FORMAT: u32 = 1;

/// Where and how a run was made: the machine (fixed facts and the tree it was built from),
/// the command, and the load average around the run (these machines are shared and noisy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub machine: String,
    pub command: String,
    pub load_at_start: String,
    pub load_at_end: String,
}

/// One scenario × strategy run with the settings it was made under.
///
/// Contract: [`RunRecord::from_json`] accepts only what [`RunRecord::to_json`] of the same
/// [`FORMAT`] writes, and names a scenario and a strategy this build knows; a record is
/// merged into a report only when [`RunRecord::belongs_to`] its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub format: u32,
    pub config: ReportConfig,
    pub scenario: String,
    pub strategy: String,
    pub provenance: Provenance,
    pub metrics: RunMetrics,
}

impl RunRecord {
    pub fn new(
        config: &ReportConfig,
        scenario: Scenario,
        strategy: Strategy,
        provenance: Provenance,
        metrics: RunMetrics,
    ) -> Self {
        Self {
            format: FORMAT,
            config: config.clone(),
            scenario: scenario.slug().to_owned(),
            strategy: strategy.slug(),
            provenance,
            metrics,
        }
    }

    /// The file a run of `scenario` under `strategy` is kept in.
    pub fn file_name(scenario: Scenario, strategy: Strategy) -> String {
        format!("{}--{}.json", scenario.slug(), strategy.slug())
    }

    pub fn to_json(&self) -> Result<String, String> {
        serde_json::to_string_pretty(self).map_err(|e| e.to_string())
    }

    /// Reads a record, or says why it cannot be used.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let record: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if record.format != FORMAT {
            return Err(format!(
                "record format {} (this build reads {FORMAT})",
                record.format
            ));
        }
        if record.scenario().is_none() {
            return Err(format!("unknown scenario {:?}", record.scenario));
        }
        if record.strategy().is_none() {
            return Err(format!("unknown strategy {:?}", record.strategy));
        }
        Ok(record)
    }

    pub fn scenario(&self) -> Option<Scenario> {
        Scenario::ALL
            .into_iter()
            .find(|s| s.slug() == self.scenario)
    }

    pub fn strategy(&self) -> Option<Strategy> {
        Strategy::ALL
            .into_iter()
            .find(|s| s.slug() == self.strategy)
    }

    /// Whether the record was made under exactly these settings.
    pub fn belongs_to(&self, config: &ReportConfig) -> bool {
        &self.config == config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::report::metrics::Sample;

    fn record() -> RunRecord {
        let metrics = RunMetrics {
            devices: 10,
            horizon_ms: 120_000,
            ideal_ms: 60_000,
            stranded: 1,
            succeeded: 9,
            t99_ms: None,
            t100_ms: None,
            jobs_requests: 40,
            peak_requests_per_second: 7,
            throttled: 3,
            quota_per_second: 5,
            mqtt_messages: 120,
            succeeded_series: vec![Sample {
                at_ms: 30_000,
                succeeded: 4,
            }],
            peak_requests_per_minute: [(0, 7), (1, 2)].into(),
            wall: Some(std::time::Duration::from_millis(1_234)),
            peak_rss_bytes: Some(5 << 20),
        };
        RunRecord::new(
            &ReportConfig::new(10),
            Scenario::CleanReconnect,
            Strategy::Poll { minutes: 15 },
            Provenance {
                machine: "nproc: 2".into(),
                command: "cargo bench --bench fleet_report".into(),
                load_at_start: "0.10 0.20 0.30".into(),
                load_at_end: "1.00 0.50 0.40".into(),
            },
            metrics,
        )
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let r = record();
        let back = RunRecord::from_json(&r.to_json().expect("serializes")).expect("reads");
        assert_eq!(back, r);
        assert_eq!(back.scenario(), Some(Scenario::CleanReconnect));
        assert_eq!(back.strategy(), Some(Strategy::Poll { minutes: 15 }));
        assert_eq!(
            RunRecord::file_name(Scenario::CleanReconnect, Strategy::Poll { minutes: 15 }),
            "clean-reconnect--poll-15.json"
        );
    }

    #[test]
    fn a_record_belongs_only_to_the_settings_it_was_made_under() {
        let r = record();
        assert!(r.belongs_to(&ReportConfig::new(10)));
        assert!(!r.belongs_to(&ReportConfig::new(11)));
        let mut other_quota = ReportConfig::new(10);
        other_quota.quota_per_second += 1;
        assert!(!r.belongs_to(&other_quota));
    }

    #[test]
    fn a_record_of_another_format_or_an_unknown_run_is_refused_with_the_reason() {
        let mut r = record();
        r.format = FORMAT + 1;
        let e = RunRecord::from_json(&r.to_json().expect("serializes")).expect_err("other format");
        assert!(e.contains("format"), "{e}");
        let mut r = record();
        r.strategy = "poll-7".into();
        let e =
            RunRecord::from_json(&r.to_json().expect("serializes")).expect_err("unknown strategy");
        assert!(e.contains("poll-7"), "{e}");
        let e = RunRecord::from_json("{\"format\":1").expect_err("cut off");
        assert!(!e.is_empty());
    }
}
