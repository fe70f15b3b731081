//! Command-line interface: one clap definition per subcommand, one `match` over modes, and exit
//! codes decided in one place (0 done, 1 failure, 2 bad input, 3 incomplete sweep, 130 interrupted).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use common::layout::RunLayout;

use crate::launcher::LauncherKind;
use crate::plan::{load_spec, Plan};
use crate::run::{drive, prepare, RunOptions, StopReason};

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
        /// Also show what this launcher would submit (`slurm`: the sbatch script).
        #[arg(long, value_enum)]
        launcher: Option<LauncherKind>,
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
    /// Grow or shrink a running sweep's workers (local processes or Slurm tasks); nothing
    /// committed is lost, and drained workers release their units.
    Scale {
        /// The run directory.
        run_dir: PathBuf,
        /// The new number of workers.
        #[arg(long)]
        workers: usize,
    },
    /// Show a run's progress from its state database.
    Status {
        /// The run directory.
        run_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Refresh every 2 s until the run is complete or interrupted with Ctrl-C.
        #[arg(long)]
        watch: bool,
    },
    /// Re-merge a run's committed outputs into `report/`. Each file is first checked against
    /// the checksum recorded at its commit; a changed one is moved to `corrupt/` and its unit
    /// re-queued for `resume`. Exits 3 (with an "incomplete" banner in the report) unless every
    /// unit is committed.
    Report {
        /// The run directory.
        run_dir: PathBuf,
        /// Print the summary table (per representation and group) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load harness for the coordinator (`scripts/bench-coordinator`): synthetic runs on
    /// loopback with simulated workers; prints throughput, heartbeat latency, CPU and RSS.
    #[command(hide = true)]
    BenchCoordinator {
        /// Units in each synthetic run.
        #[arg(long, default_value_t = 100_000)]
        units: usize,
        /// Seconds each scenario runs.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Worker counts of the throughput scenario.
        #[arg(long, value_delimiter = ',', default_value = "1,64,512")]
        workers: Vec<usize>,
        /// Idle pollers beside 4 busy workers (0 skips the heartbeat and idle scenarios).
        #[arg(long, default_value_t = 500)]
        idle: usize,
        /// Units hashed and inserted in the plan scenario (0 skips it).
        #[arg(long, default_value_t = 1_000_000)]
        plan_units: usize,
        /// Where the synthetic runs go.
        #[arg(long, default_value = "runs/bench-coordinator")]
        dir: PathBuf,
        /// Internal: serve this synthetic run directory (the coordinator side).
        #[arg(long)]
        serve: Option<PathBuf>,
    },
    /// Join a running sweep as a worker (the token comes from `DIFFPROBE_TOKEN`).
    Worker {
        /// Coordinator address, e.g. `http://127.0.0.1:7000`.
        #[arg(long, required_unless_present = "run_dir")]
        coordinator: Option<String>,
        /// Read the coordinator's address (`coordinator.json`) and the token from this run
        /// directory on a shared file system (how Slurm tasks join: nothing secret in `ps`).
        #[arg(long)]
        run_dir: Option<PathBuf>,
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
    /// Workers to keep: local processes or Slurm array tasks (default: what fits on this host,
    /// or a resumed run's last target; 0 = external workers only).
    #[arg(long)]
    workers: Option<usize>,
    /// How workers are started (default: local, or a resumed run's launcher).
    #[arg(long, value_enum)]
    launcher: Option<LauncherKind>,
    /// Address to serve workers on (default 127.0.0.1, any free port; loopback only unless set).
    #[arg(long)]
    bind: Option<std::net::SocketAddr>,
    /// Seconds a worker gets to finish or release its unit on shutdown before SIGKILL.
    #[arg(long, default_value_t = 10)]
    grace_s: u64,
    /// Put quarantined units back to pending before starting (after fixing what made them
    /// fail, e.g. freeing disk space); their failure counts start again from zero.
    #[arg(long)]
    retry_quarantined: bool,
}

impl DriveArgs {
    fn options(&self) -> RunOptions {
        RunOptions {
            workers: self.workers,
            launcher: self.launcher,
            bind: self.bind,
            grace: Duration::from_secs(self.grace_s),
            retry_quarantined: self.retry_quarantined,
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
    let result = rt.block_on(dispatch(cli.command));
    // Do not wait for abandoned blocking tasks (a draining worker's unit): its output is never
    // renamed into place, and the process exits now rather than when the unit would finish.
    rt.shutdown_background();
    match result {
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
            || c.is::<crate::launcher::slurm::SlurmUnreachable>()
    });
    if bad_input {
        2
    } else {
        1
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Plan { spec, sets, json, launcher } => {
            let plan = Plan::build(load_spec(&spec, &sets)?, &spec.display().to_string())?;
            let est = plan.estimate();
            if json {
                println!("{}", serde_json::to_string_pretty(&est)?);
            } else {
                crate::plan::print::print(&plan, &est);
            }
            if launcher == Some(LauncherKind::Slurm) {
                let layout = RunLayout::new(plan.spec.run_dir());
                let exe = std::env::current_exe()?;
                println!("\n# sbatch script ({}/slurm/worker.sbatch), submitted as arrays of --workers tasks:", layout.root().display());
                print!("{}", crate::launcher::slurm::render_script(&plan.spec, &layout, &exe));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { spec, sets, opts } => {
            let plan = Plan::build(load_spec(&spec, &sets)?, &spec.display().to_string())?;
            let layout = prepare(&plan, &spec.display().to_string())?;
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
        Command::Scale { run_dir, workers } => {
            let layout = RunLayout::new(&run_dir);
            anyhow::ensure!(
                layout.state_db().exists(),
                "{} is not a run directory (no state.sqlite)",
                run_dir.display()
            );
            let mut db = crate::db::StateDb::open(&layout.state_db())?;
            db.set_meta("target_workers", &workers.to_string(), crate::service::now_ms())?;
            println!(
                "{}: target {workers} workers (the coordinator adjusts within seconds)",
                run_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { run_dir, json, watch } => {
            let layout = RunLayout::new(&run_dir);
            loop {
                let status = crate::status::read(&layout)?;
                if json {
                    println!("{}", serde_json::to_string(&status)?);
                } else {
                    if watch && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                        print!("\x1b[2J\x1b[H"); // clear the screen between refreshes
                    }
                    crate::status::print(&status);
                }
                if !watch || status.complete {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { run_dir, json } => {
            let layout = RunLayout::new(&run_dir);
            let spec = common::spec::JobSpec::from_resolved_toml(&layout.spec())?;
            let data = common::stimuli::Dataset::open(&layout.root().join("dataset.json"))?;
            let mut db = crate::db::StateDb::open(&layout.state_db())?;
            // Merge only files that still match their checksums; a changed one is set aside
            // and its unit re-queued for `resume`.
            let changed = crate::verify::committed(layout.root(), &mut db, "`diffprobe report`")?;
            crate::run::say_redone(&changed);
            let report = crate::report::write(&layout, &spec, &data, &db)?;
            if json {
                let summary = crate::report::summary_json(&layout, &report);
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!("{}", layout.report_dir().join("report.md").display());
            }
            let (done, total) = report.status.committed_of_total();
            if done < total {
                eprintln!(
                    "report incomplete: {done} of {total} units committed; finish the run with `diffprobe resume {0}`, then `diffprobe report {0}`",
                    layout.root().display()
                );
                return Ok(ExitCode::from(3));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchCoordinator { units, seconds, workers, idle, plan_units, dir, serve } => {
            match serve {
                Some(run) => crate::bench::serve(&run).await?,
                None => {
                    let args =
                        crate::bench::BenchArgs { units, seconds, workers, idle, plan_units, dir };
                    crate::bench::bench(&args).await?
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { coordinator, run_dir, tag, patience_s } => {
            // A Slurm task scheduled after its run finished has nothing to do: not an error.
            if let Some(reason) = run_dir.as_ref().and_then(|d| RunLayout::new(d).is_over()) {
                eprintln!(
                    "worker: run {} has ended ({reason}); nothing to do",
                    run_dir.as_deref().map(|d| d.display().to_string()).unwrap_or_default()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let (coordinator, token) = worker_endpoint(coordinator, run_dir.as_deref())?;
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
                lose_complete_reply: std::env::var("DIFFPROBE_FAULT_LOSE_COMPLETE_REPLY")
                    .is_ok_and(|v| v == "1"),
                disk_full_while: std::env::var_os("DIFFPROBE_FAULT_DISK_FULL_WHILE")
                    .map(PathBuf::from),
            };
            worker::run::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The coordinator address and token of a worker: flags and environment first, then the run
/// directory's files.
fn worker_endpoint(
    coordinator: Option<String>,
    run_dir: Option<&std::path::Path>,
) -> anyhow::Result<(String, String)> {
    let layout = run_dir.map(RunLayout::new);
    let address = match (coordinator, &layout) {
        (Some(a), _) => a,
        (None, Some(l)) => {
            let file = l.coordinator_file();
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("{}: no running coordinator", file.display()))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).with_context(|| file.display().to_string())?;
            v["address"].as_str().context("coordinator.json has no address")?.to_string()
        }
        (None, None) => anyhow::bail!("give --coordinator or --run-dir"),
    };
    let token = match (std::env::var(common::TOKEN_ENV), &layout) {
        (Ok(t), _) => t,
        (Err(_), Some(l)) => std::fs::read_to_string(l.token())
            .with_context(|| l.token().display().to_string())?
            .trim()
            .to_string(),
        (Err(_), None) => {
            anyhow::bail!("{} is not set: a worker needs the run's token", common::TOKEN_ENV)
        }
    };
    Ok((address, token))
}

fn finish(layout: &RunLayout, reason: StopReason) -> anyhow::Result<ExitCode> {
    match reason {
        StopReason::Complete => {
            println!("report: {}", layout.report_dir().join("report.md").display());
            Ok(ExitCode::SUCCESS)
        }
        StopReason::Quarantined => {
            eprintln!(
                "sweep incomplete: some units are quarantined; see `diffprobe status {0}`, fix the cause, then `diffprobe resume --retry-quarantined {0}`",
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
