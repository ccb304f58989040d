//! Serving: the accept loop with its connection limits and header-read
//! timeout, graceful shutdown on SIGTERM/SIGINT (spend written last), and
//! the background tasks a served gateway runs.

use super::app;
use crate::gateway::state::Gateway;
use std::sync::Arc;

/// How long a graceful shutdown waits for requests in flight (a long stream
/// included) before it stops anyway and writes the spend.
pub(crate) const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a client may take to send a request's headers, and how long a
/// kept-alive connection may wait for its next request (hyper applies the
/// header-read timeout to both).
pub(crate) const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Connections served at once; more are closed as they arrive, so a flood
/// of idle connections cannot exhaust the process's file descriptors.
pub(crate) const MAX_CONNECTIONS: usize = 10_000;

/// The most a request's headers may hold by default (64 KiB: far above what
/// clients send, far below what lets a trickle of headers hold memory).
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The pause after a failed `accept` (out of file descriptors).
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// Serves until SIGTERM or SIGINT; then stops accepting, lets requests in
/// flight finish (at most `SHUTDOWN_GRACE`) and writes the queued spend.
pub async fn serve(gw: Arc<Gateway>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    serve_until(gw, listener, stop_signal()).await
}

impl ServeLimits {
    /// The config's `general_settings.header_read_timeout_secs` and
    /// `max_connections`, `max_header_size_kb`, else the defaults.
    pub fn from_config(config: &crate::gateway::Config) -> ServeLimits {
        let g = &config.general_settings;
        let d = ServeLimits::default();
        ServeLimits {
            header_read_timeout: g
                .header_read_timeout_secs
                .map(std::time::Duration::from_secs_f64)
                .unwrap_or(d.header_read_timeout),
            max_connections: g.max_connections.unwrap_or(d.max_connections),
            max_header_bytes: g.max_header_size_kb.map(|kb| kb * 1024).unwrap_or(d.max_header_bytes),
        }
    }
}

/// Limits on the connections a served gateway accepts.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// How long a client may take to send a request's headers, and a
    /// kept-alive connection may idle before its next request.
    pub header_read_timeout: std::time::Duration,
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: usize,
    /// The most an HTTP/1 request's headers may hold; more is a 431.
    pub max_header_bytes: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            max_header_bytes: MAX_HEADER_BYTES,
        }
    }
}

/// [`serve`] with the stop condition given (tests pass a channel).
pub async fn serve_until(
    gw: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = ServeLimits::from_config(&gw.config);
    serve_with(gw, listener, stop, limits).await
}

/// [`serve_until`] with the connection limits given.
pub async fn serve_with(
    gw: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    limits: ServeLimits,
) -> std::io::Result<()> {
    spawn_periodic_tasks(gw.clone());
    spawn_spend_writer(gw.clone());
    let (stopped_tx, mut stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        let _ = stopped_tx.send(true);
    });
    // Our own accept loop rather than `axum::serve`: that sets hyper no
    // timer, so a client that trickles its headers (or idles between
    // requests) holds its connection and a file descriptor forever.
    let mut http = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    http.http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    http.http2().timer(hyper_util::rt::TokioTimer::new());
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let router = app(gw.clone());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.wait_for(|s| *s) => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors, most likely: wait a moment for
                // connections to close instead of spinning on accept.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(limit = limits.max_connections, "connection limit reached; closing a new connection");
            continue;
        };
        // Streamed chunks must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let conn = http.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tcp), service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    let result = tokio::select! {
        () = graceful.shutdown() => Ok(()),
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!(grace_secs = SHUTDOWN_GRACE.as_secs(), "requests still in flight after the shutdown grace; stopping anyway");
            Ok(())
        }
    };
    write_out(&gw).await;
    result
}

/// The last of a graceful shutdown, once no request is in flight: the
/// queued spend is written and the finished spans are sent. A gateway the
/// harness restarts in-process stops through here too.
pub(crate) async fn write_out(gw: &Gateway) {
    if gw.bugs.no_spend_write_at_shutdown {
        return;
    }
    match gw.flush_spend().await {
        Ok(r) => tracing::info!(written = r.written, "spend written at shutdown"),
        Err(e) => tracing::error!(error = %e, pending = gw.spend.len(), "spend could not be written at shutdown"),
    }
    // The spend Redis has not taken yet (bounded per call; Redis down, the
    // durable store above has it all the same).
    if let Some(shared) = &gw.shared_limits {
        shared.write_spend().await;
        let left = shared.unapplied_spend();
        if left > 0.0 {
            tracing::warn!(
                usd = left,
                "spend not added to the fleet's shared totals at shutdown (Redis did not take it)"
            );
        }
    }
    // Every span of the requests just finished, each batch within the
    // export timeout; a down collector delays the exit by two timeouts at
    // most (the flush stops at its first failed batch).
    if let Some(s) = gw.flush_traces().await {
        tracing::info!(
            exported = s.exported,
            dropped = s.dropped,
            failed = s.failed,
            not_sent = s.queued,
            "traces flushed at shutdown"
        );
    }
}

/// SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
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
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("stop signal received; finishing requests in flight");
}

/// Writes queued spend every `proxy_batch_write_at` seconds while the
/// gateway lives.
fn spawn_spend_writer(gw: Arc<Gateway>) {
    let every = gw.spend_flush_interval();
    let weak = Arc::downgrade(&gw);
    drop(gw);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(gw) = weak.upgrade() else { break };
            // Also where a shared database's changes by other instances
            // reach this one (`Gateway::sync_store`).
            if let Err(e) = gw.sync_store().await {
                tracing::error!(error = %e, pending = gw.spend.len(), "spend write or database sync failed; the rows stay queued");
            }
        }
    });
}

/// In production the periodic reload runs on a real ticker; the harness
/// calls `run_due_tasks` after moving its manual clock instead.
pub(crate) fn spawn_periodic_tasks(gw: Arc<Gateway>) {
    if gw.config.general_settings.model_cost_map_reload_interval_secs.is_none() {
        return;
    }
    let weak = Arc::downgrade(&gw);
    drop(gw);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            match weak.upgrade() {
                Some(gw) => gw.run_due_tasks().await,
                None => break,
            }
        }
    });
}
