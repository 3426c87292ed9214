//! The Lambda entry point: build the handler once per cold start, then serve events from the Lambda runtime API
//! until the runtime stops the process. The binary runs this when started by the runtime (`AWS_LAMBDA_RUNTIME_API`
//! set, no arguments); a build without default features (the Lambda's, see `Cargo.toml`) does nothing else.

use std::process::ExitCode;

/// Whether the process was started by the Lambda runtime: `AWS_LAMBDA_RUNTIME_API` set and no arguments.
pub fn started_by_runtime() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() && std::env::args_os().len() == 1
}

/// Logs go to stderr: human-readable by default, JSON when `LOG_FORMAT=json`; level from `RUST_LOG` (default warn).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().with_current_span(false).init();
    } else {
        builder.with_target(false).init();
    }
}

/// Serve Lambda events with the handler built from the environment.
pub async fn serve() -> ExitCode {
    let handler = match crate::handler::Handler::from_env().await {
        Ok(h) => std::sync::Arc::new(h),
        Err(e) => {
            tracing::error!(error = %e, "cold start failed");
            return ExitCode::FAILURE;
        }
    };
    let service = lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let handler = handler.clone();
            async move {
                let deadline = invocation_deadline(event.context.deadline);
                handler
                    .handle_event_until(&event.payload, &event.context.request_id, deadline)
                    .await
                    .map_err(lambda_runtime::Error::from)
            }
        },
    );
    match lambda_runtime::run(service).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}

/// The invocation's deadline (milliseconds since the epoch, from the runtime) as an instant of this process;
/// `None` when it is not in the future (emulators may send none, or 0): then no deadline is applied.
pub fn invocation_deadline(deadline_ms: u64) -> Option<std::time::Instant> {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(deadline_ms);
    let left = at.duration_since(std::time::SystemTime::now()).ok()?;
    Some(std::time::Instant::now() + left)
}

/// The runtime the binary runs on: two worker threads (a Lambda function has at most a few vCPUs; the parser runs
/// on the blocking pool).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}
