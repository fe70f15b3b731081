//! Command-line interface: one clap definition per subcommand, one `match` over modes, and exit
//! codes decided in one place (0 done, 1 failure, 2 bad input, 3 incomplete sweep, 130 interrupted).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use common::layout::RunLayout;

use crate::plan::{load_spec, Plan};
use crate::run::{default_workers, drive, prepare, RunOptions, StopReason};

/// Probe where a diffusion model and its text encoder hold human knowledge, layer by layer.
#[derive(Parser, Debug)]
#[command(name = "diffprobe", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Expand a spec into units and print counts, bytes and work; launch nothing.
    Plan {
        /// The job spec (TOML).
        spec: PathBuf,
        /// Override a spec key: `--set analysis.attribute_probe.alpha=100`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a sweep: coordinator + local workers, then the report.
    Run {
        /// The job spec (TOML).
        spec: PathBuf,
        /// Override a spec key.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        #[command(flatten)]
        opts: DriveArgs,
    },
    /// Finish an interrupted run (after Ctrl-C or a killed coordinator) without redoing committed units.
    Resume {
        /// The run directory, e.g. `runs/demo`.
        run_dir: PathBuf,
        #[command(flatten)]
        opts: DriveArgs,
    },
    /// Show a run's progress from its state database.
    Status {
        /// The run directory.
        run_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-merge a finished run's probe outputs into `report/`.
    Report {
        /// The run directory.
        run_dir: PathBuf,
    },
    /// Join a running sweep as a worker (the token comes from `DIFFPROBE_TOKEN`).
    Worker {
        /// Coordinator address, e.g. `http://127.0.0.1:7000`.
        #[arg(long)]
        coordinator: String,
        /// A label for logs and status.
        #[arg(long, default_value = "")]
        tag: String,
        /// Seconds to keep retrying while the coordinator is unreachable.
        #[arg(long, default_value_t = 60)]
        patience_s: u64,
    },
}

#[derive(clap::Args, Debug)]
struct DriveArgs {
    /// Local worker processes (default: what fits on this host; 0 = external workers only).
    #[arg(long)]
    workers: Option<usize>,
    /// Address to serve workers on (default 127.0.0.1, any free port; loopback only unless set).
    #[arg(long)]
    bind: Option<std::net::SocketAddr>,
    /// Seconds a worker gets to finish or release its unit on shutdown before SIGKILL.
    #[arg(long, default_value_t = 10)]
    grace_s: u64,
}

impl DriveArgs {
    fn options(&self) -> RunOptions {
        RunOptions {
            workers: self.workers.unwrap_or_else(default_workers),
            bind: self.bind,
            grace: Duration::from_secs(self.grace_s),
        }
    }
}

/// Runs the CLI; returns the process exit code.
pub fn main_with_args() -> ExitCode {
    let cli = Cli::parse();
    let rt =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: cannot start the async runtime: {e}");
                return ExitCode::from(1);
            }
        };
    match rt.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// 2 for input the user must fix (spec, data, model files), 1 otherwise.
fn exit_code(e: &anyhow::Error) -> u8 {
    let bad_input = e.chain().any(|c| {
        c.is::<common::error::SpecError>()
            || c.is::<common::stimuli::DatasetError>()
            || matches!(
                c.downcast_ref::<common::error::DataError>(),
                Some(common::error::DataError::Table { .. })
            )
            || c.is::<worker::UnitError>()
    });
    if bad_input {
        2
    } else {
        1
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Plan { spec, sets, json } => {
            let plan = Plan::build(load_spec(&spec, &sets)?, &spec.display().to_string())?;
            let est = plan.estimate();
            if json {
                println!("{}", serde_json::to_string_pretty(&est)?);
            } else {
                print_plan(&plan, &est);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { spec, sets, opts } => {
            let plan = Plan::build(load_spec(&spec, &sets)?, &spec.display().to_string())?;
            let layout = prepare(&plan)?;
            finish(&layout, drive(&layout, &opts.options()).await?)
        }
        Command::Resume { run_dir, opts } => {
            let layout = RunLayout::new(&run_dir);
            anyhow::ensure!(
                layout.state_db().exists(),
                "{} is not a run directory (no state.sqlite)",
                run_dir.display()
            );
            finish(&layout, drive(&layout, &opts.options()).await?)
        }
        Command::Status { run_dir, json } => {
            let status = crate::status::read(&RunLayout::new(&run_dir))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                crate::status::print(&status);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { run_dir } => {
            let layout = RunLayout::new(&run_dir);
            let spec = common::spec::JobSpec::from_resolved_toml(&layout.spec())?;
            let data = common::stimuli::Dataset::open(&layout.root().join("dataset.json"))?;
            let db = crate::db::StateDb::open(&layout.state_db())?;
            crate::merge::write_report(&layout, &spec, &data, &db)?;
            println!("{}", layout.report_dir().join("report.md").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { coordinator, tag, patience_s } => {
            let token = std::env::var(common::TOKEN_ENV).with_context(|| {
                format!("{} is not set: a worker needs the run's token", common::TOKEN_ENV)
            })?;
            let unit_delay = std::env::var("DIFFPROBE_FAULT_UNIT_DELAY_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(Duration::ZERO, Duration::from_millis);
            let args = worker::run::WorkerArgs {
                coordinator,
                token,
                tag,
                patience: Duration::from_secs(patience_s),
                unit_delay,
            };
            worker::run::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn finish(layout: &RunLayout, reason: StopReason) -> anyhow::Result<ExitCode> {
    match reason {
        StopReason::Complete => {
            println!("report: {}", layout.report_dir().join("report.md").display());
            Ok(ExitCode::SUCCESS)
        }
        StopReason::Quarantined => {
            eprintln!(
                "sweep incomplete: some units are quarantined; see `diffprobe status {}`",
                layout.root().display()
            );
            Ok(ExitCode::from(3))
        }
        StopReason::Interrupted => {
            eprintln!("stopped; continue with `diffprobe resume {}`", layout.root().display());
            Ok(ExitCode::from(130))
        }
    }
}

fn print_plan(plan: &Plan, e: &crate::plan::Estimate) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("job {} → {}", plan.spec.job.name, plan.spec.run_dir().display());
    println!("stimuli: {} ({} dropped for missing ratings)", e.stimuli, e.dropped_stimuli);
    println!("attributes: {} ({})", e.attributes, plan.dataset.attributes.join(", "));
    println!("representations: {}", e.representations);
    for (rep, dim) in &plan.representations {
        println!(
            "  {:<16} D = {dim}, {:.2} MiB",
            rep.key(),
            mib((e.stimuli
                * dim
                * if plan.spec.capture.dtype == common::spec::StorageDtype::F16 { 2 } else { 4 })
                as u64)
        );
    }
    println!("units: {} capture + {} probe", e.capture_units, e.probe_units);
    println!(
        "bytes to write: {:.1} MiB features + {:.1} MiB probe results",
        mib(e.feature_bytes),
        mib(e.probe_bytes)
    );
    println!(
        "work: {} forward passes, {} eigendecompositions, {} permutation refits",
        e.forward_passes, e.eigendecompositions, e.permutation_fits
    );
}
