//! `triage model import`: copy a sentence-transformers model directory into
//! `models/`, converting the weights' storage dtype (f32 → f16 for the shipped model).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::{sha256_file, EmbedError, ModelManifest, MANIFEST_FILE};

/// Files copied unchanged when present.
const COPY_FILES: [&str; 5] = [
    "config.json",
    "tokenizer.json",
    "LICENSE",
    "NOTICE",
    "vocab.txt",
];

#[derive(Debug, Clone)]
pub struct ImportReport {
    pub out_dir: PathBuf,
    pub source_sha256: String,
    pub weights_sha256: String,
    pub tensors: usize,
    pub converted: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

pub fn parse_dtype(s: &str) -> Result<DType, String> {
    match s.to_ascii_lowercase().as_str() {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        other => Err(format!("unsupported dtype `{other}` (f32, f16, bf16)")),
    }
}

/// Imports `src` into `out`: copies config/tokenizer/licence files, converts every
/// floating-point tensor of `model.safetensors` to `dtype`, and writes a manifest
/// with the model id and both hashes.
pub fn import_model(
    src: &Path,
    out: &Path,
    dtype: DType,
    id: &str,
) -> Result<ImportReport, EmbedError> {
    let bad = |message: String| EmbedError::BadModel {
        model: src.display().to_string(),
        message,
    };
    let weights = src.join("model.safetensors");
    if !weights.is_file() {
        return Err(bad("model.safetensors not found".into()));
    }
    for required in ["config.json", "tokenizer.json"] {
        if !src.join(required).is_file() {
            return Err(bad(format!("{required} not found")));
        }
    }
    std::fs::create_dir_all(out)?;
    for name in COPY_FILES {
        let from = src.join(name);
        if from.is_file() {
            std::fs::copy(&from, out.join(name))?;
        }
    }
    let source_sha256 = sha256_file(&weights)?;
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu)?;
    let mut converted = 0;
    let mut result: HashMap<String, Tensor> = HashMap::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = if t.dtype().is_float() && t.dtype() != dtype {
            converted += 1;
            t.to_dtype(dtype)?
        } else {
            t
        };
        result.insert(name, t);
    }
    let target = out.join("model.safetensors");
    let tmp = out.join("model.safetensors.tmp");
    candle_core::safetensors::save(&result, &tmp)?;
    std::fs::rename(&tmp, &target)?;
    let weights_sha256 = sha256_file(&target)?;
    let manifest = ModelManifest {
        id: id.to_string(),
        dtype: format!("{dtype:?}").to_lowercase(),
        weights_sha256: weights_sha256.clone(),
        source_sha256: Some(source_sha256.clone()),
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| bad(e.to_string()))?;
    std::fs::write(out.join(MANIFEST_FILE), json)?;
    Ok(ImportReport {
        out_dir: out.to_path_buf(),
        source_sha256,
        weights_sha256,
        tensors: result.len(),
        converted,
        bytes_before: std::fs::metadata(&weights)?.len(),
        bytes_after: std::fs::metadata(&target)?.len(),
    })
}
