//! Command-line and environment configuration shared by every Slipway binary.
//!
//! Each binary `#[command(flatten)]`s [`CommonArgs`] into its own clap struct; every flag
//! also reads a `SLIPWAY_*` environment variable. Connection URLs may carry passwords, so they
//! are held in [`SecretUrl`], whose `Debug` and `Display` never show the password.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use clap::{Args, ValueEnum};

/// Flags every binary takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Postgres URL, e.g. postgres://slipway:secret@db:5432/slipway.
    #[arg(long = "database-url", env = "SLIPWAY_DATABASE_URL")]
    pub database_url: SecretUrl,

    /// Redis URL.
    #[arg(
        long = "redis-url",
        env = "SLIPWAY_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: SecretUrl,

    /// Prefix of every Redis key (lets several deployments or tests share one Redis).
    #[arg(
        long = "queue-prefix",
        env = "SLIPWAY_QUEUE_PREFIX",
        default_value = "slipway"
    )]
    pub queue_prefix: String,

    /// HTTP listen address: the API itself, or probes and metrics on workers. Each binary
    /// picks its own default (see [`CommonArgs::listen_or`]).
    #[arg(long = "listen", env = "SLIPWAY_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Log output format.
    #[arg(
        long = "log-format",
        env = "SLIPWAY_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
}

impl CommonArgs {
    /// The listen address, or `default` when none was configured.
    pub fn listen_or(&self, default: SocketAddr) -> SocketAddr {
        self.listen.unwrap_or(default)
    }
}

/// Parses a binary's configuration from its flags and `SLIPWAY_*` variables, exiting with clap's
/// status (2) on an error. Unlike `Parser::parse`, an error about a value that came from the
/// environment names the variable, which is how deployments set it:
/// `error: invalid value 'abc' for SLIPWAY_MAX_ATTEMPTS (--max-attempts): invalid digit found
/// in string`; a missing required setting names both ways of giving it.
pub fn parse_or_exit<C: clap::Parser>() -> C {
    match C::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let args: Vec<String> = std::env::args().collect();
            match name_env(&e, &C::command(), &args, |k| std::env::var_os(k).is_some()) {
                Some(message) => {
                    eprint!("{message}");
                    std::process::exit(e.exit_code())
                }
                None => e.exit(),
            }
        }
    }
}

/// `e` rewritten to name the environment variable of the setting it is about, when that
/// setting came from (or may be given by) one; `None` to keep clap's own message.
fn name_env(
    e: &clap::Error,
    cmd: &clap::Command,
    args: &[String],
    env_set: impl Fn(&str) -> bool,
) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    // `--max-attempts <MAX_ATTEMPTS>` -> the argument with that long flag.
    let find = |shown: &str| {
        let long = shown.strip_prefix("--")?.split([' ', '=']).next()?;
        let arg = cmd.get_arguments().find(|a| a.get_long() == Some(long))?;
        let env = arg.get_env()?.to_str()?.to_owned();
        Some((shown.to_owned(), long.to_owned(), env))
    };
    let message = e.render().to_string();
    match (e.kind(), e.get(ContextKind::InvalidArg)) {
        (
            ErrorKind::InvalidValue | ErrorKind::ValueValidation,
            Some(ContextValue::String(shown)),
        ) => {
            let (shown, long, env) = find(shown)?;
            let on_command_line = args
                .iter()
                .any(|a| a == &format!("--{long}") || a.starts_with(&format!("--{long}=")));
            if on_command_line || !env_set(&env) {
                return None;
            }
            Some(message.replacen(&format!("'{shown}'"), &format!("{env} (--{long})"), 1))
        }
        (ErrorKind::MissingRequiredArgument, Some(ContextValue::Strings(missing))) => {
            let mut message = message;
            for shown in missing {
                if let Some((shown, _, env)) = find(shown) {
                    message = message.replacen(&shown, &format!("{env} (or {shown})"), 1);
                }
            }
            Some(message)
        }
        _ => None,
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A connection URL whose password is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> SecretUrl {
        SecretUrl(url.into())
    }

    /// The full URL, password included: pass it to the client library, never to a log.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl FromStr for SecretUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretUrl(s.to_owned()))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({:?})", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Replaces the password of `scheme://user:password@host/...` with `***`. Anything that does
/// not parse as such a URL but contains `@` is redacted whole, to be safe.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.contains('@') {
            "***".to_owned()
        } else {
            url.to_owned()
        };
    };
    // The authority ends at the first '/', '?' or '#'; userinfo is before its last '@'.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        // No userinfo, but a query may carry `password=`.
        return redact_query(url);
    };
    let user = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        // `redis://secret@host` puts the password where the user would be.
        None if scheme.starts_with("redis") => "***".to_owned(),
        None => userinfo.to_owned(),
    };
    redact_query(&format!("{scheme}://{user}@{host}{tail}"))
}

/// Redacts a `password=` query parameter (libpq-style URLs allow it).
fn redact_query(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_owned(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    #[test]
    fn passwords_never_reach_debug_output() {
        let cli = Cli::try_parse_from([
            "x",
            "--database-url",
            "postgres://slipway:hunter2@db:5432/slipway?sslmode=disable",
            "--redis-url",
            "redis://:s3cret@cache:6379/0",
        ])
        .unwrap();
        let shown = format!("{cli:?} {}", cli.common.database_url);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("postgres://slipway:***@db:5432/slipway?sslmode=disable"));
        assert_eq!(
            cli.common.database_url.expose(),
            "postgres://slipway:hunter2@db:5432/slipway?sslmode=disable"
        );
        assert_eq!(
            SecretUrl::new("postgres://u@h/d?password=x&a=b").redacted(),
            "postgres://u@h/d?password=***&a=b"
        );
        assert_eq!(SecretUrl::new("redis://tok@h").redacted(), "redis://***@h");
        assert_eq!(
            SecretUrl::new("postgres://h/d").redacted(),
            "postgres://h/d"
        );
    }

    #[test]
    fn errors_about_environment_values_name_the_variable() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        let set = |k: &str| k == "SLIPWAY_LISTEN";
        let e = Cli::try_parse_from(["x", "--database-url", "postgres://h/d", "--listen", "nope"])
            .unwrap_err();
        // Given as a flag: clap's message stands.
        let args = ["x".to_owned(), "--listen".to_owned(), "nope".to_owned()];
        assert_eq!(name_env(&e, &cmd, &args, set), None);
        // From the environment: the message names the variable.
        let shown = name_env(&e, &cmd, &["x".to_owned()], set).unwrap();
        assert!(
            shown.contains("invalid value 'nope' for SLIPWAY_LISTEN (--listen):"),
            "{shown}"
        );
        let e = Cli::try_parse_from(["x"]).unwrap_err();
        let shown = name_env(&e, &cmd, &["x".to_owned()], |_| false).unwrap();
        assert!(
            shown.contains("SLIPWAY_DATABASE_URL (or --database-url <DATABASE_URL>)"),
            "{shown}"
        );
    }

    #[test]
    fn defaults_and_log_format() {
        let cli = Cli::try_parse_from([
            "x",
            "--database-url",
            "postgres://h/d",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.common.redis_url.expose(), "redis://127.0.0.1:6379");
        assert_eq!(cli.common.queue_prefix, "slipway");
        assert_eq!(cli.common.log_format, LogFormat::Json);
        let fallback: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        assert_eq!(cli.common.listen_or(fallback), fallback);
    }
}
