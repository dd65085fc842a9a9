//! What emq's binaries share on the command line.
//!
//! - [`parse`]: clap arguments with an optional TOML config file (`--config
//!   FILE`) under them. A file's keys are the long flag names (`max-rss-mb =
//!   512`, `queue = ["10:default", "5:images"]`); a setting given as a flag
//!   or an environment variable wins over the file, the file over the
//!   default. The same names everywhere: flag `--max-rss-mb`, key
//!   `max-rss-mb`, and where there is one, variable `EMQ_MAX_RSS_MB`.
//! - [`endpoint`]: a clap value parser that checks a ZeroMQ endpoint and
//!   says what form it expects.
//! - [`init_logging`]: env_logger on stderr, `RUST_LOG` to change the level.
//! - Exit codes shared by the three binaries: [`EXIT_USAGE`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, Parser};

/// Exit code for a command line that cannot be used (bad flags, bad input
/// files): sysexits' `EX_USAGE`, distinct from every code that reports
/// what happened to a job.
pub const EXIT_USAGE: u8 = 64;

/// Why a command line with its config file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CmdError {
    /// clap refused the command line (or was asked for help or the version).
    #[error(transparent)]
    Clap(#[from] clap::Error),
    /// The config file cannot be read or is not TOML.
    #[error("config file {}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A key of the config file that is no flag of this program.
    #[error("config file {}: unknown setting {key:?} (settings are the long flag names: {known})", path.display())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The settings this program has.
        known: String,
    },
    /// A value of the config file that cannot be a flag's value.
    #[error("config file {}: {key} = {value} is not a value this setting takes", path.display())]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The value, as TOML.
        value: String,
    },
}

/// Parse the process's arguments into `A` (no config file), or print why not
/// and exit: 0 for `--help` and `--version`, [`EXIT_USAGE`] for anything
/// wrong.
pub fn parse<A: Parser>() -> A {
    match A::try_parse() {
        Ok(a) => a,
        Err(e) => exit_on(CmdError::Clap(e)),
    }
}

/// Parse the process's arguments into `A` with its config file under them,
/// or print why not and exit as [`parse`] does. `config_arg` is the id of
/// the argument that names the config file (`config`).
pub fn parse_with_config<A: Parser>(config_arg: &str) -> A {
    match parse_from(std::env::args_os().collect(), config_arg) {
        Ok(a) => a,
        Err(e) => exit_on(e),
    }
}

fn exit_on(e: CmdError) -> ! {
    match e {
        CmdError::Clap(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(code.into());
        }
        e => {
            eprintln!("{}: {e}", program_name());
            std::process::exit(EXIT_USAGE.into());
        }
    }
}

/// This program's name (the file name of `argv[0]`), for messages.
pub fn program_name() -> String {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    Path::new(&argv0)
        .file_name()
        .map_or_else(|| "emq".into(), |n| n.to_string_lossy().into_owned())
}

/// [`parse`] for a given command line (`argv[0]` first), returning errors.
pub fn parse_from<A: Parser>(argv: Vec<OsString>, config_arg: &str) -> Result<A, CmdError> {
    let command = A::command();
    let matches = command.clone().try_get_matches_from(argv.clone())?;
    let Some(path) = matches.get_one::<PathBuf>(config_arg).cloned() else {
        return Ok(A::from_arg_matches(&matches)?);
    };
    let injected = file_args(&command, &matches, &path)?;
    let mut with_file = Vec::with_capacity(argv.len() + injected.len());
    with_file.extend(argv.first().cloned());
    with_file.extend(injected);
    with_file.extend(argv.into_iter().skip(1));
    Ok(A::try_parse_from(with_file)?)
}

/// The config file's settings as flags, for every flag the command line and
/// the environment left at its default.
fn file_args(command: &clap::Command, matches: &clap::ArgMatches, path: &Path) -> Result<Vec<OsString>, CmdError> {
    let file_error = |reason: String| CmdError::File {
        path: path.into(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| file_error(e.to_string()))?;
    let settable: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|a| a.get_long().is_some() && !a.is_positional())
        .filter(|a| !matches!(a.get_action(), ArgAction::Help | ArgAction::Version))
        .collect();
    let mut out = Vec::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        let Some(arg) = settable.iter().find(|a| a.get_long() == Some(long.as_str())) else {
            let known: Vec<&str> = settable.iter().filter_map(|a| a.get_long()).collect();
            return Err(CmdError::UnknownKey {
                path: path.into(),
                key,
                known: known.join(", "),
            });
        };
        let given = matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if given {
            continue;
        }
        let bad = || CmdError::BadValue {
            path: path.into(),
            key: key.clone(),
            value: value.to_string(),
        };
        let flag = format!("--{long}");
        match (&value, arg.get_action()) {
            (toml::Value::Boolean(true), ArgAction::SetTrue) => out.push(flag.into()),
            (toml::Value::Boolean(false), ArgAction::SetTrue) => {}
            (_, ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count) => return Err(bad()),
            (toml::Value::Array(items), _) => {
                for item in items {
                    out.push(format!("{flag}={}", scalar(item).ok_or_else(bad)?).into());
                }
            }
            (other, _) => out.push(format!("{flag}={}", scalar(other).ok_or_else(bad)?).into()),
        }
    }
    Ok(out)
}

/// A TOML scalar as a flag's text.
fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Several endpoints, comma-separated, each checked as [`endpoint`] checks
/// one; kept as one string (an active router and its standbys).
pub fn endpoints(s: &str) -> Result<String, String> {
    let parts: Vec<String> = s.split(',').map(|p| endpoint(p.trim())).collect::<Result<_, _>>()?;
    Ok(parts.join(","))
}

/// A ZeroMQ endpoint as emq takes it: `tcp://HOST:PORT` (PORT may be `*`
/// to bind any free port), `ipc://PATH` or `inproc://NAME`. For clap's
/// `value_parser`; the error says the form expected.
pub fn endpoint(s: &str) -> Result<String, String> {
    let expected = "expected tcp://HOST:PORT (e.g. tcp://127.0.0.1:47291), ipc://PATH or inproc://NAME";
    let ok = match s.split_once("://") {
        Some(("tcp", rest)) => match rest.rsplit_once(':') {
            Some((host, port)) => !host.is_empty() && (port == "*" || port.parse::<u16>().is_ok()),
            None => false,
        },
        Some(("ipc" | "inproc", rest)) => !rest.is_empty(),
        _ => false,
    };
    if ok {
        return Ok(s.to_string());
    }
    if !s.contains("://") && s.contains(':') {
        return Err(format!("{s:?}: {expected}; did you mean tcp://{s}?"));
    }
    Err(format!("{s:?}: {expected}"))
}

/// A length of time as people write it: `30s`, `5m`, `1h30m`, `2 hours`,
/// `1.5s`, `500ms`, `1d` (24 hours), `PT5M`, or a bare number of seconds.
/// For clap's `value_parser`.
pub fn duration(s: &str) -> Result<std::time::Duration, String> {
    let expected = "expected a duration such as 30s, 5m, 1h30m, 1d or a number of seconds";
    if let Ok(secs) = s.trim().parse::<f64>() {
        return std::time::Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?}: {expected}"));
    }
    let span: jiff::Span = s.parse().map_err(|_| format!("{s:?}: {expected}"))?;
    let relative = jiff::SpanRelativeTo::days_are_24_hours();
    let signed = span
        .to_duration(relative)
        .map_err(|_| format!("{s:?}: years and months vary in length; give days or smaller units"))?;
    std::time::Duration::try_from(signed).map_err(|_| format!("{s:?}: a duration cannot be negative"))
}

/// A rate as people write it: `N/PERIOD` (`10/s`, `100/m`, `5/30s`,
/// `1000/h`), or `none`/`0` for no limit. Returns `(jobs, period in ms)`;
/// no limit is `(0, 1000)`. For clap's `value_parser`.
pub fn rate(s: &str) -> Result<(u32, u64), String> {
    let expected = "expected N/PERIOD such as 10/s, 100/m, 5/30s or 1000/h, or none";
    if s == "none" || s == "0" {
        return Ok((0, 1000));
    }
    let (n, period) = s.split_once('/').ok_or_else(|| format!("{s:?}: {expected}"))?;
    let jobs: u32 = n.trim().parse().map_err(|_| format!("{s:?}: {expected}"))?;
    let period = period.trim();
    // `10/s` means per one second: give the unit a count.
    let period = if period.starts_with(|c: char| c.is_ascii_digit()) {
        period.to_string()
    } else {
        format!("1{period}")
    };
    let per = duration(&period).map_err(|_| format!("{s:?}: {expected}"))?;
    let per_ms = u64::try_from(per.as_millis()).unwrap_or(u64::MAX);
    if per_ms == 0 {
        return Err(format!("{s:?}: the period must be at least 1ms"));
    }
    Ok((jobs, per_ms))
}

/// `NAME=VALUE` with VALUE read by `value` (for flags such as
/// `--concurrency images=4`).
pub fn named<T>(s: &str, value: impl Fn(&str) -> Result<T, String>) -> Result<(String, T), String> {
    match s.split_once('=') {
        Some((name, v)) if !name.is_empty() => Ok((name.to_string(), value(v)?)),
        _ => Err(format!("{s:?}: expected QUEUE=VALUE")),
    }
}

/// Log to stderr at `default` level (`RUST_LOG` overrides), with colour only
/// on a terminal.
pub fn init_logging(default: &str) {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default)).init();
}

/// An HTTP listen address: `HOST:PORT`, or `PORT` meaning
/// `127.0.0.1:PORT` (servers stay on loopback unless told otherwise).
pub fn http_addr(s: &str) -> Result<String, String> {
    let addr = match s.parse::<u16>() {
        Ok(port) => format!("127.0.0.1:{port}"),
        Err(_) => s.to_string(),
    };
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(addr),
        _ => Err(format!("{s:?}: give HOST:PORT or PORT")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Parser, Debug)]
    struct Args {
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        #[arg(long = "queue", default_value = "10:default")]
        queues: Vec<String>,
        #[arg(long)]
        verbose: bool,
        #[arg(long, env = "EMQ_CMD_TEST_ROUTER", default_value = "tcp://a:1")]
        router: String,
        #[arg(long)]
        config: Option<PathBuf>,
    }

    use std::time::Duration;

    fn argv(a: &[&str]) -> Vec<OsString> {
        std::iter::once("prog")
            .chain(a.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn the_file_sits_under_flags_and_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jm.toml");
        std::fs::write(
            &file,
            "jobs = 4\nqueue = [\"10:a\", \"5:b\"]\nverbose = true\nrouter = \"tcp://file:2\"\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let a: Args = parse_from(argv(&["--config", f]), "config").unwrap();
        assert_eq!(
            (a.jobs, a.queues.clone(), a.verbose),
            (4, vec!["10:a".into(), "5:b".into()], true)
        );
        assert_eq!(a.router, "tcp://file:2");
        let a: Args = parse_from(argv(&["--config", f, "--jobs", "8", "--queue", "1:c"]), "config").unwrap();
        assert_eq!(
            (a.jobs, a.queues),
            (8, vec!["1:c".to_string()]),
            "flags win, lists whole"
        );
        let a: Args = parse_from(argv(&[]), "config").unwrap();
        assert_eq!(a.jobs, 1);
    }

    #[test]
    fn file_mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "max_rss_bytes = 3\n").unwrap();
        let err = parse_from::<Args>(argv(&["--config", file.to_str().unwrap()]), "config").unwrap_err();
        assert!(err.to_string().contains("unknown setting \"max_rss_bytes\""), "{err}");
        assert!(
            err.to_string().contains("jobs, queue, verbose, router, config"),
            "{err}"
        );
        std::fs::write(&file, "jobs = [[1]]\n").unwrap();
        let err = parse_from::<Args>(argv(&["--config", file.to_str().unwrap()]), "config").unwrap_err();
        assert!(matches!(err, CmdError::BadValue { .. }), "{err}");
        std::fs::write(&file, "jobs = \n").unwrap();
        let err = parse_from::<Args>(argv(&["--config", file.to_str().unwrap()]), "config").unwrap_err();
        assert!(matches!(err, CmdError::File { .. }), "{err}");
        let err = parse_from::<Args>(argv(&["--config", "/nonexistent/x.toml"]), "config").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.toml"), "{err}");
    }

    #[test]
    fn durations_read_as_people_write_them() {
        let d = |s| duration(s).unwrap();
        assert_eq!(d("30s"), Duration::from_secs(30));
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("2 hours"), Duration::from_secs(7200));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("500ms"), Duration::from_millis(500));
        assert_eq!(d("1d"), Duration::from_secs(86_400));
        assert_eq!(d("1w"), Duration::from_secs(7 * 86_400));
        assert_eq!(d("PT5M"), Duration::from_secs(300));
        assert_eq!(d("45"), Duration::from_secs(45));
        assert_eq!(d("0.25"), Duration::from_millis(250));
        for bad in ["-5s", "-1", "soon", "1mo", "", "5 parsecs"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
        assert!(duration("1mo").unwrap_err().contains("vary in length"));
    }

    #[test]
    fn rates_read_as_people_write_them() {
        assert_eq!(rate("10/s"), Ok((10, 1000)));
        assert_eq!(rate("100/m"), Ok((100, 60_000)));
        assert_eq!(rate("5/30s"), Ok((5, 30_000)));
        assert_eq!(rate("none"), Ok((0, 1000)));
        for bad in ["10", "x/s", "10/fortnight", "-1/s"] {
            assert!(rate(bad).is_err(), "{bad}");
        }
        assert_eq!(named("images=10/s", rate), Ok(("images".into(), (10, 1000))));
        assert!(named("=4", |v| v.parse::<u64>().map_err(|e| e.to_string())).is_err());
    }

    #[test]
    fn endpoints_are_checked_with_the_form_expected() {
        for ok in [
            "tcp://127.0.0.1:47291",
            "tcp://*:47290",
            "tcp://[::1]:5",
            "tcp://h:*",
            "ipc:///tmp/x",
        ] {
            assert_eq!(endpoint(ok).as_deref(), Ok(ok));
        }
        let err = endpoint("127.0.0.1:47291").unwrap_err();
        assert!(err.contains("did you mean tcp://127.0.0.1:47291"), "{err}");
        for bad in ["tcp://host", "tcp://:5", "tcp://h:99999", "http://x:1", "", "ipc://"] {
            assert!(endpoint(bad).unwrap_err().contains("expected tcp://HOST:PORT"), "{bad}");
        }
    }

    #[test]
    fn http_addresses_default_to_loopback() {
        assert_eq!(super::http_addr("9464").unwrap(), "127.0.0.1:9464");
        assert_eq!(super::http_addr("0.0.0.0:80").unwrap(), "0.0.0.0:80");
        assert!(super::http_addr("nope").is_err() && super::http_addr(":80").is_err());
    }
}
