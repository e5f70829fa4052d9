//! Command-line parsing and the commands themselves. The only place that prints.

mod bench;
mod cache;
mod fake_upstream;
mod learn;
mod model;
mod outcomes;
mod prompt;
mod report;
mod route;
mod serve;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use triage::config::Config;

#[derive(Parser, Debug)]
#[command(
    name = "triage",
    version,
    about = "Routes LLM requests to the cheapest model that can handle them"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Config file (TOML). Without it, built-in defaults are used.
    #[arg(long, short = 'c', global = true, env = "TRIAGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Inference threads (default: all cores).
    #[arg(long, global = true, env = "TRIAGE_THREADS")]
    pub threads: Option<usize>,
    /// Inference device: cpu, cuda, cuda:N, metal (overrides embed.device).
    #[arg(long, global = true)]
    pub device: Option<String>,
    /// Data directory (decision log, caches); overrides `data_dir` and TRIAGE_DATA_DIR.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Log filter, e.g. `info`, `triage=debug` (also RUST_LOG).
    #[arg(long, global = true, default_value = "warn")]
    pub log: String,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the routing decision for each text.
    Route(route::RouteArgs),
    /// Train the tier head on labeled requests.
    Train(train::TrainArgs),
    /// Evaluate the tier head on a labeled JSONL file.
    Eval(train::EvalArgs),
    /// Run the sidecar: an OpenAI-compatible proxy that routes each request.
    Serve(serve::ServeArgs),
    /// Spend, savings, cache hit rate and token use from the decision log.
    Report(report::ReportArgs),
    /// Logged requests that feedback says were misrouted.
    #[command(subcommand)]
    Misroutes(learn::MisroutesCommand),
    /// Retrain the head with logged corrections, behind a quality gate.
    Retrain(learn::RetrainArgs),
    /// Head versions: list, or install one (roll back).
    #[command(subcommand)]
    Head(learn::HeadCommand),
    /// Audit a system prompt: tokens, duplicates, restated defaults, cost, ablation.
    #[command(subcommand)]
    Prompt(prompt::PromptCommand),
    /// Routing latency and throughput (in-process, or --url against a server).
    Bench(bench::BenchArgs),
    /// Semantic cache tools.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Manage embedding models.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// A zero-latency OpenAI-compatible upstream, for measuring triage's overhead.
    #[command(hide = true)]
    FakeUpstream(fake_upstream::FakeUpstreamArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.global.log);
    if let Some(n) = cli.global.threads {
        set_threads(n);
    }
    let result = match cli.command {
        Command::Route(a) => route::run(&cli.global, a),
        Command::Train(a) => train::run_train(&cli.global, a),
        Command::Eval(a) => train::run_eval(&cli.global, a),
        Command::Serve(a) => serve::run(&cli.global, a),
        Command::Model(c) => model::run(c),
        Command::Cache(c) => cache::run(&cli.global, c),
        Command::Report(a) => report::run(&cli.global, a),
        Command::Misroutes(c) => learn::run_export(&cli.global, c),
        Command::Retrain(a) => learn::run_retrain(&cli.global, a),
        Command::Head(c) => learn::run_head(&cli.global, c),
        Command::Prompt(c) => prompt::run(&cli.global, c),
        Command::Bench(a) => bench::run(&cli.global, a),
        Command::FakeUpstream(a) => fake_upstream::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: many errors already quote their
/// source in their own message ("cannot read config file x: No such file").
fn describe(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Inference threads: candle's gemm and the rayon pool read these before first use.
fn set_threads(n: usize) {
    let n = n.max(1).to_string();
    std::env::set_var("RAYON_NUM_THREADS", &n);
    std::env::set_var("CANDLE_NUM_THREADS", &n);
}

/// The config file, or defaults; `--device` overrides the file.
pub fn load_config(g: &Global) -> anyhow::Result<Config> {
    let mut cfg = match &g.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(d) = &g.device {
        cfg.embed.device = d.clone();
        triage::embed::parse_device(d).map_err(|e| anyhow::anyhow!("--device: {e}"))?;
    }
    Ok(cfg)
}

/// `--data-dir`, else `TRIAGE_DATA_DIR`, else the config's `data_dir`, else ./triage-data.
pub fn data_dir(g: &Global, cfg: &Config) -> PathBuf {
    if let Some(d) = &g.data_dir {
        return d.clone();
    }
    if let Ok(d) = std::env::var("TRIAGE_DATA_DIR") {
        if !d.is_empty() {
            return PathBuf::from(d);
        }
    }
    match &cfg.data_dir {
        Some(d) => cfg.resolve(&d.to_string_lossy()),
        None => PathBuf::from("triage-data"),
    }
}
