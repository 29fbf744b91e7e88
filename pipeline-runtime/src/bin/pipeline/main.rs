//! `pipeline`: the command line over the run store. Lists runs, shows a run and its steps,
//! renders its DAG, prints a step's log or an output's value, compares runs, clears the cache
//! and asks a running run to stop.
//!
//! Every error is one line on stderr, `pipeline: ...`, with exit code 2 for a usage mistake or
//! something that does not exist and 1 for a store, log or artifact that cannot be read.

mod commands;
mod context;
mod error;
mod format;
mod json;
mod metrics;
mod output;
mod table;

use clap::{Parser, Subcommand};
use commands::dag::DagFormat;
use commands::runs::RunsArgs;
use context::Ctx;
use error::{CliError, EXIT_USAGE};
use std::path::PathBuf;

/// Inspect the runs of Rust pipelines recorded in the run store.
#[derive(Debug, Parser)]
#[command(name = "pipeline", version, propagate_version = true)]
struct Cli {
    /// The state folder holding the run store (default: $PIPELINE_STATE_DIR, else ./.pipeline).
    #[arg(long, global = true, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Machine output: JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// List runs, newest first.
    Runs(RunsArgs),
    /// Show a run: identity, parameters, timings and its steps.
    Show {
        /// Run id, or an unambiguous prefix of one.
        run: String,
        /// Only the steps of this `task_type` (training, data_processing...).
        #[arg(long, value_name = "TYPE")]
        task_type: Option<String>,
    },
    /// Render a run's DAG.
    Dag {
        /// Run id, or an unambiguous prefix of one.
        run: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = DagFormat::Text)]
        format: DagFormat,
    },
    /// Print a local-mode step's log.
    Logs {
        /// Run id, or an unambiguous prefix of one.
        run: String,
        /// Step (node) name, as `pipeline show` lists it.
        step: String,
        /// Keep printing new lines until the step reaches a final state.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// List a run's artifacts.
    Artifacts {
        /// Run id, or an unambiguous prefix of one.
        run: String,
    },
    /// Print the value of a step's output (JSON-codec artifacts).
    Get {
        /// Run id, or an unambiguous prefix of one.
        run: String,
        /// Step (node) name; without it, the run's `return_value`.
        step: Option<String>,
        /// Output name (`return_object`, or a `return_values` name); optional when the step
        /// has one output.
        output: Option<String>,
    },
    /// Compare two runs: parameters, step durations, metrics.
    Compare {
        /// The first run (A).
        a: String,
        /// The second run (B).
        b: String,
    },
    /// Manage the step cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Run a recorded run's pipeline again, with its parameters, some edited; the new run
    /// records the one it came from.
    Rerun {
        /// Run id, or an unambiguous prefix of one.
        run: String,
        /// A parameter's new value, `NAME=VALUE` (VALUE as JSON, else as a string); repeatable.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        sets: Vec<String>,
        /// Where its steps run (default: as in the recorded run).
        #[arg(long, value_parser = ["debug", "local", "remote"])]
        mode: Option<String>,
        /// Run `cache = true` steps instead of reading the cache, and overwrite their entries:
        /// all of them, or those of the components named.
        #[arg(long, num_args = 0.., value_name = "COMPONENT")]
        refresh: Option<Vec<String>>,
    },
    /// Take a failed, aborted or crashed run up again under its id: steps that finished with
    /// the same code and inputs are reused, the others run.
    Resume {
        /// Run id, or an unambiguous prefix of one.
        run: String,
    },
    /// Run one step of a recorded (local or remote) run again, alone, on the inputs it had;
    /// print its log and outputs. The recorded run is not touched.
    Spin {
        /// Run id, or an unambiguous prefix of one.
        run: String,
        /// Step (node) name, as `pipeline show` lists it.
        step: String,
        /// Keep the outputs, result and log in this folder (default: a temporary one, removed).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Serve a web page over the run store: runs, live DAGs, logs, metrics, comparisons, and
    /// actions (stop, resume, re-run, spin) for whoever has the token.
    #[cfg(feature = "ui")]
    Ui {
        /// Where to listen; on a loopback address, pages may be read without the token.
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
        bind: std::net::SocketAddr,
        /// The token actions need (default: a new random one, printed).
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
    },
    /// Ask a running run to stop.
    Stop {
        /// Run id, or an unambiguous prefix of one.
        run: String,
        /// Why, recorded with the request.
        #[arg(long, default_value = "stopped from the command line")]
        reason: String,
        /// How the run is marked once its steps have ended (`completed`: unless a step failed).
        #[arg(long, value_parser = ["aborted", "failed", "completed"], default_value = "aborted")]
        mark: String,
    },
}

/// `pipeline cache ...`.
#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Remove cache entries (all, or one component's).
    Clear {
        /// Only the entries of this component.
        #[arg(long, value_name = "NAME")]
        component: Option<String>,
    },
}

fn main() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        let place = info
            .location()
            .map_or_else(String::new, |l| format!(" (at {}:{})", l.file(), l.line()));
        eprintln!("pipeline: internal error: {}{place}", format::one_line(&message));
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage_error(e),
    };
    let ctx = Ctx {
        state: cli.state.clone().unwrap_or_else(pipeline_runtime::state_dir),
        json: cli.json,
    };
    if let Err(e) = run(&ctx, cli.command) {
        if !e.message.is_empty() {
            eprintln!("pipeline: {}", format::one_line(&e.message));
        }
        std::process::exit(e.code);
    }
}

/// Runs one command.
fn run(ctx: &Ctx, command: Command) -> Result<(), CliError> {
    use commands::*;
    match command {
        Command::Runs(args) => runs::runs(ctx, args),
        Command::Show { run, task_type } => show::show(ctx, &run, task_type.as_deref()),
        Command::Dag { run, format } => dag::dag(ctx, &run, format),
        Command::Logs { run, step, follow } => logs::logs(ctx, &run, &step, follow),
        Command::Artifacts { run } => artifacts::artifacts(ctx, &run),
        Command::Get { run, step, output } => get::get(ctx, &run, step.as_deref(), output.as_deref()),
        Command::Compare { a, b } => compare::compare(ctx, &a, &b),
        Command::Cache(CacheCommand::Clear { component }) => cache::clear(ctx, component.as_deref()),
        Command::Stop { run, reason, mark } => {
            let mark = pipeline_runtime::StopMark::parse(&mark).expect("clap checked the value");
            stop::stop(ctx, &run, &reason, mark)
        }
        Command::Rerun {
            run,
            sets,
            mode,
            refresh,
        } => {
            let refresh = match refresh {
                None => pipeline_runtime::CacheRefresh::Off,
                Some(names) if names.is_empty() => pipeline_runtime::CacheRefresh::All,
                Some(names) => pipeline_runtime::CacheRefresh::Components(names),
            };
            rerun::rerun(ctx, &run, &sets, mode.as_deref(), &refresh)
        }
        Command::Spin { run, step, out } => spin::spin(ctx, &run, &step, out),
        Command::Resume { run } => resume::resume(ctx, &run),
        #[cfg(feature = "ui")]
        Command::Ui { bind, token } => {
            let options = pipeline_runtime::ui::UiOptions {
                state: ctx.state.clone(),
                bind,
                token,
            };
            let state = ctx.state.display().to_string();
            pipeline_runtime::ui::serve(options, |addr, token| {
                eprintln!("pipeline ui: serving the runs of {state} at http://{addr}/");
                eprintln!("pipeline ui: to act (stop, resume, re-run, spin), open http://{addr}/login?token={token}");
            })
            .map_err(|e| CliError::failure(format!("cannot serve on {bind}: {e}")))
        }
    }
}

/// Help and version print as usual; any other parse error becomes one line and exit 2.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        std::process::exit(0);
    }
    let rendered = e.render().to_string();
    let lines: Vec<&str> = rendered.lines().map(str::trim).collect();
    // `Usage: pipeline cache [OPTIONS] <COMMAND>` names the command that was being parsed.
    let command = lines
        .iter()
        .find_map(|l| l.strip_prefix("Usage: "))
        .map(|u| {
            u.split(' ')
                .take_while(|w| !w.starts_with(['[', '<']))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "pipeline".to_string());
    let message = if matches!(
        e.kind(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand
    ) {
        // The help that clap would print lists the subcommands: name them.
        let subcommands: Vec<&str> = lines
            .iter()
            .skip_while(|l| **l != "Commands:")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_whitespace().next())
            .filter(|c| *c != "help")
            .collect();
        format!("`{command}` needs a command ({})", subcommands.join(", "))
    } else {
        // clap's message is a few lines (the error, its details, tips), then the usage: keep the
        // lines before the usage, joined.
        let joined = lines
            .iter()
            .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
            .filter(|l| !l.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        joined.strip_prefix("error: ").unwrap_or(&joined).to_string()
    };
    eprintln!("pipeline: {message}; see `{command} --help`");
    std::process::exit(EXIT_USAGE);
}
