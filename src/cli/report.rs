//! `triage report`.

use std::process::ExitCode;

use clap::Args;
use triage::ledger::report::{build, parse_duration, GroupBy};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Window to report on, back from now: 90m, 24h, 7d.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Group by model, endpoint, tier or hour.
    #[arg(long, default_value = "model")]
    pub by: String,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &super::Global, a: ReportArgs) -> anyhow::Result<ExitCode> {
    let cfg = super::load_config(g)?;
    let by: GroupBy = a.by.parse().map_err(anyhow::Error::msg)?;
    let window = parse_duration(&a.since).map_err(anyhow::Error::msg)?;
    let db = triage::ledger::log::db_path(&super::data_dir(g, &cfg));
    if !db.exists() {
        anyhow::bail!(
            "no decision log at {} (run `triage serve` first, or pass --data-dir)",
            db.display()
        );
    }
    let now = chrono::Utc::now().timestamp_millis();
    let report = build(&db, now - window.as_millis() as i64, now + 1, by)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("triage report, last {} ({})", a.since, db.display());
        print!("{}", report.render(&a.by));
    }
    Ok(ExitCode::SUCCESS)
}
