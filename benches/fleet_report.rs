//! The fleet report: every scenario of `sim::report` under every strategy, at fleet scale,
//! written to `bench/REPORT.md` with SVG plots beside it.
//!
//! Run: `cargo bench --bench fleet_report`. `GGJH_REPORT_DEVICES` sets the fleet (default
//! 100,000), `GGJH_REPORT_SCENARIOS` a comma-separated subset of `rollout`, `exponential`,
//! `clean-reconnect`, `offline-hour`, `GGJH_REPORT_STRATEGIES` a subset of `notify-next`,
//! `poll-5`, `poll-15`, `poll-60`, `rule`, `rule-status`, `GGJH_REPORT_QUOTA` the account's Jobs
//! requests a second (default 200), `GGJH_REPORT_OUT` the folder (default `bench/` of the
//! crate). Each run is kept as a record in `runs/` of that folder, and the report is drawn from
//! every record there made under the same settings, so a subset can be re-run alone and
//! scenarios can run in separate processes side by side; with no strategy (or no scenario)
//! selected, the report is only redrawn.
//!
//! This file is the shell: it measures each run's wall time and peak RSS (the process's
//! high-water mark, reset before each run through `/proc/self/clear_refs`), describes the
//! machine, reads and writes the records, draws the plots with `plotters` and writes the
//! files; the runs themselves are deterministic (fixed seed, virtual time).

/// A fleet allocates and frees millions of small messages; mimalloc does that faster than
/// the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use greengrass_jobs_handler::sim::report::markdown::{self, ReportedRun, ScenarioSection};
use greengrass_jobs_handler::sim::report::run_record::{Provenance, RunRecord};
use greengrass_jobs_handler::sim::report::scenario::Scenario;
use greengrass_jobs_handler::sim::report::strategy::Strategy;
use greengrass_jobs_handler::sim::report::{self, ReportConfig};
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn main() {
    // Under `cargo test --benches` the bench binary is run without --bench: skip.
    if !std::env::args().any(|a| a == "--bench") {
        println!("fleet report: run with `cargo bench --bench fleet_report`");
        return;
    }
    let devices: usize = env_parse("GGJH_REPORT_DEVICES").unwrap_or(100_000);
    let scenarios = env_subset("GGJH_REPORT_SCENARIOS", &Scenario::ALL, |s| {
        s.slug().to_owned()
    });
    let strategies = env_subset("GGJH_REPORT_STRATEGIES", &Strategy::ALL, |s| s.slug());
    let out_dir = std::env::var("GGJH_REPORT_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("bench"));
    let runs_dir = out_dir.join("runs");
    if let Err(e) = std::fs::create_dir_all(&runs_dir) {
        eprintln!("cannot create {}: {e}", runs_dir.display());
        std::process::exit(2);
    }
    let mut config = ReportConfig::new(devices);
    if let Some(quota) = env_parse("GGJH_REPORT_QUOTA") {
        config.quota_per_second = quota;
        config.rule_jitter_ms = report::sized_jitter_ms(devices, quota);
    }
    let command = command_line(devices);
    let machine = machine();
    for &scenario in &scenarios {
        for &strategy in &strategies {
            let load_at_start = load();
            reset_peak_rss();
            let started = Instant::now();
            let mut m = report::run(&config, scenario, strategy);
            m.wall = Some(started.elapsed());
            m.peak_rss_bytes = peak_rss_bytes();
            println!(
                "{} / {}: stranded {}, succeeded {}/{}, 100 % after {:?} ms (ideal {} ms), peak {} req/s, {:.1} MQTT/device, wall {:.1} s",
                scenario.slug(),
                strategy.name(),
                m.stranded,
                m.succeeded,
                m.devices,
                m.t100_ms,
                m.ideal_ms,
                m.peak_requests_per_second,
                m.mqtt_per_device(),
                m.wall.map_or(0.0, |w| w.as_secs_f64())
            );
            let provenance = Provenance {
                machine: machine.clone(),
                command: command.clone(),
                load_at_start,
                load_at_end: load(),
            };
            let record = RunRecord::new(&config, scenario, strategy, provenance, m);
            let path = runs_dir.join(RunRecord::file_name(scenario, strategy));
            let written = record.to_json().and_then(|json| {
                write_atomically(&path, json.as_bytes()).map_err(|e| e.to_string())
            });
            if let Err(e) = written {
                eprintln!("cannot write {}: {e}", path.display());
                std::process::exit(2);
            }
        }
        // Written after every scenario, so a long run leaves what it finished.
        if !strategies.is_empty() {
            write_report(&out_dir, &config);
        }
    }
    if scenarios.is_empty() || strategies.is_empty() {
        // Nothing to run: redraw the report from the records alone.
        write_report(&out_dir, &config);
    }
}

/// Draws the plots and writes `REPORT.md` from every record in `runs/` made under `config`,
/// scenario by scenario and strategy by strategy in the report's order.
fn write_report(out_dir: &Path, config: &ReportConfig) {
    let runs_dir = out_dir.join("runs");
    let mut sections = Vec::new();
    for scenario in Scenario::ALL {
        let mut runs = Vec::new();
        for strategy in Strategy::ALL {
            let path = runs_dir.join(RunRecord::file_name(scenario, strategy));
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            match RunRecord::from_json(&text) {
                Ok(record) if record.belongs_to(config) => runs.push(ReportedRun {
                    strategy,
                    metrics: record.metrics,
                    provenance: record.provenance,
                }),
                Ok(_) => eprintln!(
                    "{} left out: made under other settings than this report's",
                    path.display()
                ),
                Err(e) => eprintln!("{} left out: {e}", path.display()),
            }
        }
        if runs.is_empty() {
            continue;
        }
        let mut plots = Vec::new();
        for (name, draw) in [
            ("succeeded", plot_succeeded as PlotFn),
            ("requests", plot_requests as PlotFn),
        ] {
            let file = format!("{}-{name}.svg", scenario.slug());
            // Drawn beside and renamed over, so a report written by another run at the same
            // time never leaves a torn plot.
            let partial = out_dir.join(format!(".{file}.{}", std::process::id()));
            let drawn = draw(&partial, config, scenario, &runs).and_then(|()| {
                std::fs::rename(&partial, out_dir.join(&file)).map_err(|e| e.to_string())
            });
            match drawn {
                Ok(()) => plots.push(file),
                Err(e) => {
                    let _ = std::fs::remove_file(&partial);
                    eprintln!("plot {file} not drawn: {e}");
                }
            }
        }
        sections.push(ScenarioSection {
            scenario,
            runs,
            plots,
        });
    }
    let text = markdown::render(config, &sections);
    let path = out_dir.join("REPORT.md");
    if let Err(e) = write_atomically(&path, text.as_bytes()) {
        eprintln!("cannot write {}: {e}", path.display());
        std::process::exit(2);
    }
    println!("wrote {}", path.display());
}

/// Writes `bytes` beside `path` and renames the file over it.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let partial = path.with_file_name(format!(".{name}.{}", std::process::id()));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}

type PlotFn = fn(&Path, &ReportConfig, Scenario, &[ReportedRun]) -> Result<(), String>;

const COLORS: [RGBColor; 6] = [
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(188, 189, 34),
    RGBColor(140, 86, 75),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
];

/// Devices SUCCEEDED over virtual time, one line per strategy, and the ideal rollout.
fn plot_succeeded(
    path: &Path,
    config: &ReportConfig,
    scenario: Scenario,
    runs: &[ReportedRun],
) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let horizon_min = config.horizon_ms(scenario) as f64 / 60_000.0;
    let n = config.devices as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: devices SUCCEEDED ({} devices)",
                scenario.slug(),
                config.devices
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..horizon_min, 0f64..n * 1.02)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("virtual minutes after the job's creation")
        .y_desc("devices SUCCEEDED")
        .draw()
        .map_err(|e| e.to_string())?;
    let ideal_min = scenario.ideal_ms(&config.scenario_params()) as f64 / 60_000.0;
    chart
        .draw_series(LineSeries::new(
            [(0.0, 0.0), (ideal_min, n), (horizon_min, n)],
            BLACK.stroke_width(1),
        ))
        .map_err(|e| e.to_string())?
        .label("ideal (N / rate)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
    for (i, run) in runs.iter().enumerate() {
        let (strategy, m) = (run.strategy, &run.metrics);
        let color = COLORS[i % COLORS.len()];
        let points = m
            .succeeded_series
            .iter()
            .map(|s| (s.at_ms as f64 / 60_000.0, s.succeeded as f64));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(strategy.name())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// The busiest second of each minute, per strategy (log scale), against the quota.
fn plot_requests(
    path: &Path,
    config: &ReportConfig,
    scenario: Scenario,
    runs: &[ReportedRun],
) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let horizon_min = config.horizon_ms(scenario) as f64 / 60_000.0;
    let peak = runs
        .iter()
        .map(|run| run.metrics.peak_requests_per_second)
        .max()
        .unwrap_or(1)
        .max(u64::from(config.quota_per_second)) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: Jobs requests in the busiest second of each minute ({} devices)",
                scenario.slug(),
                config.devices
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..horizon_min, (1f64..peak * 2.0).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("virtual minutes after the job's creation")
        .y_desc("requests / s")
        .draw()
        .map_err(|e| e.to_string())?;
    let quota = f64::from(config.quota_per_second);
    chart
        .draw_series(LineSeries::new(
            [(0.0, quota), (horizon_min, quota)],
            BLACK.stroke_width(1),
        ))
        .map_err(|e| e.to_string())?
        .label(format!("account quota {}/s", config.quota_per_second))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
    let minutes = (config.horizon_ms(scenario) / 60_000) + 1;
    for (i, run) in runs.iter().enumerate() {
        let (strategy, m) = (run.strategy, &run.metrics);
        let color = COLORS[i % COLORS.len()];
        let points = (0..minutes).map(|minute| {
            let v = m
                .peak_requests_per_minute
                .get(&minute)
                .copied()
                .unwrap_or(0);
            (minute as f64 + 0.5, (v as f64).max(1.0))
        });
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(strategy.name())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// The items of `all` whose slug the comma-separated list in `name` names (all when unset).
fn env_subset<T: Copy>(name: &str, all: &[T], slug: impl Fn(T) -> String) -> Vec<T> {
    match std::env::var(name) {
        Ok(list) => all
            .iter()
            .copied()
            .filter(|&item| list.split(',').any(|x| x.trim() == slug(item)))
            .collect(),
        Err(_) => all.to_vec(),
    }
}

fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn command_line(devices: usize) -> String {
    // Profile overrides in force (e.g. a build without LTO, which links in minutes).
    let mut parts: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CARGO_PROFILE_BENCH_"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    parts.sort();
    parts.push(format!("GGJH_REPORT_DEVICES={devices}"));
    for key in [
        "GGJH_REPORT_QUOTA",
        "GGJH_REPORT_SCENARIOS",
        "GGJH_REPORT_STRATEGIES",
    ] {
        if let Ok(s) = std::env::var(key) {
            parts.push(format!("{key}={s}"));
        }
    }
    parts.push("cargo bench --bench fleet_report".to_owned());
    parts.join(" ")
}

/// nproc, the CPU model, memory and load, from /proc.
fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim())
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = |key: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or("unknown".to_owned(), |kb| {
                format!("{:.1} GiB", kb / 1_048_576.0)
            })
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "nproc: {nproc}\nCPU: {model}\nmemory: {} total\nkernel: {}\ntree: {}",
        mem("MemTotal:"),
        kernel.trim(),
        tree()
    )
}

/// The commit the bench was built from, and whether the checkout had changes beside it.
fn tree() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        None => "unknown (not a git checkout)".to_owned(),
        Some(commit) => {
            let changed = git(&[
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                "src",
                "benches",
                "Cargo.toml",
                "Cargo.lock",
            ])
            .is_some_and(|s| !s.is_empty());
            if changed {
                format!("{commit} with local changes to src/, benches/ or Cargo")
            } else {
                commit
            }
        }
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Resets the process's RSS high-water mark (Linux: `5` to clear_refs).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's RSS high-water mark since the last reset (VmHWM).
fn peak_rss_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}
