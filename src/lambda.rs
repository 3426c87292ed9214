//! The Lambda entry point: build the handler once per cold start, then serve events from the Lambda runtime API
//! until the runtime stops the process. The binary runs this when started by the runtime (`AWS_LAMBDA_RUNTIME_API`
//! set, no arguments); a build without default features (the Lambda's, see `Cargo.toml`) does nothing else.

use std::process::ExitCode;

use tracing::Instrument;

/// Whether the process was started by the Lambda runtime: `AWS_LAMBDA_RUNTIME_API` set and no arguments.
pub fn started_by_runtime() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() && std::env::args_os().len() == 1
}

/// Logs go to stderr. Level: `RUST_LOG` when set (a tracing filter), else the function's `AWS_LAMBDA_LOG_LEVEL`
/// (Lambda sets it from `LoggingConfig.ApplicationLogLevel`), else warn. Format: JSON when `LOG_FORMAT=json` or
/// Lambda's `AWS_LAMBDA_LOG_FORMAT=JSON` (`LoggingConfig.LogFormat`), human-readable otherwise.
pub fn init_tracing() {
    init_tracing_with(&LogOverrides::default());
}

/// What the command line says about logging (`-v`, `-q`, `--log-format`); it wins over the environment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LogOverrides {
    /// A tracing filter directive instead of `RUST_LOG`'s.
    pub filter: Option<String>,
    /// One JSON object per line (true) or text (false), instead of `LOG_FORMAT`'s.
    pub json: Option<bool>,
}

impl LogOverrides {
    /// From `-v` (counted: info, debug, trace), `-q` (errors only) and `--log-format text|json`.
    pub fn from_flags(verbose: u8, quiet: bool, format: Option<&str>) -> Self {
        let filter = match (quiet, verbose) {
            (true, _) => Some("error"),
            (false, 0) => None,
            (false, 1) => Some("info"),
            (false, 2) => Some("debug"),
            (false, _) => Some("trace"),
        };
        LogOverrides {
            filter: filter.map(str::to_string),
            json: format.map(|f| f.eq_ignore_ascii_case("json")),
        }
    }
}

/// [`init_tracing`], with the command line's overrides.
pub fn init_tracing_with(overrides: &LogOverrides) {
    let var = |name| std::env::var(name).ok();
    let mut settings = LogSettings::from_vars(
        var("RUST_LOG").as_deref(),
        var("LOG_FORMAT").as_deref(),
        var("AWS_LAMBDA_LOG_LEVEL").as_deref(),
        var("AWS_LAMBDA_LOG_FORMAT").as_deref(),
    );
    if let Some(filter) = &overrides.filter {
        settings.filter.clone_from(filter);
    }
    if let Some(json) = overrides.json {
        settings.json = json;
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let colour = colour_wanted(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if settings.json {
        // The current span's fields: an invocation's lines carry its `request_id` (see [`serve`]).
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.with_target(false).init();
    }
}

/// Whether log lines may carry ANSI colour: only on a terminal, and never when `NO_COLOR` is set to anything but
/// the empty string (<https://no-color.org>).
pub fn colour_wanted(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The log filter and format chosen from the environment (see [`init_tracing`]).
#[derive(Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// A tracing filter directive.
    pub filter: String,
    /// One JSON object per line.
    pub json: bool,
}

impl LogSettings {
    /// From `RUST_LOG`, `LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL` and `AWS_LAMBDA_LOG_FORMAT`. Lambda's levels are
    /// TRACE, DEBUG, INFO, WARN, ERROR and FATAL; tracing has no FATAL, so it reads as error. An unknown level
    /// reads as warn rather than switching logging off.
    pub fn from_vars(
        rust_log: Option<&str>,
        log_format: Option<&str>,
        lambda_level: Option<&str>,
        lambda_format: Option<&str>,
    ) -> Self {
        let lambda_filter = lambda_level.map(|level| {
            match level.trim().to_ascii_uppercase().as_str() {
                "TRACE" => "trace",
                "DEBUG" => "debug",
                "INFO" => "info",
                "ERROR" | "FATAL" => "error",
                _ => "warn",
            }
            .to_string()
        });
        let filter = rust_log
            .filter(|f| !f.trim().is_empty())
            .map(str::to_string)
            .or(lambda_filter)
            .unwrap_or_else(|| "warn".to_string());
        let json = log_format.is_some_and(|f| f.eq_ignore_ascii_case("json"))
            || lambda_format.is_some_and(|f| f.eq_ignore_ascii_case("json"));
        Self { filter, json }
    }
}

/// Serve Lambda events with the handler built from the environment.
pub async fn serve() -> ExitCode {
    let handler = match crate::handler::Handler::from_env().await {
        Ok(h) => std::sync::Arc::new(h),
        Err(e) => {
            tracing::error!(error = %e, "cold start failed");
            return refuse_everything(e.to_string()).await;
        }
    };
    let service = lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let handler = handler.clone();
            let span = tracing::info_span!("invocation", request_id = %event.context.request_id);
            async move {
                let deadline = invocation_deadline(event.context.deadline);
                handler
                    .handle_event_until(&event.payload, &event.context.request_id, deadline)
                    .await
                    .map_err(lambda_runtime::Error::from)
            }
            .instrument(span)
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

/// After a failed cold start: answer CloudFormation's custom resource requests FAILED with the reason at once (a
/// deploy would otherwise wait for its timeout), fail every other invocation with it (SQS retries the messages).
async fn refuse_everything(reason: String) -> ExitCode {
    let service = lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let reason = reason.clone();
            async move {
                if let Some(request) = crate::custom_resource::Request::parse(&event.payload) {
                    let failed = Err(format!("the loader cannot start: {reason}"));
                    return crate::custom_resource::answer(&request, &failed)
                        .await
                        .map_err(lambda_runtime::Error::from);
                }
                Err(lambda_runtime::Error::from(format!(
                    "the loader cannot start: {reason}"
                )))
            }
        },
    );
    let _ = lambda_runtime::run(service).await;
    ExitCode::FAILURE
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

#[cfg(test)]
mod tests {
    use super::{LogOverrides, LogSettings};

    #[test]
    fn verbose_and_quiet_flags_set_the_level_and_the_format_flag_the_format() {
        let level = |v, q| LogOverrides::from_flags(v, q, None).filter;
        assert_eq!(level(0, false), None);
        assert_eq!(level(1, false).as_deref(), Some("info"));
        assert_eq!(level(2, false).as_deref(), Some("debug"));
        assert_eq!(level(5, false).as_deref(), Some("trace"));
        assert_eq!(level(0, true).as_deref(), Some("error"));
        assert_eq!(
            LogOverrides::from_flags(0, false, Some("json")).json,
            Some(true)
        );
        assert_eq!(
            LogOverrides::from_flags(0, false, Some("text")).json,
            Some(false)
        );
        assert_eq!(LogOverrides::from_flags(0, false, None).json, None);
    }

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        use std::ffi::OsStr;
        assert!(super::colour_wanted(true, None));
        assert!(
            super::colour_wanted(true, Some(OsStr::new(""))),
            "an empty NO_COLOR is unset"
        );
        assert!(!super::colour_wanted(true, Some(OsStr::new("1"))));
        assert!(!super::colour_wanted(false, None));
    }

    fn settings(vars: [Option<&str>; 4]) -> LogSettings {
        LogSettings::from_vars(vars[0], vars[1], vars[2], vars[3])
    }

    #[test]
    fn lambda_logging_config_reaches_the_code() {
        let s = settings([None, None, Some("DEBUG"), Some("JSON")]);
        assert_eq!(
            s,
            LogSettings {
                filter: "debug".into(),
                json: true
            }
        );
        assert_eq!(
            settings([None, None, Some("FATAL"), Some("Text")]).filter,
            "error"
        );
        assert!(!settings([None, None, Some("INFO"), Some("Text")]).json);
    }

    #[test]
    fn rust_log_wins_over_lambda_and_the_default_is_warn() {
        let s = settings([Some("healthetl=trace"), None, Some("ERROR"), None]);
        assert_eq!(s.filter, "healthetl=trace");
        assert_eq!(
            settings([None, None, None, None]),
            LogSettings {
                filter: "warn".into(),
                json: false
            }
        );
        assert_eq!(
            settings([Some(" "), None, Some("bogus"), None]).filter,
            "warn"
        );
        assert!(settings([None, Some("json"), None, None]).json);
    }
}
