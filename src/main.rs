#![forbid(unsafe_code)]
//! The `postmortem` command: `serve` runs the gateway, `run` runs the
//! regression scenarios, `record`/`replay`/`import`/`lint` work with
//! cassettes of real provider traffic, `bench` loads a gateway, `soak` runs a bounded soak against one.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: under load glibc's malloc and free
/// were about an eighth of the gateway's CPU (`malloc_consolidate`,
/// `unlink_chunk`), and the memory the cost map's load used briefly stayed
/// resident after it. Measured in BENCHMARKS.md ("Tenth run").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "postmortem", version, about = "An LLM gateway and the regression harness that replays its incidents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a LiteLLM-compatible config.yaml.
    Serve {
        /// Path to the config file (LiteLLM `config.yaml` subset).
        #[arg(long, short)]
        config: PathBuf,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Port to bind (0 picks a free one and prints it).
        #[arg(long, default_value_t = 4000)]
        port: u16,
    },
    /// Run scenarios (default: every file under scenarios/) against mock providers.
    Run(postmortem::cli::RunArgs),
    /// Record real provider traffic through a reverse proxy into a cassette (secrets redacted).
    Record(postmortem::cli::replay::RecordArgs),
    /// Replay cassettes through the gateway against mock providers; non-zero exit on any regression.
    Replay(postmortem::cli::replay::ReplayArgs),
    /// Convert a VCR.py cassette, a HAR file or WireMock mappings into a postmortem cassette.
    Import(postmortem::cli::replay::ImportArgs),
    /// Check files for secrets and scenario/cassette files for errors (default: fixtures/ scenarios/ snapshots/).
    Lint(postmortem::cli::replay::LintArgs),
    /// List the contracts every exchange is checked against.
    Contracts,
    /// Load a gateway (ours by default) beside direct and an nginx floor; latency, throughput, CPU.
    Bench(postmortem::cli::bench::BenchArgs),
    /// Soak a gateway: a million mixed requests with upstream faults, client-cache and key churn; no unexpected error, no hang, flat RSS.
    Soak(postmortem::cli::soak::SoakArgs),
    /// The bench's fast upstream (started by `bench`).
    #[command(hide = true)]
    BenchUpstream(postmortem::cli::bench::UpstreamArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve { config, host, port } => {
            postmortem::cli::init_tracing();
            rt.block_on(postmortem::cli::serve(&config, &host, port))
        }
        Command::Run(args) => rt.block_on(postmortem::cli::run(args)),
        Command::Record(args) => {
            postmortem::cli::init_tracing();
            rt.block_on(postmortem::cli::replay::record(args))
        }
        Command::Replay(args) => rt.block_on(postmortem::cli::replay::replay(args)),
        Command::Import(args) => postmortem::cli::replay::import(args),
        Command::Lint(args) => postmortem::cli::replay::lint(args),
        Command::Contracts => postmortem::cli::list_contracts(),
        Command::Bench(args) => rt.block_on(postmortem::cli::bench::bench(args)),
        Command::Soak(args) => rt.block_on(postmortem::cli::soak::soak(args)),
        Command::BenchUpstream(args) => rt.block_on(postmortem::cli::bench::upstream(args)),
    }
}
