//! `triage model import`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Import a sentence-transformers model directory, converting the weights' dtype.
    Import(ImportArgs),
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Directory with config.json, tokenizer.json and model.safetensors.
    pub src: PathBuf,
    /// Output directory.
    #[arg(long, default_value = triage::embed::DEFAULT_MODEL_DIR)]
    pub out: PathBuf,
    /// Storage dtype of the imported weights (f32, f16, bf16); compute stays f32.
    #[arg(long, default_value = "f16")]
    pub dtype: String,
    /// Canonical model id recorded in the manifest.
    #[arg(long, default_value = "sentence-transformers/all-MiniLM-L6-v2")]
    pub id: String,
}

pub fn run(cmd: ModelCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ModelCommand::Import(a) => {
            let dtype = triage::embed::import::parse_dtype(&a.dtype).map_err(anyhow::Error::msg)?;
            let r = triage::embed::import_model(&a.src, &a.out, dtype, &a.id)?;
            println!("imported {} -> {}", a.src.display(), r.out_dir.display());
            println!(
                "  tensors          {} ({} converted to {})",
                r.tensors, r.converted, a.dtype
            );
            println!("  source sha256    {}", r.source_sha256);
            println!("  weights sha256   {}", r.weights_sha256);
            println!(
                "  size             {} -> {} bytes",
                r.bytes_before, r.bytes_after
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
