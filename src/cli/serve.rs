//! `triage serve`: the sidecar.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use triage::cache::SemanticCache;
use triage::embed::EmbedPool;
use triage::engine::Engine;
use triage::ledger::{DecisionLog, Ledger};
use triage::pipeline::Pipeline;
use triage::server::{serve, AppState};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (overrides server.listen).
    #[arg(long)]
    pub listen: Option<String>,
    /// Answer every request with its routing decision instead of calling upstream.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(g: &super::Global, a: ServeArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut cfg = super::load_config(g)?;
    if let Some(l) = a.listen {
        cfg.server.listen = l;
        cfg.validate(cfg.source.as_deref().unwrap_or("--listen".as_ref()))?;
    }
    let data_dir = super::data_dir(g, &cfg);
    let config_path = g.config.clone();
    let engine = Engine::load(&cfg)?;
    engine.warm_up();
    // Loading converts and packs the weights through large temporary buffers; hand
    // their pages back instead of keeping them for allocations that never come.
    // SAFETY: mimalloc is the global allocator (main.rs); collecting is always safe.
    unsafe { libmimalloc_sys::mi_collect(true) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("triage-io")
        .build()?;
    rt.block_on(async move {
        let pool = EmbedPool::start(
            engine.embedder.clone(),
            cfg.embed.workers,
            cfg.embed.max_batch,
            cfg.embed.queue_capacity,
        )
        .with_memo(cfg.embed.memo_entries);
        let cache = if cfg.cache.enabled {
            let dir = data_dir.join("cache");
            let cache = SemanticCache::open(cfg.cache.clone(), &dir)?;
            tracing::info!(entries = cache.len(), dir = %dir.display(), "cache loaded");
            Some(cache)
        } else {
            None
        };
        if let Some(c) = cache.clone() {
            let every = Duration::from_secs(cfg.cache.snapshot_interval_secs.max(1));
            std::thread::Builder::new()
                .name("triage-cache-snapshot".into())
                .spawn(move || loop {
                    std::thread::sleep(every);
                    c.expire();
                    if let Err(e) = c.snapshot() {
                        tracing::error!(error = %e, "cache snapshot failed");
                    }
                })?;
        }
        let log = if cfg.ledger.enabled {
            let path = triage::ledger::log::db_path(&data_dir);
            Some(DecisionLog::start(&path, cfg.ledger.queue_capacity, cfg.ledger.retention_days)?)
        } else {
            None
        };
        let ledger = Ledger::new(&cfg, log, None);
        let cfg = Arc::new(cfg);
        let pipeline = Arc::new(
            Pipeline::new(cfg.clone(), pool, engine.head.clone(), a.dry_run)
                .map_err(anyhow::Error::msg)?
                .with_cache(cache.clone())
                .with_ledger(Some(ledger.clone())),
        );
        let state = Arc::new(
            AppState::new(pipeline)
                .map_err(anyhow::Error::msg)?
                .with_config_path(config_path),
        );
        #[cfg(unix)]
        {
            let st = state.clone();
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let st = st.clone();
                    match tokio::task::spawn_blocking(move || st.reload_from_disk()).await {
                        Ok(Ok(_)) => eprintln!("triage: reloaded config and head (SIGHUP)"),
                        Ok(Err(e)) => eprintln!("triage: reload failed, keeping the running config and head: {e}"),
                        Err(e) => eprintln!("triage: reload failed: {e}"),
                    }
                }
            });
        }
        let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.server.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, dry_run = a.dry_run, ready_ms = started.elapsed().as_millis() as u64, "triage listening");
        eprintln!(
            "triage listening on http://{addr}{} (ready in {} ms)",
            if a.dry_run { " [dry run: no upstream calls]" } else { "" },
            started.elapsed().as_millis()
        );
        serve(
            listener,
            state,
            shutdown_signal(),
            Duration::from_secs(cfg.server.shutdown_grace_secs),
        )
        .await?;
        if let Some(l) = &ledger.log {
            l.flush(Duration::from_secs(5));
        }
        if let Some(c) = &cache {
            if !c.flush(Duration::from_secs(5)) {
                tracing::warn!("cache writer did not finish within 5 s; the snapshot misses its queue");
            }
            if let Err(e) = c.snapshot() {
                tracing::error!(error = %e, "cache snapshot at shutdown failed");
            }
        }
        eprintln!("triage stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining in-flight requests");
}
