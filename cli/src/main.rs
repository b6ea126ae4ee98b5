//! `idunno`: one-shot commands to an IDunno cluster. Errors are one sentence and exit 1.

mod args;
mod cluster;
mod events;
mod files;
mod fsck;
mod infer;
mod jobs;
mod jobs_view;
mod local;
mod local_identity;
mod local_secure;
mod ml;
mod output;
mod profile;
mod replication;
mod results;
mod routes;
mod secure;
mod subcommands;
mod workers;

use clap::{CommandFactory, FromArgMatches};

fn main() {
    let matches = args::Cli::command().get_matches();
    let cli = match args::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli, &matches)) {
        output::warn(&format!("error: {e:#}"));
        std::process::exit(1);
    }
}

/// Runs the commands that need no cluster (completions, profiles); hands the others back.
fn local_commands(
    cli: args::Cli,
    matches: &clap::ArgMatches,
    out: &output::Output,
) -> anyhow::Result<Option<args::Cli>> {
    match cli.command {
        args::Command::Completions { shell } => {
            let mut cmd = args::Cli::command();
            clap_complete::generate(shell, &mut cmd, "idunno", &mut std::io::stdout());
            Ok(None)
        }
        args::Command::Profile(cmd) => profile::run(cmd, &cli.bus, matches, out).map(|()| None),
        _ => Ok(Some(cli)),
    }
}

async fn run(cli: args::Cli, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let out = output::Output::new(cli.json);
    let cli = match local_commands(cli, matches, &out)? {
        Some(cli) => cli,
        None => return Ok(()),
    };
    let bus = match profile::chosen(cli.profile.as_deref())? {
        Some(p) => p.apply(cli.bus, matches),
        None => cli.bus,
    };
    let cli = args::Cli {
        bus: local_identity::with_local_identity(bus),
        command: cli.command.original(),
        ..cli
    };
    match cli.command {
        args::Command::Local(cmd) => local::run(cmd, &cli.bus, &out).await,
        args::Command::Secure(cmd) => secure::run(cmd, &out),
        args::Command::Cluster(cmd) => replication::run(cmd, &cli.bus, &out).await,
        cmd @ (args::Command::Put { .. }
        | args::Command::Get { .. }
        | args::Command::Putdir { .. }
        | args::Command::Deldir { .. }
        | args::Command::Delete { .. }
        | args::Command::Ls { .. }
        | args::Command::GetVersions { .. }
        | args::Command::Store { .. }) => files::run(cmd, &cli.bus, &out).await,
        cmd @ (args::Command::Dataset(_)
        | args::Command::Datasets
        | args::Command::Model(_)
        | args::Command::Models { .. }) => ml::run(cmd, &cli.bus, &out).await,
        args::Command::Fsck {
            rebuild,
            replication,
        } => fsck::run(rebuild, replication, &cli.bus, &out).await,
        cmd @ args::Command::Infer { .. } => infer::run(cmd, &cli.bus, &out).await,
        args::Command::Results { job, follow } => {
            let client = cli.bus.connect_once("idunno-cli").await?;
            results::run(&client, &job, follow, &out).await
        }
        args::Command::Events { kind, job, count } => {
            let client = cli.bus.connect_once("idunno-cli").await?;
            events::run(&client, kind, job, count).await
        }
        cmd @ (args::Command::Train { .. }
        | args::Command::Serve { .. }
        | args::Command::JobStats { .. }
        | args::Command::Batch { .. }
        | args::Command::Assignments
        | args::Command::Qps { .. }
        | args::Command::Workers
        | args::Command::Completed(_)
        | args::Command::Jobs(_)
        | args::Command::Job { .. }
        | args::Command::Cancel { .. }
        | args::Command::Watch { .. }) => jobs::run(cmd, &cli.bus, &out).await,
        other => cluster::run(other, &cli.bus, &out).await,
    }
}
