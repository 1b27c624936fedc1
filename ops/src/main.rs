//! `ggjh-ops`: the operator's side of greengrass-jobs-handler fleets, on the AWS SDK for Rust.
//!
//! `run` sends one job to one thing and prints its result, `status` reports a job, `rollout`
//! targets a fleet-index query minus an exclude list at a controlled rate. Every subcommand
//! works against AWS IoT (the default credential chain and region) or, with `--endpoint-url`,
//! against another endpoint such as the emulator's control listener.
//!
//! Exit status: 0 when the job (or rollout) succeeded, 1 when it ran but did not succeed (a
//! failed job, a rollout whose abort criteria fired), 2 when the command could not do its work
//! (bad arguments, credentials, AWS errors, a thing that did not finish in time). Errors are
//! one line on stderr. This file owns the command line and that mapping; the subcommands'
//! logic lives in their modules.

mod backoff;
mod connection;
mod error;
mod exclude;
mod groups;
mod pacer;
mod parse;
mod progress;
mod rollout;
mod run;
mod stamp;
mod status;

use clap::{Args, Parser, Subcommand};
use connection::Target;
use error::OpsError;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    version,
    about = "Operator CLI for AWS IoT Jobs on greengrass-jobs-handler fleets"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Endpoint of the AWS IoT control plane instead of AWS's (e.g. the emulator's control
    /// listener, http://127.0.0.1:8443).
    #[arg(long, global = true, value_name = "URL")]
    endpoint_url: Option<String>,
    /// AWS region (default: the default chain's; us-east-1 with --endpoint-url).
    #[arg(long, global = true)]
    region: Option<String>,
    /// Attempts per AWS request, the first included; throttled and failed requests are retried
    /// with back-off.
    #[arg(long, global = true, default_value_t = 8)]
    max_attempts: u32,
}

#[derive(Subcommand)]
enum Command {
    /// Send one job to one thing, wait for it to end and print its statusDetails as JSON.
    Run {
        /// The thing (core device) to run the job on.
        #[arg(long)]
        thing: String,
        /// The job document, JSON text (e.g. '{"operation":"add","a":15,"b":42}').
        #[arg(long)]
        document: String,
        /// Seconds to wait for a terminal status; the job is canceled after that.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// The job's id (default: a fresh `run-<thing>-<time>-<pid>`).
        #[arg(long)]
        job_id: Option<String>,
    },
    /// A job's counts by status and its executions that did not succeed, with their reasons.
    Status {
        #[arg(long)]
        job_id: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Describe at most this many unsuccessful executions.
        #[arg(long, default_value_t = 50)]
        max_failures: usize,
    },
    /// Roll a continuous job out to every thing a fleet-index query matches, minus an exclude
    /// list, at a controlled rate; resumable and idempotent.
    Rollout(RolloutArgs),
}

#[derive(Args)]
struct RolloutArgs {
    /// The job's id; also names its thing groups `<id>-exclude` and `<id>-targets`.
    #[arg(long)]
    job_id: String,
    /// Fleet-index query of the things to target (e.g. 'attributes.site:north').
    #[arg(long)]
    query: String,
    /// CSV of thing names to leave out (one per line or comma-separated; a `thingName` header
    /// and `#` comments are skipped).
    #[arg(long, value_name = "FILE")]
    exclude: Option<PathBuf>,
    /// Rollout rate: executions started per minute.
    #[arg(long, conflicts_with = "exponential")]
    max_per_minute: Option<i32>,
    /// Exponential rollout: BASE,FACTOR (base rate per minute, increment factor).
    #[arg(long, value_name = "BASE,FACTOR")]
    exponential: Option<String>,
    /// With --exponential: raise the rate after this many things were notified (default: BASE).
    #[arg(long, requires = "exponential")]
    increase_after: Option<i32>,
    /// Cancel the job when this percentage of executed things failed, were rejected or timed
    /// out.
    #[arg(long)]
    abort_failed_percent: Option<f64>,
    /// With --abort-failed-percent: the executed things needed before the criteria apply.
    #[arg(long, default_value_t = 10)]
    abort_min_executed: i32,
    /// The job document (a JSON file).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "template",
        conflicts_with = "template"
    )]
    document: Option<PathBuf>,
    /// A job template ARN instead of a document (AWS managed templates included).
    #[arg(long, value_name = "ARN")]
    template: Option<String>,
    /// A document parameter of the template, K=V (repeatable).
    #[arg(long = "param", value_name = "K=V", requires = "template")]
    params: Vec<String>,
    /// The reported-shadow key stamped on every target (its value: the job id), so that a
    /// thing joins the target group at once instead of when the fleet index catches up.
    #[arg(long, default_value = "ggjhRollout", value_name = "KEY")]
    shadow_key: String,
    /// Neither stamp shadows nor add the shadow term to the group's query.
    #[arg(long)]
    no_shadow_stamp: bool,
    /// Registry and shadow writes per second while filling the exclude group and stamping.
    #[arg(long, default_value_t = 20.0)]
    registry_rate: f64,
    /// Seconds between two looks at the job's progress.
    #[arg(long, default_value_t = 5.0)]
    poll_seconds: f64,
    /// Set the rollout up and return, without watching its progress.
    #[arg(long)]
    no_wait: bool,
}

fn fail(e: &OpsError) -> ExitCode {
    eprintln!("ggjh-ops: {e}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ggjh-ops: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(dispatch(cli))
}

async fn dispatch(cli: Cli) -> ExitCode {
    let target = Target {
        endpoint_url: cli.global.endpoint_url,
        region: cli.global.region,
        max_attempts: cli.global.max_attempts,
    };
    let iot = match connection::connect(&target).await {
        Ok(iot) => iot,
        Err(e) => return fail(&e),
    };
    match cli.command {
        Command::Run {
            thing,
            document,
            timeout,
            job_id,
        } => {
            let request = run::RunRequest {
                thing,
                document,
                timeout: Duration::from_secs(timeout),
                job_id,
            };
            match run::run(&iot, &request).await {
                Ok(outcome) => {
                    println!("{}", serde_json::json!(outcome.status_details));
                    if outcome.succeeded() {
                        ExitCode::SUCCESS
                    } else {
                        let reason = outcome
                            .status_details
                            .get("reason")
                            .map_or(String::new(), |r| format!(": {r}"));
                        eprintln!(
                            "ggjh-ops: job {} on {} ended {}{reason}",
                            outcome.job_id, request.thing, outcome.status
                        );
                        ExitCode::from(1)
                    }
                }
                Err(e) => fail(&e),
            }
        }
        Command::Status {
            job_id,
            json,
            max_failures,
        } => match status::status(&iot, &job_id, max_failures).await {
            Ok(report) => {
                if json {
                    println!("{}", report.to_json());
                } else {
                    print!("{}", report.text());
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Rollout(args) => {
            let plan = match rollout_plan(args) {
                Ok(plan) => plan,
                Err(e) => return fail(&e),
            };
            match rollout::rollout(&iot, &plan).await {
                Ok(rollout::RolloutEnd::Running(counts)) => {
                    println!("job {}: rolling out; {}", plan.job_id, counts.line());
                    ExitCode::SUCCESS
                }
                Ok(rollout::RolloutEnd::Done(counts)) => {
                    println!(
                        "job {}: every target finished; {}",
                        plan.job_id,
                        counts.line()
                    );
                    ExitCode::SUCCESS
                }
                Ok(rollout::RolloutEnd::Aborted { counts, reason }) => {
                    println!("job {}: canceled; {}", plan.job_id, counts.line());
                    eprintln!("ggjh-ops: job {} was canceled: {reason}", plan.job_id);
                    ExitCode::from(1)
                }
                Err(e) => fail(&e),
            }
        }
    }
}

fn rollout_plan(args: RolloutArgs) -> Result<rollout::Plan, OpsError> {
    let rate = match (args.max_per_minute, &args.exponential) {
        (Some(n), _) => Some(rollout::Rate::PerMinute(n)),
        (None, Some(spec)) => {
            let (base, factor) = parse::parse_exponential(spec)?;
            Some(rollout::Rate::Exponential {
                base,
                factor,
                increase_after: args.increase_after.unwrap_or(base),
            })
        }
        (None, None) => None,
    };
    let source = match (args.document, args.template) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                OpsError::Input(format!("cannot read --document {}: {e}", path.display()))
            })?;
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(serde_json::Value::Object(_)) => {}
                Ok(_) => {
                    return Err(OpsError::Input(format!(
                        "--document {} is not a JSON object",
                        path.display()
                    )))
                }
                Err(e) => {
                    return Err(OpsError::Input(format!(
                        "--document {} is not valid JSON: {e}",
                        path.display()
                    )))
                }
            }
            rollout::Source::Document(text)
        }
        (None, Some(arn)) => rollout::Source::Template {
            arn,
            parameters: parse::parse_params(&args.params)?,
        },
        (None, None) => {
            return Err(OpsError::Input(
                "give --document FILE or --template ARN".into(),
            ))
        }
    };
    let exclude = match &args.exclude {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                OpsError::Input(format!("cannot read --exclude {}: {e}", path.display()))
            })?;
            exclude::parse_thing_names(&text).map_err(OpsError::Input)?
        }
        None => Vec::new(),
    };
    if let Some(p) = args.abort_failed_percent {
        if !(0.0..=100.0).contains(&p) {
            return Err(OpsError::Input(
                "--abort-failed-percent must be from 0 to 100".into(),
            ));
        }
    }
    if !(args.registry_rate > 0.0 && args.registry_rate.is_finite()) {
        return Err(OpsError::Input("--registry-rate must be above 0".into()));
    }
    if !(args.poll_seconds > 0.0 && args.poll_seconds.is_finite()) {
        return Err(OpsError::Input("--poll-seconds must be above 0".into()));
    }
    let stamp = match args.no_shadow_stamp {
        true => None,
        false => Some(stamp::Stamp::new(&args.shadow_key, &args.job_id).map_err(OpsError::Input)?),
    };
    Ok(rollout::Plan {
        stamp,
        job_id: args.job_id,
        query: args.query,
        exclude,
        rate,
        abort: args.abort_failed_percent.map(|percent| rollout::Abort {
            percent,
            min_executed: args.abort_min_executed,
        }),
        source,
        registry_rate: args.registry_rate,
        poll: Duration::from_secs_f64(args.poll_seconds),
        wait: !args.no_wait,
    })
}
