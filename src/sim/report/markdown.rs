//! The fleet report as Markdown: the setting, where each run was made, one table per
//! scenario, and the plots' links.
//!
//! Owns: the report's wording and number formats, and grouping runs by the machine and
//! command that made them. Must not know: how runs are made or measured, or where the file
//! goes (the shell passes each run's provenance and the plot file names in, and writes the
//! text out).

use super::metrics::RunMetrics;
use super::run_record::Provenance;
use super::scenario::Scenario;
use super::strategy::Strategy;
use super::ReportConfig;
use std::fmt::Write;

/// One run as the report shows it: its strategy, what it measured and where it was made.
pub struct ReportedRun {
    pub strategy: Strategy,
    pub metrics: RunMetrics,
    pub provenance: Provenance,
}

/// One scenario's runs, in strategy order, with the plots drawn for it.
pub struct ScenarioSection {
    pub scenario: Scenario,
    pub runs: Vec<ReportedRun>,
    /// File names of the plots, relative to the report.
    pub plots: Vec<String>,
}

/// The distinct (machine, command) pairs of the runs, in order of first appearance; a run's
/// source number is its pair's index + 1.
fn sources(sections: &[ScenarioSection]) -> Vec<(&str, &str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for run in sections.iter().flat_map(|s| &s.runs) {
        let key = (
            run.provenance.machine.as_str(),
            run.provenance.command.as_str(),
        );
        if !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

/// The whole report.
pub fn render(config: &ReportConfig, sections: &[ScenarioSection]) -> String {
    let mut out = String::new();
    let p = config.scenario_params();
    let _ = writeln!(out, "# Fleet report: how a fleet learns of its jobs\n");
    let _ = writeln!(
        out,
        "Every run is a fleet of **{} core devices** through the emulated world in virtual time: each device runs the component's real engine behind its nucleus's MQTT connection (the nucleus's own deployment-jobs traffic included), IoT Core with persistent sessions (1 h expiry), the rules engine and the Jobs service. One job targets every core, with the scenario's `jobExecutionsRolloutConfig`; the account accepts {} Jobs requests a second (more are answered RequestThrottled). {} ms latency each way, {} s of work per job, the cores boot spread over {} min and idle {} min before the job is created (time 0 below). A run ends {} min after the later of the rollout's ideal end and the scenario's last event. Seed {}.\n",
        config.devices,
        config.quota_per_second,
        config.latency_ms,
        config.work_ms / 1000,
        config.boot_window_ms / 60_000,
        config.settle_ms / 60_000,
        config.tail_ms / 60_000,
        config.seed,
    );
    let _ = writeln!(out, "Strategies:\n");
    let _ = writeln!(out, "- **notify-next only**: no rule, the connection status ignored, no poll (the flaw the project started from).");
    let _ = writeln!(out, "- **poll every 5 / 15 / 60 min**: notify-next plus the engine's safety poll (`safetyPollSeconds`), no rule.");
    let _ = writeln!(
        out,
        "- **reconnect rule + jitter**: the rule republishes each `subscribed` event to `reconnect/<thing>`; the component queries after a random delay up to `jitterMaxMs` = {} ms (the fleet over the quota, at least 3 s).",
        config.rule_jitter_ms
    );
    let _ = writeln!(out, "- **rule + ConnectionStatus**: the same, and each CONNECTED event of the nucleus's SubscribeToIoTCoreConnectionStatus stream queries too.\n");
    let _ = writeln!(out, "Columns: **stranded** = online devices whose execution is not terminal at the end; **99 % / 100 %** = virtual time from the job's creation until that share of the fleet SUCCEEDED, and its ratio to the ideal (N / rate); **peak req/s** = the most Jobs requests the components sent in one second of virtual time (the quota is {}); **throttled** = every Jobs request the account refused for the quota, the nuclei's own included (each nucleus asks for its next deployment, `$next/namespace-aws-gg-deployment/get`, on every connect, so a fleet reconnecting at once spends the quota before its components ask); **MQTT/device** = PUBLISH packets between the cores and IoT Core both ways (components and nuclei) per device over the run, and that rate scaled to a day; **wall** and **peak RSS** = the simulation's own cost (RSS high-water mark, reset before each run).\n", config.quota_per_second);
    let _ = writeln!(out, "Reading the cost columns: a run's messages are the job's own (query, describe, start, result and their answers, the notifications, the nucleus's traffic on reconnects) plus, for the polling strategies, a query and its answer per device and period; scaled to a day the event-driven strategies look as if the job ran again every run length, so compare the run column for one job and the poll periods for the steady cost (a 5-minute poll alone is 2 × 288 = 576 messages per device and day).\n");
    let p_sources = sources(sections);
    let _ = writeln!(out, "## Machine and command\n");
    let _ = writeln!(out, "Each run's record (settings, provenance, metrics, the plotted series) is kept in `runs/` beside this report; the report is redrawn from every record made under its settings, so a strategy or scenario can be re-run alone. The tables' **source** column names where a run was made.\n");
    let mut shown_machine = None;
    for (i, (machine, command)) in p_sources.iter().enumerate() {
        // Sources of one machine share its description.
        if shown_machine != Some(*machine) {
            let _ = writeln!(out, "### Machine of source {} on\n", i + 1);
            let _ = writeln!(out, "```text\n{}\n```\n", machine.trim_end());
            shown_machine = Some(*machine);
        }
        let _ = writeln!(out, "### Source {}\n", i + 1);
        let _ = writeln!(out, "```sh\n{command}\n```\n");
        let _ = writeln!(
            out,
            "Load average (1, 5, 15 min) at the start and the end of each of its runs:\n"
        );
        for section in sections {
            for run in &section.runs {
                let pr = &run.provenance;
                if (pr.machine.as_str(), pr.command.as_str()) == (*machine, *command) {
                    let _ = writeln!(
                        out,
                        "- {} / {}: {} → {}",
                        section.scenario.slug(),
                        run.strategy.name(),
                        pr.load_at_start,
                        pr.load_at_end
                    );
                }
            }
        }
        let _ = writeln!(out);
    }
    for section in sections {
        let s = section.scenario;
        let _ = writeln!(out, "## {}\n", s.title(&p));
        let ideal = s.ideal_ms(&p);
        let _ = writeln!(
            out,
            "Ideal (every thing notified at the rollout's rate): {}; run length {}.\n",
            minutes(ideal),
            minutes(config.horizon_ms(s))
        );
        let _ = writeln!(out, "| strategy | stranded | SUCCEEDED | 99 % after | 100 % after | peak req/s (quota {}) | throttled | Jobs requests | MQTT/device (run) | MQTT/device/day | wall | peak RSS | source |", config.quota_per_second);
        let _ = writeln!(
            out,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for run in &section.runs {
            let m = &run.metrics;
            let key = (
                run.provenance.machine.as_str(),
                run.provenance.command.as_str(),
            );
            let source = p_sources
                .iter()
                .position(|s| *s == key)
                .map_or(0, |i| i + 1);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.0} | {} | {} | {} |",
                run.strategy.name(),
                m.stranded,
                m.succeeded,
                against_ideal(m.t99_ms, m.ideal_ms),
                against_ideal(m.t100_ms, m.ideal_ms),
                m.peak_requests_per_second,
                m.throttled,
                m.jobs_requests,
                m.mqtt_per_device(),
                m.mqtt_per_device_per_day(),
                m.wall
                    .map_or_else(|| "–".to_owned(), |w| format!("{:.1} s", w.as_secs_f64())),
                m.peak_rss_bytes.map_or_else(
                    || "–".to_owned(),
                    |b| format!("{:.0} MiB", b as f64 / 1_048_576.0)
                ),
                source,
            );
        }
        let _ = writeln!(out);
        for plot in &section.plots {
            let _ = writeln!(out, "![{plot}]({plot})\n");
        }
    }
    out
}

fn minutes(ms: u64) -> String {
    format!("{:.1} min", ms as f64 / 60_000.0)
}

fn against_ideal(t: Option<u64>, ideal: u64) -> String {
    match t {
        None => "never".to_owned(),
        Some(t) if ideal > 0 => format!("{} ({:.2}×)", minutes(t), t as f64 / ideal as f64),
        Some(t) => minutes(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_is_shown_against_the_ideal_and_a_missing_one_as_never() {
        assert_eq!(against_ideal(Some(90_000), 60_000), "1.5 min (1.50×)");
        assert_eq!(against_ideal(None, 60_000), "never");
    }
}
